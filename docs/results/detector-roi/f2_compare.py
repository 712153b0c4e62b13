"""RULE2.txt: auto-roi against auto on the fresh2 split, alone and pooled with stage F's fresh 300.

    python docs/results/detector-roi/f2_compare.py      (prints F2.txt; R3, the load test, is read from load-c8-ort-roi)
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
G = (1000, 5000)


def counts(run: str) -> dict:
    """Raw counts of one run: rank-1 hits and probes per condition, wrong names per gallery size."""
    m = json.loads((HERE / run / "metrics.json").read_text())
    conds = m["datasets"]["lfw"]["matchers"]["sface-erase"]["conditions"]
    out = {}
    for c, v in conds.items():
        n = v[f"open{G[0]}"]["n_probes"]
        out[c] = {"n": n, "hits": round(v["rank1"] * n),
                  **{g: v[f"open{g}"]["named_wrong_count"] for g in G}}
    return out


def add(a: dict, b: dict) -> dict:
    return {c: {k: a[c][k] + b[c][k] for k in a[c]} for c in a}


def figures(c: dict) -> dict:
    styles = [k for k in c if k != "clean"]
    f = {"clean_rank1": 100 * c["clean"]["hits"] / c["clean"]["n"],
         "masked_rank1": sum(100 * c[s]["hits"] / c[s]["n"] for s in styles) / len(styles)}
    for g in G:
        f[f"wrong{g}_clean"] = (c["clean"][g], c["clean"]["n"])
        f[f"wrong{g}_masked"] = (sum(c[s][g] for s in styles), sum(c[s]["n"] for s in styles))
    return f


def pct(pair: tuple[int, int]) -> float:
    return 100 * pair[0] / pair[1]


def checks(roi: dict, ref: dict, where: str) -> list[tuple[str, bool, str]]:
    out = []
    for g in G:
        for k in ("clean", "masked"):
            a, b = roi[f"wrong{g}_{k}"], ref[f"wrong{g}_{k}"]
            out.append((f"R1 {where}: named wrong G={g}, {k} <= auto + 0.1", pct(a) <= pct(b) + 0.1,
                        f"{a[0]}/{a[1]} = {pct(a):.2f} % vs {b[0]}/{b[1]} = {pct(b):.2f} %"))
    out.append((f"R2 {where}: clean rank-1 >= auto - 0.3", roi["clean_rank1"] >= ref["clean_rank1"] - 0.3,
                f"{roi['clean_rank1']:.2f} vs {ref['clean_rank1']:.2f}"))
    out.append((f"R2 {where}: mean masked rank-1 >= auto - 0.5", roi["masked_rank1"] >= ref["masked_rank1"] - 0.5,
                f"{roi['masked_rank1']:.2f} vs {ref['masked_rank1']:.2f}"))
    return out


def load_check() -> list[tuple[str, bool, str]]:
    path = HERE / "load-c8-ort-roi" / "load.json"
    if not path.is_file():
        return [("R3 load test", False, f"not run yet ({path.relative_to(HERE)} missing)")]
    runs = json.loads(path.read_text())
    runs = runs.get("runs", [runs]) if isinstance(runs, dict) else runs
    out = []
    for r in runs:
        ok = r["throughput_rps"] >= 25 and r["latency_ms"]["p99"] <= 500 and r["errors"] == 0
        out.append((f"R3 load, {r.get('backend')}: >= 25 req/s, p99 <= 500 ms, 0 errors", ok,
                    f"{r['throughput_rps']:.1f} req/s, p99 {r['latency_ms']['p99']:.0f} ms, {r['errors']} errors"))
    return out


def main() -> None:
    roi2, ref2 = counts("fresh2-auto-roi"), counts("fresh2-auto")
    roi1, ref1 = counts("fresh-auto-roi"), counts("fresh-auto")
    rows = checks(figures(roi2), figures(ref2), "fresh2") + checks(figures(add(roi1, roi2)), figures(add(ref1, ref2)),
                                                                    "fresh+fresh2") + load_check()
    for name, ok, text in rows:
        print(f"{'pass' if ok else 'FAIL'}  {name}: {text}")
    f = figures(roi2)
    print(f"for information (absolute, fresh2): auto-roi named wrong at G=1000 {pct(f['wrong1000_clean']):.2f} % clean, "
          f"{pct(f['wrong1000_masked']):.2f} % masked")
    print("RULE2:", "pass: auto-roi becomes the default" if all(ok for _, ok, _ in rows)
          else "fails: auto stays the default")


if __name__ == "__main__":
    main()
