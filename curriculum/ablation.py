"""Curriculum ablations, the pure part: arms, knob application, complete cells, summaries, verdicts.

An arm is (ordering, pacing) plus, under Optuna, continuous knobs (LR scale, replay share, each
phase's share of the step budget). Every arm trains the same number of optimizer steps on the same
number of samples: `arm_spec` keeps the total. The Tune trial that trains an arm lives in
platform/tune.py; this module imports nothing from platform/, evals/ or jobs/.

A verdict is drawn only from arm x seed cells that all finished (`complete_cells`), over at least
`stats.MIN_SEEDS` seeds, from paired differences (curriculum/stats.py).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import stats
from .pacing import uses_replay

STAGES = range(1, 6)
KNOBS = ("ordering", "pacing", "seed", "lr_scale", "replay")


def arm_label(ordering: str, pacing: str, multi_pacing: bool) -> str:
    return f"{ordering}/{pacing}" if multi_pacing else ordering


def apportion(total: int, weights: list[float], minimum: list[int]) -> list[int]:
    """Split `total` steps in proportion to `weights` (largest remainder), each at least its minimum."""
    floor = sum(minimum)
    if floor > total:
        raise ValueError(f"cannot split {total} steps with per-phase minimums {minimum}")
    spare = total - floor
    raw = [spare * w / sum(weights) for w in weights]
    steps = [int(math.floor(r)) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - steps[i], reverse=True)[: spare - sum(steps)]:
        steps[i] += 1
    return [m + s for m, s in zip(minimum, steps)]


def arm_spec(spec: dict[str, Any], knobs: dict[str, Any], seed: int) -> dict[str, Any]:
    """A curriculum spec mapping (`CurriculumSpec.model_dump`) with one trial's knobs applied; the
    caller validates it. A pace other than `step` decides the share of earlier data itself, so the
    arm's phases carry no replay share (the spec would reject one)."""
    spec = {**spec, "phases": [dict(p) for p in spec["phases"]], "pacing": dict(spec["pacing"])}
    spec["ordering"] = knobs.get("ordering", spec["ordering"])
    spec["order_seed"] = seed
    spec["pacing"]["name"] = knobs.get("pacing", spec["pacing"]["name"])
    phases = spec["phases"]
    for i, phase in enumerate(phases):
        phase["lr"] *= float(knobs.get("lr_scale", 1.0))
        if "replay" in knobs and i > 0:
            phase["replay"] = float(knobs["replay"])
        if not uses_replay(spec["pacing"]["name"]):
            phase["replay"] = 0.0
        if not phase["replay"]:  # an arm without replay: nothing left for `replay_last` to restrict
            phase["replay_last"], phase["replay_from"] = 0, None
    weights = [knobs[f"phase_w{i}"] for i in range(len(phases)) if f"phase_w{i}" in knobs]
    if weights:
        total = sum(p["steps"] for p in phases)
        steps = apportion(total, weights, [max(1, p["warmup_steps"]) for p in phases])
        for phase, n in zip(phases, steps):
            phase["steps"] = n
    return spec


def stage_report(metrics: dict[str, float], prefix: str = "") -> dict[str, float]:
    scores = {f"stage{s}/score": float(metrics[f"{prefix}stage{s}/score"]) for s in STAGES}
    return {**scores, "score/mean": float(np.mean(list(scores.values())))}


def complete_cells(rows: list[dict[str, Any]], arms: list[str], seeds: list[int]) -> tuple[list[dict], list[int]]:
    """The rows of the seeds for which every arm finished, and those seeds. A seed with one arm
    stopped or failed is dropped for all arms, so every comparison is paired and no arm is judged on
    its survivors."""
    have = {(r["arm"], r["seed"]) for r in rows}
    full = [s for s in seeds if all((a, s) in have for a in arms)]
    return [r for r in rows if r["seed"] in full and r["arm"] in arms], full


def score_table(rows: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, float]]]:
    """rows -> scores[arm][seed][stage] with stages 'stage1'..'stage5' and 'mean' (stats.compare's input)."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for r in rows:
        out.setdefault(r["arm"], {})[r["seed"]] = {
            **{f"stage{s}": float(r[f"stage{s}/score"]) for s in STAGES}, "mean": float(r["score/mean"])}
    return out


def conclude(rows: list[dict[str, Any]], arms: list[str], seeds: list[int], stopped: int, failed: int,
             reference: str = "curriculum", replicates=None) -> tuple[list[str], list[stats.PairedDifference]]:
    """The verdict lines and the paired differences behind them (none where no verdict can be drawn).
    The first line always counts what the verdict covers and what it leaves out."""
    kept, full = complete_cells(rows, arms, seeds)
    head = (f"verdict over {len(full)} complete seed(s) x {len(arms)} arm(s) ({len(kept)} trials); "
            f"{stopped} trial(s) stopped early, {failed} failed, {len(rows) - len(kept)} finished trial(s) "
            f"left out because another arm of their seed did not finish")
    if reference not in arms:
        return [head, f"no verdict: no {reference!r} arm in the sweep"], []
    if len(arms) < 2:
        return [head, "no verdict: a single arm"], []
    if len(full) < stats.MIN_SEEDS:
        return [head, f"no verdict: n seeds {len(full)} < {stats.MIN_SEEDS}"], []
    diffs = stats.compare(score_table(kept), reference, replicates)
    return [head, *stats.verdict_lines(diffs, reference)], diffs


# ------------------------------------------------------------------------------------------- report


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t confidence interval over seeds; (mean, mean, mean) for a single seed."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """rows: one per finished trial with `arm` and `stage<N>/score` -> one row per arm x stage."""
    out = []
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        for s in [*STAGES, "mean"]:
            key = "score/mean" if s == "mean" else f"stage{s}/score"
            mean, lo, hi = t_interval([r[key] for r in mine])
            out.append({"arm": arm, "stage": s, "n_seeds": len(mine), "mean": mean, "ci_low": lo, "ci_high": hi})
    return out


def format_summary(summary: list[dict[str, Any]]) -> str:
    arms = list(dict.fromkeys(r["arm"] for r in summary))
    by = {(r["arm"], r["stage"]): r for r in summary}
    head = f"{'arm':<22}{'seeds':>6}" + "".join(f"{('stage ' + str(s)) if s != 'mean' else 'mean':>22}" for s in [*STAGES, "mean"])
    lines = [head, "-" * len(head)]
    for arm in arms:
        cells = []
        for s in [*STAGES, "mean"]:
            r = by[(arm, s)]
            cells.append(f"{r['mean']:.3f} [{r['ci_low']:.3f},{r['ci_high']:.3f}]".rjust(22))
        lines.append(f"{arm:<22}{by[(arm, 1)]['n_seeds']:>6}" + "".join(cells))
    return "\n".join(lines)


def plot_summary(summary: list[dict[str, Any]], path) -> Any:
    """Grouped bars: stage score per arm, error bars = 95% CI over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(dict.fromkeys(r["arm"] for r in summary))
    stages = [*STAGES, "mean"]
    by = {(r["arm"], r["stage"]): r for r in summary}
    width = 0.8 / len(arms)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for k, arm in enumerate(arms):
        xs = [i + (k - (len(arms) - 1) / 2) * width for i in range(len(stages))]
        means = [by[(arm, s)]["mean"] for s in stages]
        errs = [[m - by[(arm, s)]["ci_low"] for s, m in zip(stages, means)],
                [by[(arm, s)]["ci_high"] - m for s, m in zip(stages, means)]]
        ax.bar(xs, means, width, yerr=errs, capsize=3, label=arm)
    ax.set_xticks(range(len(stages)), ["Modality", "Anatomy", "Localization", "Abnormality", "Grading", "Mean"])
    ax.set_ylabel("stage score (mean over seeds, 95% CI)")
    ax.set_ylim(0, 1)
    ax.legend(ncol=min(4, len(arms)), fontsize=8)
    ax.set_title("Curriculum ablation: zero-shot stage scores per arm")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------- report
# A report is a list of blocks, ("h", text) / ("p", text) / ("table", header, rows) / ("img", file),
# rendered to Markdown and to HTML from the same content.


def design_lines(arms: list[dict[str, Any]], seeds: list[int], budget: dict[str, int], moves: str,
                 tuning_seeds: list[int], search: str) -> list[str]:
    moved = ("each phase moves with its settings (steps, LR, schedule, loss, freeze, counterfactuals, replay "
             "source); total budget equal" if moves == "content_and_settings" else
             "only phase content moves; each position keeps its settings (position-bound variant)")
    def arm(a: dict) -> str:
        knobs = ", ".join(f"{k} {v:.3g}" for k, v in sorted(a.get("knobs", {}).items()))
        return f"{a['label']} ({knobs})" if knobs else a["label"]

    return [f"Arms: {'; '.join(arm(a) for a in arms)}; search: {search}.",
            f"Seeds compared: {seeds} (the spec was tuned on {tuning_seeds or 'no recorded seeds'}).",
            f"Budget of every arm: {budget['budget/optimizer_steps']} optimizer steps, {budget['budget/samples']} samples.",
            f"What moves with an ordering: {moved}.",
            "Scores: zero-shot stage scores of the final weights on the held-out test split; training-time "
            "evaluations, early stopping and tuning used the validation split."]


def paired_table(diffs: list[stats.PairedDifference]) -> tuple[list[str], list[list[str]]]:
    header = ["arm", "stage", "seeds", "mean diff", "t 95% CI", "bootstrap 95% CI", "p", "p (Holm)", "verdict"]
    rows = [[d.arm, d.stage, str(d.n_seeds), f"{d.mean_diff:+.3f}", f"[{d.ci_low:+.3f}, {d.ci_high:+.3f}]",
             "n/a" if math.isnan(d.boot_ci_low) else f"[{d.boot_ci_low:+.3f}, {d.boot_ci_high:+.3f}]",
             f"{d.p_value:.3g}", f"{d.p_holm:.3g}", d.verdict] for d in diffs]
    return header, rows


def to_markdown(blocks: list[tuple]) -> str:
    out = []
    for b in blocks:
        if b[0] == "h":
            out.append(f"## {b[1]}")
        elif b[0] == "p":
            out.append(b[1])
        elif b[0] == "table":
            out += ["| " + " | ".join(b[1]) + " |", "|" + "---|" * len(b[1])]
            out += ["| " + " | ".join(r) + " |" for r in b[2]]
        elif b[0] == "img":
            out.append(f"![{b[1]}]({b[1]})")
        out.append("")
    return "\n".join(out)


def to_html(blocks: list[tuple], title: str) -> str:
    from html import escape

    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title></head><body>",
           f"<h1>{escape(title)}</h1>"]
    for b in blocks:
        if b[0] == "h":
            out.append(f"<h2>{escape(b[1])}</h2>")
        elif b[0] == "p":
            out.append(f"<p>{escape(b[1])}</p>")
        elif b[0] == "table":
            out.append("<table border='1'><tr>" + "".join(f"<th>{escape(c)}</th>" for c in b[1]) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in b[2]]
            out.append("</table>")
        elif b[0] == "img":
            out.append(f"<img src='{escape(b[1])}' alt='{escape(b[1])}'>")
    return "\n".join(out + ["</body></html>"])
