"""The mask-synthesis paper (002) at the decide scale: Py-WGAN-div against a plain GAN and WGAN, three seeds.

Every loss trains the same number of generator updates (stated in the report) from the same face-crop cache
(its held-out faces fixed by the cache's own seed, so every seed is scored on the same faces and mask
pictures); each run resumes from its ``last.pt``. Each seed's three generators are scored by ``synth-eval``
(:func:`occluface.bench.masksynth.evaluate`), whose **5-point cover** rate -- the mask covers the nose tip
and both mouth corners and leaves both eyes free, at YuNet's points -- is the primary figure; Py-WGAN-div is
tested against each baseline, paired by seed (t) and by face (McNemar), under the rule in
``docs/results/papers-decide/RULE.txt``. The critic's estimate (mean D(real) - D(fake)) is read from each
run's log (the logged Wasserstein estimate for the WGAN losses) and called settled when its last two windows (10 % of the logged steps each) differ by less than
half their spread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from occluface.errors import DatasetError, OccluFaceError

__all__ = ["SYNTH_PRESETS", "critic_settling", "run_synth", "synth_section"]

#: Per scale: the methods (paper 002's comparison; B last) and the budget every method gets.
SYNTH_PRESETS: dict[str, dict[str, Any]] = {
    "decide": {
        "methods": {"gan": {"loss": "gan", "pyconv": False, "n_critic": 1},
                    "wgan": {"loss": "wgan", "pyconv": False, "n_critic": 2},
                    "wgan-div": {"loss": "wgan-div", "pyconv": True, "n_critic": 2}},
        "width": 16, "critic_width": 16, "batch_size": 8, "steps": 2, "iters": 1500, "lfw": 600,
        "max_faces": 200, "max_refs": 300, "cache_seed": 0,
    },
}
BASELINES = ("gan", "wgan")
PROPOSED = "wgan-div"


def critic_settling(log_path: str | Path, window: float = 0.1) -> dict[str, Any]:
    """The critic's estimate over training and whether it has settled (see the module docstring)."""
    rows = [json.loads(line) for line in Path(log_path).read_text(encoding="utf-8").splitlines() if line.strip()]
    # WGAN losses log their Wasserstein estimate ("wdist"); the GANs log mean D(real) and D(fake)
    est = np.array([r["wdist"] if "wdist" in r else r["d_real"] - r["d_fake"] for r in rows
                    if "wdist" in r or ("d_real" in r and "d_fake" in r)], float)
    if est.size < 4:
        return {"settled": False, "n_logged": int(est.size), "why": "fewer than 4 logged steps"}
    k = max(2, int(round(window * est.size)))
    last, prev = est[-k:], est[-2 * k: -k]
    spread = float(np.concatenate([last, prev]).std())
    shift = float(abs(last.mean() - prev.mean()))
    return {"settled": bool(shift < 0.5 * spread) if spread > 0 else True, "n_logged": int(est.size),
            "last_window_mean": float(last.mean()), "previous_window_mean": float(prev.mean()),
            "window_spread": spread, "range": [float(est.min()), float(est.max())]}


def run_synth(
    data_root: str | Path,
    work: str | Path,
    *,
    seeds: Sequence[int],
    scale: str = "decide",
    iters: int | None = None,
    max_faces: int | None = None,
    max_refs: int | None = None,
    lfw: int | None = None,
    max_per_source: int | None = None,
    device: str = "cpu",
    progress: bool = True,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train every method at every seed (resuming), score each seed, and rule on Py-WGAN-div vs each baseline."""
    from occluface.bench.masksynth import evaluate
    from occluface.bench.reports import digest
    from occluface.bench.papers_seeds import paired_stats
    from occluface.data.masksynth.data import build_cache, mask_pictures
    from occluface.train.masksynth import MaskSynthConfig, label, train

    say = say or (lambda _m: None)
    if scale not in SYNTH_PRESETS:
        raise OccluFaceError(f"the synthesis comparison has no {scale!r} preset; use one of {', '.join(SYNTH_PRESETS)}")
    p = dict(SYNTH_PRESETS[scale])
    for key, value in (("iters", iters), ("max_faces", max_faces), ("max_refs", max_refs), ("lfw", lfw)):
        if value is not None:
            p[key] = int(value)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise OccluFaceError("the synthesis comparison needs at least one seed")
    root = Path(data_root)
    if not (root / "mask_textures").is_dir():
        raise DatasetError(f"{root}: no mask_textures/ folder (pass the shared data folder, e.g. ../shared/data)")
    work = Path(work)
    settings = {k: v for k, v in p.items() if k not in ("max_faces", "max_refs")} | {"data": str(root.resolve())}
    if max_per_source:
        settings["max_per_source"] = int(max_per_source)
    runs_dir = work / "runs" / f"synth-{digest(settings)}"
    say(f"[synth] face-crop cache (seed {p['cache_seed']}) ...")
    cache_key = [str(root.resolve()), p["lfw"], p["cache_seed"]] + ([max_per_source] if max_per_source else [])
    data = build_cache(root, work / "cache" / f"masksynth-{digest(cache_key)}.npz", seed=p["cache_seed"], lfw=p["lfw"],
                       max_per_source=max_per_source, progress=progress)
    pics, _ = mask_pictures(root / "mask_textures", 12, p["cache_seed"])
    per_seed = []
    for seed in seeds:
        runs: dict[str, dict[str, Any]] = {}
        for method, m in p["methods"].items():
            out = runs_dir / f"{method}-s{seed}"
            done = out / "summary.json"
            summary = json.loads(done.read_text(encoding="utf-8")) if done.is_file() else {}
            if summary.get("iterations", 0) < p["iters"] or summary.get("stopped_by_time"):
                say(f"[synth] seed {seed}: training {label(m['loss'], m['pyconv'])}, {p['iters']} generator updates ...")
                cfg = MaskSynthConfig(loss=m["loss"], pyconv=m["pyconv"], width=p["width"], critic_width=p["critic_width"],
                                      steps=p["steps"], batch_size=p["batch_size"], iters=p["iters"],
                                      n_critic=m["n_critic"], seed=seed, device=device)
                summary = train(data, pics, out, cfg, progress=progress)
            runs[method] = {"label": summary.get("label") or label(m["loss"], m["pyconv"]), "run_dir": str(out),
                            "iterations": summary.get("iterations"), "cpu_seconds": summary.get("cpu_seconds"),
                            "critic": critic_settling(out / "log.jsonl")}
        res = _scored(runs_dir / f"eval-s{seed}", [Path(runs[k]["run_dir"]) for k in p["methods"]], p)
        if res is None:
            say(f"[synth] seed {seed}: scoring the generators (synth-eval) ...")
            res = evaluate(data, [runs[k]["run_dir"] for k in p["methods"]], runs_dir / f"eval-s{seed}",
                           max_faces=p["max_faces"], max_refs=p["max_refs"], seed=0, progress=progress)
            res["scored_with"] = {"max_faces": p["max_faces"], "max_refs": p["max_refs"]}
            from occluface.io import write_json

            write_json(runs_dir / f"eval-s{seed}" / "scored.json", res)
        rows = {r["method"]: r for r in res["methods"]}
        for method, run in runs.items():
            run["scores"] = {k: v for k, v in rows[run["label"]].items() if k != "method"}
        per_seed.append({"seed": seed, "runs": runs, "reference": {k: rows[k] for k in ("landmark overlay",
                                                                                          "identity warp (start)")},
                         "n_faces": res["n_faces"], "n_points": res["n_points"], "report": str(runs_dir / f"eval-s{seed}")})
    comparisons = {}
    for base in BASELINES if len(seeds) > 1 else ():  # one seed (a parallel pre-run): trained and scored, not ruled on
        st = paired_stats([s["runs"][base]["scores"]["cover_all"] for s in per_seed],
                          [s["runs"][PROPOSED]["scores"]["cover_all"] for s in per_seed],
                          [s["runs"][base]["scores"]["cover_pass"] for s in per_seed],
                          [s["runs"][PROPOSED]["scores"]["cover_pass"] for s in per_seed])
        comparisons[base] = {"stats": st, "verdict": _rule(st)}
    verdicts = {c["verdict"] for c in comparisons.values()}
    overall = ("not decidable here: one seed" if not verdicts else "reproduced" if verdicts == {"reproduced"} else
               "not reproduced" if "not reproduced" in verdicts else "not decidable here")
    return {"key": "synth", "title": "Mask-synthesis paper (002): Py-WGAN-div vs plain GAN and WGAN, placement on "
                                     "held-out faces", "settings": p, "seeds": seeds, "runs_dir": str(runs_dir),
            "per_seed": per_seed, "comparisons": comparisons, "verdict": {"verdict": overall},
            "paper": {"source": "paper 002, Tables 1-2 (158,462 masked faces, 144 px, 20 hand-made masks)",
                      "ssim": {"GAN": 0.625, "DCGAN": 0.793, "WGAN": 0.907, "Py-WGAN-div": 0.941},
                      "human_real_pct": {"GAN": 0, "DCGAN": 30, "WGAN": 72, "Py-WGAN-div": 79}}}


def _scored(folder: Path, run_dirs: list[Path], p: dict[str, Any]) -> dict[str, Any] | None:
    """An earlier scoring of exactly these generators with these settings, or None (then score again)."""
    done = folder / "scored.json"
    if not done.is_file():
        return None
    try:
        res = json.loads(done.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    newest = max((d / "generator.pt").stat().st_mtime for d in run_dirs)
    same = res.get("scored_with") == {"max_faces": p["max_faces"], "max_refs": p["max_refs"]}
    names = sorted(str(Path(c).parent.resolve()) for _, c in res.get("checkpoints", []))
    if not same or names != sorted(str(d.resolve()) for d in run_dirs) or done.stat().st_mtime < newest:
        return None
    return res


def _rule(st: dict[str, Any]) -> str:
    sig = st["p_t"] < 0.05 and st.get("p_mcnemar", 0.0) < 0.05
    if sig and st["mean_diff"] > 0:
        return "reproduced"
    if sig and st["mean_diff"] < 0:
        return "not reproduced"
    return "not decidable here"


def synth_section(exp: dict[str, Any]) -> list[str]:
    """The report's section for the synthesis comparison."""
    p = exp["settings"]
    first = exp["per_seed"][0]
    md = [f"## {exp['title']}", ""]
    md += [f"Every loss gets {p['iters']} generator updates (generator width {p['width']}, critic width "
           f"{p['critic_width']}, batch {p['batch_size']}, {p['steps']} refinement steps; critic updates per generator "
           f"update: " + ", ".join(f"{k} {m['n_critic']}" for k, m in p["methods"].items())
           + f"), seeds {', '.join(map(str, exp['seeds']))}; scored on {first['n_faces']} held-out unmasked faces "
           f"({first['n_points']} with YuNet points), the same faces and mask pictures at every seed. The paper trains "
           "50,000+ iterations at width 64 on a GPU; this is the CPU budget, stated.", ""]
    methods = list(p["methods"])
    header = ["method", "5-point cover (%)", "cover frontal", "cover turned", "placement IoU (68-pt)", "P(masked)",
              "identity cos", "critic settled (seeds)"]
    md += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]

    def pm(vals: list[float], scale: float = 100.0, nd: int = 1) -> str:
        v = np.array([x for x in vals if x is not None and np.isfinite(x)], float)
        if not v.size:
            return "n/a"
        return f"{scale * v.mean():.{nd}f}" + (f" ± {scale * v.std(ddof=1):.{nd}f}" if v.size > 1 else "")

    for ref in ("landmark overlay", "identity warp (start)"):
        rows = [s["reference"][ref] for s in exp["per_seed"]]
        md.append("| " + " | ".join([ref + " (not ruled on)", pm([r.get("cover_all") for r in rows]),
                                     pm([r.get("cover_frontal") for r in rows]), pm([r.get("cover_turned") for r in rows]),
                                     pm([r.get("iou") for r in rows], 1, 3), pm([r["p_masked"] for r in rows], 1, 3),
                                     pm([r["identity_cos"] for r in rows], 1, 3), "—"]) + " |")
    for k in methods:
        runs = [s["runs"][k] for s in exp["per_seed"]]
        sc = [r["scores"] for r in runs]
        settled = sum(bool(r["critic"].get("settled")) for r in runs)
        md.append("| " + " | ".join([runs[0]["label"], pm([x["cover_all"] for x in sc]), pm([x["cover_frontal"] for x in sc]),
                                     pm([x["cover_turned"] for x in sc]), pm([x["iou"] for x in sc], 1, 3),
                                     pm([x["p_masked"] for x in sc], 1, 3), pm([x["identity_cos"] for x in sc], 1, 3),
                                     f"{settled} of {len(runs)}"]) + " |")
    md += ["", "Mean ± standard deviation over the seeds.", ""]
    b_label = exp["per_seed"][0]["runs"][PROPOSED]["label"]
    for base, c in exp["comparisons"].items():
        st = c["stats"]
        lo, hi = st["ci95"]
        a_label = exp["per_seed"][0]["runs"][base]["label"]
        md.append(f"- {b_label} − {a_label}: **{st['mean_diff']:+.1f} points** of 5-point cover (per seed "
                  f"{', '.join(f'{x:+.1f}' for x in st['diff_points'])}; 95 % CI {lo:+.1f} to {hi:+.1f}, paired t p = "
                  f"{st['p_t']:.3g}; McNemar over {st['paired_images']} paired faces: {st['b_only']} pass with "
                  f"{b_label} only, {st['a_only']} with {a_label} only, p = {st['p_mcnemar']:.3g}) → **{c['verdict']}**.")
    paper = exp["paper"]
    md += ["", f"The paper ({paper['source']}) reports no placement figure: SSIM " +
           ", ".join(f"{k} {v}" for k, v in paper["ssim"].items()) + "; judged real by people (%) " +
           ", ".join(f"{k} {v}" for k, v in paper["human_real_pct"].items()) + ".", "",
           f"**Verdict: {exp['verdict']['verdict']}** (the claim needs Py-WGAN-div ahead of both baselines; "
           "per baseline above).", ""]
    for s in exp["per_seed"]:
        crit = "; ".join(f"{r['label']}: critic estimate {r['critic'].get('last_window_mean', float('nan')):+.2f} in the "
                         f"last window, {r['critic'].get('previous_window_mean', float('nan')):+.2f} in the one before "
                         f"(spread {r['critic'].get('window_spread', float('nan')):.2f}: "
                         f"{'settled' if r['critic'].get('settled') else 'still moving'})" for r in s["runs"].values())
        md.append(f"- seed {s['seed']}: {crit}; per-seed synth-eval report `{s['report']}/report.md`.")
    md.append("")
    return md
