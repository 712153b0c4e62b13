"""T1-T3 of RULE.txt: `auto` (docs/results/openset-tuning) vs `auto-roi` (docs/results/detector-roi/tuning)."""
import json

from occluface.data.occlusion.styles import TUNING_STYLES

res = {}
for tag, p in (("auto", "docs/results/openset-tuning/metrics.json"), ("auto-roi", "docs/results/detector-roi/tuning/metrics.json")):
    for ds, d in json.load(open(p))["datasets"].items():
        c = d["matchers"]["sface-erase"]["conditions"]
        masked = sum(c[s]["rank1"] for s in TUNING_STYLES) / len(TUNING_STYLES) * 100
        res[(tag, ds)] = (c["clean"]["rank1"] * 100, masked, sum(d["detector_missed"].values()), d["n_probes"] * (1 + len(TUNING_STYLES)))
for ds in ("lfw", "yaleb"):
    a, r = res[("auto", ds)], res[("auto-roi", ds)]
    tol_m, tol_c = (0.5, 0.3) if ds == "lfw" else (1.0, 1.0)
    print(f"{ds}: T1 masked rank-1 auto {a[1]:.2f} auto-roi {r[1]:.2f} bar >= {a[1]-tol_m:.2f} -> {'pass' if r[1] >= a[1]-tol_m else 'FAIL'}")
    print(f"{ds}: T2 clean rank-1 auto {a[0]:.2f} auto-roi {r[0]:.2f} bar >= {a[0]-tol_c:.2f} -> {'pass' if r[0] >= a[0]-tol_c else 'FAIL'}")
    print(f"{ds}: T3 faces lost auto {a[2]} auto-roi {r[2]} of {a[3]}, bar <= {a[2]+0.005*a[3]:.1f} -> {'pass' if r[2] <= a[2]+0.005*a[3] else 'FAIL'}")
