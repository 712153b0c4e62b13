"""Measuring models: metrics (`metrics`), figures (`plots`, `curves`) and written reports (`report`).

Submodules are imported on demand (matplotlib and torch are slow to load), e.g.
``from occluface.bench.metrics import verification_metrics``; the CLI front-ends are ``occluface evaluate``
and ``occluface compare``.
"""
