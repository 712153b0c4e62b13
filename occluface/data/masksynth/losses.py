"""Adversarial objectives of the comparison, all on the critic's 5x5 score map.

* ``gan``: the original GAN (binary cross-entropy on every map cell, non-saturating generator loss);
* ``dcgan``: the same loss with the DCGAN-style critic (BatchNorm) and Adam(2e-4, 0.5);
* ``wgan``: Wasserstein loss with weight clipping (RMSprop: WGAN cannot use momentum);
* ``wgan-div``: Wasserstein divergence (Wu et al. 2018), eq. (1) of the paper: critic loss
  ``E[D(fake)] - E[D(real)] + k E[||grad D(x_hat)||^p]`` with ``x_hat`` drawn at random between real and
  fake samples, k = 2 and p = 6 by default; Adam works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from occluface.errors import OccluFaceError

LOSSES = ("gan", "dcgan", "wgan", "wgan-div")


def check_loss(name: str) -> str:
    if name not in LOSSES:
        raise OccluFaceError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    return name


def div_penalty(critic, real: torch.Tensor, fake: torch.Tensor, k: float = 2.0, p: float = 6.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``k * E[||grad_x D(x)||^p]`` at random points between real and fake images (differentiable)."""
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator, device=real.device if generator is None else "cpu")
    eps = eps.to(real.device, real.dtype)
    x = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic.score(x)
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    norm2 = grad.flatten(1).pow(2).sum(1)
    return k * norm2.pow(p / 2).mean()


def critic_loss(name: str, critic, real: torch.Tensor, fake: torch.Tensor, *, k: float = 2.0, p: float = 6.0,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """The critic's loss on a batch (``fake`` is detached here) and numbers worth logging."""
    check_loss(name)
    fake = fake.detach()
    if name in ("gan", "dcgan"):
        d_real, d_fake = critic(real), critic(fake)
        loss = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
            F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        return loss, {"d_real": float(d_real.detach().mean()), "d_fake": float(d_fake.detach().mean())}
    s_real, s_fake = critic.score(real), critic.score(fake)
    wdist = s_real.mean() - s_fake.mean()
    loss = -wdist
    info = {"wdist": float(wdist.detach())}
    if name == "wgan-div":
        gp = div_penalty(critic, real, fake, k, p, generator)
        loss = loss + gp
        info["gp"] = float(gp.detach())
    return loss, info


def generator_loss(name: str, critic, fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss on composites (gradients flow through the spatial transformer)."""
    check_loss(name)
    if name in ("gan", "dcgan"):
        d_fake = critic(fake)
        return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
    return -critic.score(fake).mean()


def clip_weights(critic, c: float = 0.01) -> None:
    """WGAN's crude Lipschitz constraint: clamp every critic weight to [-c, c]."""
    with torch.no_grad():
        for prm in critic.parameters():
            prm.clamp_(-c, c)
