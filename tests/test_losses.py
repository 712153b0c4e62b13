"""Margin heads: numerics at the edges, what the margin does to logits, configuration and the L1 penalty."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from occluface.errors import OccluFaceError
from occluface.losses import ArcFaceHead, CosFaceHead, SoftmaxHead, create_head, l1_penalty


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("cls", [ArcFaceHead, CosFaceHead])
def test_margin_heads_finite_for_extreme_inputs(cls):
    torch.manual_seed(0)
    head = cls(8, 5)
    w = head.weight.detach()
    embeddings = torch.stack(
        [
            torch.zeros(8),  # zero vector
            -w[0] * 1e3,  # theta = pi to the target class
            w[0],  # theta = 0
            -w[0] + 1e-7,  # theta just under pi
            torch.full((8,), 1e30),  # huge values
            torch.full((8,), 1e-30),  # tiny values
        ]
    ).requires_grad_(True)
    labels = torch.zeros(len(embeddings), dtype=torch.long)
    logits = head(embeddings, labels)
    loss = nn.functional.cross_entropy(logits, labels)
    loss.backward()
    assert torch.isfinite(logits).all()
    assert torch.isfinite(loss)
    assert torch.isfinite(embeddings.grad).all()
    assert torch.isfinite(head.weight.grad).all()


def test_arcface_target_logit_is_monotone_in_theta_including_beyond_pi_minus_m():
    head = ArcFaceHead(2, 1, s=1.0, m=0.5)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0]]))
    thetas = torch.linspace(0.0, math.pi, 721)
    emb = torch.stack([torch.cos(thetas), torch.sin(thetas)], dim=1)
    target = head(emb, torch.zeros(len(thetas), dtype=torch.long))[:, 0]
    assert (target[1:] <= target[:-1] + 1e-6).all(), "the target logit must never rise as theta grows"
    inside = thetas < math.pi - 0.5 - 1e-3
    # cos is clamped to 1 - 1e-6 (finite gradients), which moves theta = 0 by ~1.4e-3 rad at most
    assert torch.allclose(target[inside], torch.cos(thetas[inside] + 0.5), atol=1e-3)
    beyond = thetas > math.pi - 0.5 + 1e-3
    assert torch.allclose(target[beyond], torch.cos(thetas[beyond]) - 0.5 * math.sin(0.5), atol=1e-3)


@pytest.mark.parametrize("cls,kw", [(ArcFaceHead, {"m": 0.5}), (CosFaceHead, {"m": 0.35})])
def test_margin_lowers_only_the_target_logit(cls, kw):
    torch.manual_seed(1)
    head = cls(16, 6, s=30.0, **kw)
    emb = torch.randn(10, 16)
    labels = torch.arange(10) % 6
    plain = head.predict_logits(emb)
    margin = head(emb, labels)
    rows = torch.arange(10)
    assert (margin[rows, labels] < plain[rows, labels]).all()
    mask = torch.ones_like(plain, dtype=torch.bool)
    mask[rows, labels] = False
    assert torch.allclose(margin[mask], plain[mask])
    assert torch.allclose(head(emb), plain), "no labels means no margin"


def test_scale_and_margin_are_configurable():
    torch.manual_seed(2)
    emb = torch.randn(4, 8)
    labels = torch.tensor([0, 1, 2, 0])
    a = ArcFaceHead(8, 3, s=10.0, m=0.2)
    b = ArcFaceHead(8, 3, s=20.0, m=0.2)
    b.load_state_dict(a.state_dict())
    assert torch.allclose(b.predict_logits(emb), 2 * a.predict_logits(emb), atol=1e-5)
    c = ArcFaceHead(8, 3, s=10.0, m=0.6)
    c.load_state_dict(a.state_dict())
    rows = torch.arange(4)
    assert (c(emb, labels)[rows, labels] < a(emb, labels)[rows, labels]).all()
    cos = CosFaceHead(8, 3, s=10.0, m=0.3)
    cos.load_state_dict(a.state_dict())
    diff = cos.predict_logits(emb) - cos(emb, labels)
    assert torch.allclose(diff[rows, labels], torch.full((4,), 3.0), atol=1e-5)
    assert (ArcFaceHead(8, 3).s, ArcFaceHead(8, 3).m, CosFaceHead(8, 3).m) == (64.0, 0.5, 0.35)


def test_create_head_by_name_and_errors():
    assert isinstance(create_head("softmax", 8, 3, s=None, m=None), SoftmaxHead)
    arc = create_head("ArcFace", 8, 3, s=32.0, m=None)
    assert isinstance(arc, ArcFaceHead) and arc.s == 32.0 and arc.m == 0.5
    assert isinstance(create_head("cosface", 8, 3), CosFaceHead)
    with pytest.raises(OccluFaceError, match="unknown loss 'triplet'"):
        create_head("triplet", 8, 3)
    with pytest.raises(OccluFaceError, match="margin m"):
        ArcFaceHead(8, 3, m=-0.1)
    with pytest.raises(OccluFaceError, match="num_classes"):
        SoftmaxHead(8, 0)


def test_softmax_head_is_plain_linear():
    head = SoftmaxHead(4, 3)
    emb = torch.randn(2, 4)
    expected = emb @ head.fc.weight.T + head.fc.bias
    assert torch.allclose(head(emb, torch.tensor([0, 1])), expected)
    assert torch.allclose(head.predict_logits(emb), expected)


def test_l1_penalty_sums_weights_not_biases_or_norms():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, -4.0]]))
        model[0].bias.fill_(100.0)
    penalty = l1_penalty(model)
    assert penalty.item() == pytest.approx(10.0)
    penalty.backward()
    assert torch.equal(model[0].weight.grad, torch.tensor([[1.0, -1.0], [1.0, -1.0]]))
    assert model[0].bias.grad is None
    assert l1_penalty(nn.Sequential(nn.ReLU())).item() == 0.0
