"""Several seeds of one paper comparison: mean ± sd, paired tests, the verdict rule, curves on one figure.

Issue 22's rule (``docs/results/papers-decide/RULE.txt``, written before any decide-scale score was read):
A = the paper's baseline, B = its proposed model; per seed ``d_s = acc_B - acc_A`` (points, occluded held-out
closed-set accuracy, both models on the same split and images); ``d`` their mean, a 95 % interval from the
paired t over seeds, and an exact McNemar test on the discordant test images pooled over the seeds. Then:

1. **reproduced** if ``d > 0``, ``p_t < 0.05`` and ``p_mc < 0.05``;
2. **not reproduced** if ``d < 0`` with both tests ``< 0.05``, or if the whole interval lies below the paper's
   own effect ``E`` (B may help, but by less than the paper says);
3. **not decidable here** otherwise; and whatever the tests say, when both models are within twice chance.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from occluface.errors import OccluFaceError

__all__ = ["paired_stats", "verdict", "paper_effect", "combine_seeds", "plot_seed_curves", "markdown_section"]

ALPHA = 0.05


def paper_effect(paper: dict[str, Any]) -> float:
    """The paper's own B - A on occluded images, in points (its second model minus its first)."""
    (_, a), (_, b) = list(paper["models"].items())[:2]
    return 100.0 * (float(b["occluded"]) - float(a["occluded"]))


def paired_stats(
    acc_a: list[float], acc_b: list[float], correct_a: list[str] | None = None, correct_b: list[str] | None = None,
) -> dict[str, Any]:
    """Paired comparison of B against A over seeds (accuracies in [0, 1]; results in points).

    ``correct_*`` are, per seed, one '0'/'1' character per test image in the same order for both models: the
    exact McNemar test counts the images only B gets right (``b_only``) and only A gets right (``a_only``).
    """
    from scipy import stats

    a, b = np.asarray(acc_a, float), np.asarray(acc_b, float)
    if a.shape != b.shape or a.size < 2:
        raise OccluFaceError(f"a paired test needs the same >= 2 seeds for both models, got {a.size} and {b.size}")
    d = 100.0 * (b - a)
    n = d.size
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    t_crit = float(stats.t.ppf(1 - ALPHA / 2, n - 1))
    half = t_crit * sd / math.sqrt(n)
    if sd > 1e-9:  # below: float noise on equal differences
        p_t = float(stats.ttest_rel(b, a).pvalue)
    else:  # every seed gave the same difference: certain if it is not zero
        sd, half = 0.0, 0.0
        p_t = 1.0 if abs(mean) < 1e-9 else 0.0
    out: dict[str, Any] = {
        "n_seeds": n, "diff_points": d.tolist(), "mean_diff": mean, "sd_diff": sd,
        "ci95": [mean - half, mean + half], "p_t": p_t,
        "a_mean": float(100 * a.mean()), "a_sd": float(100 * a.std(ddof=1)),
        "b_mean": float(100 * b.mean()), "b_sd": float(100 * b.std(ddof=1)),
    }
    if correct_a is not None and correct_b is not None:
        b_only = a_only = images = 0
        for ca, cb in zip(correct_a, correct_b, strict=True):
            if len(ca) != len(cb):
                raise OccluFaceError("the two models were scored on different numbers of test images")
            images += len(ca)
            b_only += sum(1 for x, y in zip(ca, cb) if y == "1" and x == "0")
            a_only += sum(1 for x, y in zip(ca, cb) if x == "1" and y == "0")
        k = b_only + a_only
        p_mc = 1.0 if k == 0 else float(stats.binomtest(min(b_only, a_only), k, 0.5).pvalue)
        out.update({"b_only": b_only, "a_only": a_only, "paired_images": images, "p_mcnemar": p_mc})
    return out


def verdict(st: dict[str, Any], effect: float, *, chance: float, occluded_means: tuple[float, float]) -> dict[str, str]:
    """The rule above: ``{"verdict", "why"}`` (``occluded_means`` in points, ``chance`` in [0, 1])."""
    lo, hi = st["ci95"]
    ci = f"{st['mean_diff']:+.1f} points (95 % CI {lo:+.1f} to {hi:+.1f}; paired t p = {st['p_t']:.3g}"
    ci += f", McNemar p = {st['p_mcnemar']:.3g})" if "p_mcnemar" in st else ")"
    if all(m < 200 * chance for m in occluded_means):
        return {"verdict": "not decidable here",
                "why": f"both models stayed within twice chance ({100 * chance:.1f} %): they did not train; {ci}"}
    p_mc = st.get("p_mcnemar", 0.0)
    if st["mean_diff"] > 0 and st["p_t"] < ALPHA and p_mc < ALPHA:
        return {"verdict": "reproduced", "why": f"B ahead by {ci}; the paper: {effect:+.2f}"}
    if st["mean_diff"] < 0 and st["p_t"] < ALPHA and p_mc < ALPHA:
        return {"verdict": "not reproduced", "why": f"the baseline is ahead here: B {ci}; the paper: {effect:+.2f}"}
    if hi < effect:
        return {"verdict": "not reproduced",
                "why": f"B {ci}: the whole interval lies below the paper's {effect:+.2f}"}
    return {"verdict": "not decidable here",
            "why": f"B {ci} holds both no effect and the paper's {effect:+.2f}: more seeds or a larger scale needed"}


def combine_seeds(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """One experiment from its per-seed results (see :func:`occluface.bench.papers.run_papers`)."""
    first = per_seed[0]
    names = [m["model"] for m in first["models"]]
    for exp in per_seed:
        if [m["model"] for m in exp["models"]] != names:
            raise OccluFaceError("the seeds of one comparison trained different models")
        for part in ("occluded", "clean"):
            digests = {m[part].get("images_digest") for m in exp["models"]}
            if len(digests) != 1:
                raise OccluFaceError(f"seed {exp['seed']}: the two models were scored on different {part} images")
    models = []
    for i, name in enumerate(names):
        runs = [exp["models"][i] for exp in per_seed]
        agg: dict[str, Any] = {"model": name, "params_m": runs[0]["params_m"],
                               "seconds": sum(r.get("seconds") or 0.0 for r in runs)}
        for part in ("occluded", "clean"):
            agg[part] = {}
            for metric in ("accuracy", "auc", "rank1"):
                vals = [r[part][metric] for r in runs if r[part].get(metric) is not None]
                agg[part][metric] = float(np.mean(vals)) if vals else None
                agg[part][f"{metric}_sd"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
        agg["steps"] = runs[0]["steps"]
        models.append(agg)
    stats_by_part = {}
    for part in ("occluded", "clean"):
        stats_by_part[part] = paired_stats(
            [exp["models"][0][part]["accuracy"] for exp in per_seed],
            [exp["models"][1][part]["accuracy"] for exp in per_seed],
            [exp["models"][0][part]["correct"] for exp in per_seed],
            [exp["models"][1][part]["correct"] for exp in per_seed],
        )
    chance = 1.0 / max(1, first["n_identities"])
    effect = paper_effect(first["paper"])
    ruling = verdict(stats_by_part["occluded"], effect, chance=chance,
                     occluded_means=(stats_by_part["occluded"]["a_mean"], stats_by_part["occluded"]["b_mean"]))
    settings = dict(first["settings"])
    return {
        "key": first["key"], "title": first["title"], "data": first.get("data"), "settings": settings,
        "notes": first["notes"], "paper": first["paper"], "paper_effect_points": effect,
        "seeds": [exp["seed"] for exp in per_seed], "n_identities": first["n_identities"],
        "n_identities_in_data": first.get("n_identities_in_data"),
        "n_train": first["n_train"], "n_test": first["n_test"],
        "models": models, "stats": stats_by_part, "verdict": ruling,
        "margin_choice": first.get("margin_choice"), "per_seed": per_seed,
    }


def plot_seed_curves(exp: dict[str, Any], out_png: str | Path) -> Path:
    """Held-out (occluded) accuracy versus iteration: every seed thin, the mean over seeds thick, one colour a model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from occluface.bench.curves import read_log, series

    out_png = Path(out_png)
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    for i, name in enumerate(m["model"] for m in exp["models"]):
        colour = f"C{i}"
        curves = []
        for run in exp["per_seed"]:
            m = run["models"][i]
            steps, acc = series(read_log(m["log"]), "test", "acc")
            if acc.size:
                ax.plot(steps, 100 * acc, color=colour, alpha=0.35, linewidth=1)
                curves.append((steps, acc))
        if curves:
            n = min(len(s) for s, _ in curves)
            mean = np.mean([100 * a[:n] for _, a in curves], axis=0)
            ax.plot(curves[0][0][:n], mean, color=colour, linewidth=2.5,
                    label=f"{name} (mean of {len(curves)} seeds; thin: each seed)")
    s = exp["settings"]
    for e in s.get("lr_milestones_epochs", []):
        ax.axvline(e * s["steps_per_epoch"], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("iteration (dotted: learning rate ÷10)")
    ax.set_ylabel(f"held-out {s['occluded_label']} accuracy (%)")
    ax.set_title(exp["title"], fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return out_png


def _pm(mean: float | None, sd: float | None, scale: float = 100.0, digits: int = 1) -> str:
    if mean is None:
        return "n/a"
    return f"{scale * mean:.{digits}f}" + ("" if sd is None else f" ± {scale * sd:.{digits}f}")


def markdown_section(exp: dict[str, Any], curves_png: str) -> list[str]:
    """The report's section for one several-seed comparison: settings, table, tests, verdict, figure."""
    s = exp["settings"]
    occ, cln = s["occluded_label"], s["clean_label"]
    total = exp.get("n_identities_in_data")
    ids = f"{'all' if total == exp['n_identities'] else 'the first'} {exp['n_identities']} identities"
    align = f", aligned to the ArcFace template at {s['align']} px" if s.get("align") else ""
    md = [f"## {exp['title']}", ""]
    md += [
        f"Data: `{exp.get('data')}`, {ids}{align}, every image occluded with `{'+'.join(s['occlusion'])}` "
        f"(landmark-fitted, seeded per file and seed); split by image {100 * (1 - s['test_fraction']):.0f}/"
        f"{100 * s['test_fraction']:.0f} within each identity (at least one test image each): {exp['n_train']} "
        f"train / {exp['n_test']} test images at seed {exp['seeds'][0]}. Input {s['input_size']}x{s['input_size']}, "
        f"batch {s['batch_size']}, {s['iterations']} iterations ({s['epochs']} epochs), {s['loss']} loss"
        + (f" (s {s['s']:g}, m {s['m']:g})" if s.get("s") is not None else "")
        + f", SGD lr {s['lr']:g} (momentum 0.9, weight decay 5e-4), lr ÷10 at epochs "
        f"{', '.join(map(str, s['lr_milestones_epochs']))}. Seeds {', '.join(map(str, exp['seeds']))}: each fixes "
        "the occlusions, the split, the initialisation and the data order; both models of a seed see the same "
        "images, so the tests pair them by seed.",
        "",
    ]
    mc = exp.get("margin_choice")
    if mc:
        cands = ", ".join(f"s {c['s']:g} / m {c['m']:g}: {100 * (c['val_acc'] or 0):.1f} %" for c in mc["candidates"])
        md += [f"Margin head chosen on validation before the runs: {mc['model']} for {mc['epochs']} epochs on "
               f"{mc['n_fit']} of seed {mc['seed']}'s training images, scored on the other {mc['n_val']} (no test "
               f"image); masked validation accuracy {cands} → **s {mc['s']:g}, m {mc['m']:g}**.", ""]
    header = ["model", "params (M)", f"{occ} test acc (%)", f"{cln} test acc (%)", f"{occ} rank-1 (%)",
              f"AUC {occ}", "train time, all seeds"]
    md += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for m in exp["models"]:
        o, c = m["occluded"], m["clean"]
        seconds = m["seconds"]
        md.append("| " + " | ".join([
            m["model"], f"{m['params_m']:.2f}", _pm(o["accuracy"], o["accuracy_sd"]), _pm(c["accuracy"], c["accuracy_sd"]),
            _pm(o["rank1"], o["rank1_sd"]), _pm(o["auc"], o["auc_sd"], 1.0, 3),
            f"{seconds / 60:.0f} min" if seconds else "n/a",
        ]) + " |")
    md += ["", "Mean ± standard deviation over the seeds.", ""]
    a, b = (m["model"] for m in exp["models"])
    for part, label in (("occluded", occ), ("clean", cln)):
        st = exp["stats"][part]
        lo, hi = st["ci95"]
        per = ", ".join(f"{x:+.1f}" for x in st["diff_points"])
        line = (f"- {label}: {b} − {a} = **{st['mean_diff']:+.1f} points** (per seed {per}; 95 % CI {lo:+.1f} to "
                f"{hi:+.1f}, paired t p = {st['p_t']:.3g}")
        if "p_mcnemar" in st:
            line += (f"; McNemar over {st['paired_images']} paired test images: {st['b_only']} right by {b} only, "
                     f"{st['a_only']} by {a} only, p = {st['p_mcnemar']:.3g}")
        md.append(line + ").")
    paper = exp["paper"]
    ref = "; ".join(f"{name}: " + ", ".join(f"{occ if k == 'occluded' else cln} {100 * v:.2f} %" for k, v in vals.items())
                    for name, vals in paper["models"].items())
    ruling = exp["verdict"]
    md += ["", f"The paper reports ({paper['source']}): {ref} (B − A = {exp['paper_effect_points']:+.2f} points).", "",
           f"**Verdict: {ruling['verdict']}** — {ruling['why']}.", ""]
    for note in exp.get("notes", []):
        md += [f"Note: {note}.", ""]
    md += [f"![held-out accuracy versus iteration, both models, every seed]({curves_png})", ""]
    return md
