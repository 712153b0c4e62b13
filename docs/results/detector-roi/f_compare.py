"""Stage F of RULE.txt: auto-roi against auto on the fresh split, read from the two runs' metrics.json.

    python docs/results/detector-roi/f_compare.py      (prints F.txt)
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def summary(run: str) -> dict:
    m = json.loads((HERE / run / "metrics.json").read_text())
    conds = m["datasets"]["lfw"]["matchers"]["sface-erase"]["conditions"]
    styles = [c for c in conds if c != "clean"]

    def wrong(g: int, names: list[str]) -> tuple[int, int]:
        return (sum(conds[c][f"open{g}"]["named_wrong_count"] for c in names),
                sum(conds[c][f"open{g}"]["n_probes"] for c in names))

    return {"detector": m["detector"], "clean_rank1": 100 * conds["clean"]["rank1"],
            "masked_rank1": 100 * sum(conds[c]["rank1"] for c in styles) / len(styles),
            **{f"wrong{g}_{k}": wrong(g, names) for g in (1000, 5000) for k, names in (("clean", ["clean"]), ("masked", styles))}}


def pct(pair: tuple[int, int]) -> float:
    return 100 * pair[0] / pair[1]


def main() -> None:
    roi, ref = summary("fresh-auto-roi"), summary("fresh-auto")
    checks = [
        ("F1 named wrong G=1000, clean <= 0.3 %", pct(roi["wrong1000_clean"]) <= 0.3,
         f"{roi['wrong1000_clean'][0]}/{roi['wrong1000_clean'][1]} = {pct(roi['wrong1000_clean']):.2f} % (auto: {pct(ref['wrong1000_clean']):.2f} %)"),
        ("F1 named wrong G=1000, masked <= 1.0 %", pct(roi["wrong1000_masked"]) <= 1.0,
         f"{roi['wrong1000_masked'][0]}/{roi['wrong1000_masked'][1]} = {pct(roi['wrong1000_masked']):.2f} % (auto: {pct(ref['wrong1000_masked']):.2f} %)"),
        ("F2 clean rank-1 >= auto - 0.3", roi["clean_rank1"] >= ref["clean_rank1"] - 0.3,
         f"{roi['clean_rank1']:.2f} vs {ref['clean_rank1']:.2f}"),
        ("F2 mean masked rank-1 >= auto - 0.5", roi["masked_rank1"] >= ref["masked_rank1"] - 0.5,
         f"{roi['masked_rank1']:.2f} vs {ref['masked_rank1']:.2f}"),
    ]
    for k in ("clean", "masked"):
        a, b = pct(roi[f"wrong5000_{k}"]), pct(ref[f"wrong5000_{k}"])
        checks.append((f"F3 named wrong G=5000, {k} <= auto + 0.1", a <= b + 0.1,
                       f"{roi[f'wrong5000_{k}'][0]}/{roi[f'wrong5000_{k}'][1]} = {a:.2f} % vs {b:.2f} %"))
    for name, ok, text in checks:
        print(f"{'pass' if ok else 'FAIL'}  {name}: {text}")
    print("stage F:", "pass: auto-roi becomes the default" if all(ok for _, ok, _ in checks)
          else "fails: auto stays the default (RULE.txt)")


if __name__ == "__main__":
    main()
