"""Paired comparison of ablation arms over seeds: differences, intervals, Holm correction, verdicts.

Arms of one seed share initial weights, data and evaluation images, so the unit of comparison is the
per-seed difference `reference - arm` (per stage and for the mean of stages), not the overlap of two
unpaired intervals. Inputs are plain per-seed arrays, independent of how the evaluation stores them:

- `scores[arm][seed]`: the point score (a stage score, or the mean of stages);
- optionally `replicates[arm][seed]`: (B,) the same score on B bootstrap resamples of the evaluation
  images, drawn with the *same* resample indices for every arm of a seed (evals draws them from
  `eval.seed` and the subtask, so equal images give equal resamples). `paired_replicates` computes
  them from per-image predictions where an evaluation provides those instead.

Per (arm, stage): a paired t-interval and two-sided t-test over seeds (`scipy.stats.ttest_rel`), and,
with replicates, a hierarchical bootstrap (resample seeds, then one image resample within each drawn
seed) whose percentile interval includes the evaluation-set noise. Holm's step-down correction runs
over every (arm, stage) compared. A verdict is "beats" / "below" only where the Holm-adjusted p is
below alpha and the interval excludes 0 on the same side; otherwise "not separable".
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import numpy as np
from scipy import stats

MIN_SEEDS = 3


@dataclass(frozen=True)
class PairedDifference:
    arm: str
    stage: str
    n_seeds: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float
    verdict: str
    boot_ci_low: float = math.nan
    boot_ci_high: float = math.nan

    def row(self) -> dict:
        return asdict(self)


CSV_FIELDS = ["arm", "stage", "n_seeds", "mean_diff", "ci_low", "ci_high", "p_value", "p_holm", "verdict",
              "boot_ci_low", "boot_ci_high"]


def paired_t(diffs: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, ci_low, ci_high, two-sided p) of per-seed differences; needs >= 2 seeds."""
    d = np.asarray(diffs, dtype=float)
    if len(d) < 2:
        raise ValueError(f"a paired t-interval needs >= 2 seeds, got {len(d)}")
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0:
        return mean, mean, mean, (1.0 if mean == 0 else 0.0)
    half = float(stats.t.ppf(0.5 + confidence / 2, len(d) - 1) * sd / math.sqrt(len(d)))
    p = float(stats.ttest_1samp(d, 0.0).pvalue)
    return mean, mean - half, mean + half, p


def hierarchical_bootstrap(diff_replicates: np.ndarray, n_boot: int = 2000, seed: int = 0,
                           confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean difference: resample seeds with replacement, then for each
    drawn seed one of its B image-resample replicates. `diff_replicates`: (n_seeds, B)."""
    r = np.asarray(diff_replicates, dtype=float)
    if r.ndim != 2 or r.shape[0] < 2:
        raise ValueError(f"expected (n_seeds >= 2, B) replicates, got shape {r.shape}")
    rng = np.random.default_rng(seed)
    s = rng.integers(0, r.shape[0], size=(n_boot, r.shape[0]))
    b = rng.integers(0, r.shape[1], size=(n_boot, r.shape[0]))
    means = np.nanmean(r[s, b], axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.nanpercentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_replicates(metric: Callable[[np.ndarray, np.ndarray], float], y_true: np.ndarray,
                      scores_ref: np.ndarray, scores_arm: np.ndarray, n_boot: int = 1000,
                      seed: int = 0) -> np.ndarray:
    """(n_boot,) metric(ref) - metric(arm) on image resamples shared by both models, from per-image
    predictions (one seed's evaluation of two arms on the same images)."""
    y, a, b = np.asarray(y_true), np.asarray(scores_ref), np.asarray(scores_arm)
    if not (len(y) == len(a) == len(b)):
        raise ValueError(f"per-image arrays differ in length: {len(y)}, {len(a)}, {len(b)}")
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for k in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        out[k] = metric(y[idx], a[idx]) - metric(y[idx], b[idx])
    return out


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (monotone, capped at 1), in the input order."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def _verdict(mean: float, low: float, high: float, p_holm: float, alpha: float) -> str:
    if p_holm < alpha and low > 0:
        return "beats"
    if p_holm < alpha and high < 0:
        return "below"
    return "not separable"


def compare(scores: dict[str, dict[int, dict[str, float]]], reference: str = "curriculum",
            replicates: Optional[dict[str, dict[int, dict[str, np.ndarray]]]] = None, alpha: float = 0.05,
            n_boot: int = 2000, seed: int = 0) -> list[PairedDifference]:
    """`scores[arm][seed][stage]` -> one PairedDifference per (other arm, stage), over the seeds both
    arms finished. The t-interval decides (it is what the Holm-corrected p-value belongs to); the
    bootstrap interval, where replicates exist, is reported beside it."""
    if reference not in scores:
        raise ValueError(f"no {reference!r} arm among {sorted(scores)}")
    raw = []
    for arm in (a for a in scores if a != reference):
        seeds = sorted(set(scores[reference]) & set(scores[arm]))
        if len(seeds) < 2:
            raise ValueError(f"arm {arm!r}: {len(seeds)} seed(s) shared with {reference!r}; need >= 2")
        for stage in scores[reference][seeds[0]]:
            d = np.array([scores[reference][s][stage] - scores[arm][s][stage] for s in seeds])
            mean, low, high, p = paired_t(d)
            boot = (math.nan, math.nan)
            if replicates is not None and arm in replicates and reference in replicates:
                reps = np.stack([replicates[reference][s][stage] - replicates[arm][s][stage] for s in seeds])
                boot = hierarchical_bootstrap(reps, n_boot, seed)
            raw.append((arm, stage, len(seeds), mean, low, high, p, boot))
    adjusted = holm([r[6] for r in raw])
    return [PairedDifference(arm, stage, n, mean, low, high, p, ph, _verdict(mean, low, high, ph, alpha), *boot)
            for (arm, stage, n, mean, low, high, p, boot), ph in zip(raw, adjusted)]


def best_arm(diffs: list[PairedDifference], stage: str, reference: str = "curriculum") -> Optional[str]:
    """The arm separably best at `stage`, or None: the reference where it beats every other arm; an
    arm where the reference is below it and it is the only such arm."""
    rows = [d for d in diffs if d.stage == stage]
    if rows and all(d.verdict == "beats" for d in rows):
        return reference
    above = [d.arm for d in rows if d.verdict == "below"]
    return above[0] if len(above) == 1 else None


def verdict_lines(diffs: list[PairedDifference], reference: str = "curriculum") -> list[str]:
    """One sentence per stage, from the numbers: which arms the reference beats, is below, or cannot
    be separated from (Holm-corrected over every arm x stage)."""
    lines = []
    for stage in dict.fromkeys(d.stage for d in diffs):
        rows = [d for d in diffs if d.stage == stage]
        parts = []
        for word in ("beats", "below", "not separable"):
            names = [f"{d.arm} ({d.mean_diff:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}], p_holm {d.p_holm:.3g})"
                     for d in rows if d.verdict == word]
            if names:
                label = {"beats": "beats", "below": "is below", "not separable": "is not separable from"}[word]
                parts.append(f"{label} {', '.join(names)}")
        best = best_arm(diffs, stage, reference)
        tail = f"; best arm: {best}" if best else "; no arm is separably best"
        lines.append(f"{stage}: {reference} " + "; ".join(parts) + tail)
    return lines


def forest_plot(diffs: list[PairedDifference], path, title: str = "curriculum - arm, per seed pair"):
    """One row per (arm, stage): mean paired difference with its t-interval (and bootstrap interval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.32 * len(diffs) + 1.2))
    ys = np.arange(len(diffs))[::-1]
    colors = {"beats": "tab:green", "below": "tab:red", "not separable": "tab:gray"}
    for y, d in zip(ys, diffs):
        ax.plot([d.ci_low, d.ci_high], [y, y], color=colors[d.verdict], lw=2)
        if not math.isnan(d.boot_ci_low):
            ax.plot([d.boot_ci_low, d.boot_ci_high], [y - 0.2, y - 0.2], color=colors[d.verdict], lw=1, ls=":")
        ax.plot(d.mean_diff, y, "o", color=colors[d.verdict])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(ys, [f"{d.arm} / {d.stage}" for d in diffs], fontsize=7)
    ax.set_xlabel("score difference (solid: paired t 95% CI; dotted: hierarchical bootstrap)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
