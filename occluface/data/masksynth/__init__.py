"""Learned mask synthesis (Py-WGAN-div): a generator predicts the 8 parameters of a homography that a
spatial transformer uses to warp an RGBA mask picture onto a 144x144 face; a critic ending in a 5x5 score
map judges the composite against real masked faces (Wasserstein divergence, k=2, p=6).

Baselines with the same spatial transformer: plain GAN, DCGAN-style and WGAN with weight clipping.
Modules: ``stn`` (warp + composite), ``generator``, ``critic``, ``losses``, ``data`` (144x144 crop cache),
``train`` (resumable training), ``evaluate`` (``occluface synth-eval``), ``apply`` (``synth --kind learned``).
"""

from occluface.data.masksynth.stn import IDENTITY, composite, compose, homography, warp

__all__ = ["IDENTITY", "composite", "compose", "homography", "warp"]
