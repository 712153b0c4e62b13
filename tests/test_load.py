"""A tiny bounded load test of `occluface serve` on 127.0.0.1 (no timing assertions: the figures are reported).

Concurrent identify requests must all succeed, `/api/health` must keep answering while they queue, and the
server must still answer afterwards. `occluface bench load` runs the same thing at a larger scale.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def test_bench_load_small_run(tmp_path):
    from occluface.cli import app

    probe = tmp_path / "probe.jpg"  # a smaller copy of the two-person photo keeps each request short
    img = Image.open(SAMPLES / "fr_two_people_obama_biden.jpg").convert("RGB")
    img.thumbnail((480, 480))
    img.save(probe, quality=90)
    out = tmp_path / "report"
    r = CliRunner().invoke(app, ["bench", "load", "-n", "20", "-c", "4", "--image", str(probe), "--out", str(out)])
    assert r.exit_code == 0, r.output
    result = json.loads((out / "load.json").read_text())
    assert result["requests"] == 20 and result["concurrency"] == 4
    assert result["errors"] == 0 and result["statuses"] == {"200": 20}
    assert result["faces_per_request"] == 2, "each request really ran detection on both faces"
    assert result["health_after_ok"] is True
    assert result["health_ms"]["probes"] >= 1 and result["health_ms"]["failed"] == 0, "health answered under load"
    rss = result["rss_mib"]
    assert 0 < rss["start"] <= rss["max"] and rss["end"] > 0
    assert result["throughput_rps"] > 0 and result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    md = (out / "load.md").read_text()
    assert "p99" in md and "RSS" in md and "bench load" in md
