"""Curriculum ablations: the arms, one Tune trial per arm x seed, and the honest comparison.

An arm is (ordering, pacing) plus, under Optuna, continuous knobs (LR scale, replay share, each
phase's share of the step budget). Every arm trains the same number of optimizer steps on the same
number of samples: `arm_config` keeps the total and `check_equal_budgets` refuses a sweep that doesn't.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from radisim.platform.config import JobConfig
from radisim.platform.train.runner import budget

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


def arm_config(base: JobConfig, knobs: dict[str, Any], run_name: str) -> JobConfig:
    """The base job with one trial's knobs applied; validated again as a whole."""
    tree = base.model_dump(mode="json")
    seed = int(knobs.get("seed", base.train.seed))
    spec = tree["curriculum"]
    spec["ordering"] = knobs.get("ordering", spec["ordering"])
    spec["order_seed"] = seed
    spec["pacing"]["name"] = knobs.get("pacing", spec["pacing"]["name"])
    phases = spec["phases"]
    for i, phase in enumerate(phases):
        phase["lr"] *= float(knobs.get("lr_scale", 1.0))
        if "replay" in knobs and i > 0:
            phase["replay"] = float(knobs["replay"])
            if not phase["replay"]:  # an arm without replay: nothing left for `replay_last` to restrict
                phase["replay_last"] = 0
    weights = [knobs[f"phase_w{i}"] for i in range(len(phases)) if f"phase_w{i}" in knobs]
    if weights:
        total = sum(p["steps"] for p in phases)
        steps = apportion(total, weights, [max(1, p["warmup_steps"]) for p in phases])
        for phase, n in zip(phases, steps):
            phase["steps"] = n
    tree["train"]["seed"] = seed
    tree["eval"]["untrained_baseline"] = False  # the same for every arm of a seed: the sweep compares arms
    tree["tracking"]["run_name"] = run_name
    return JobConfig.model_validate(tree)


def check_equal_budgets(configs: list[JobConfig]) -> dict[str, int]:
    budgets = [budget(c) for c in configs]
    if any(b != budgets[0] for b in budgets):
        raise ValueError(f"arms differ in budget: {budgets}")
    return budgets[0]


def param_space(cfg: JobConfig) -> dict[str, Any]:
    from ray import tune

    a = cfg.ablate
    if a.search == "grid":
        return {"ordering": tune.grid_search(a.orderings), "pacing": tune.grid_search(a.pacings),
                "seed": tune.grid_search(a.seeds)}
    space: dict[str, Any] = {"ordering": tune.choice(a.orderings), "pacing": tune.choice(a.pacings),
                             "seed": tune.choice(a.seeds), "lr_scale": tune.loguniform(*a.lr_scale),
                             "replay": tune.uniform(*a.replay)}
    if a.search_phase_fractions:
        space.update({f"phase_w{i}": tune.uniform(0.5, 2.0) for i in range(len(cfg.curriculum.phases))})
    return space


def stage_report(metrics: dict[str, float]) -> dict[str, float]:
    scores = {f"stage{s}/score": float(metrics[f"stage{s}/score"]) for s in STAGES}
    return {**scores, "score/mean": float(np.mean(list(scores.values())))}


def curriculum_trial(config: dict[str, Any], job: dict, sweep_name: str, sweep_run_id: str, multi_pacing: bool) -> None:
    """Tune function trainable (bind the constants with `tune.with_parameters`): one arm x seed.
    Reports the stage scores after every phase, so ASHA can only stop a trial at a phase boundary."""
    import ray.tune

    from radisim.evals.suite import evaluator
    from radisim.platform.train.runner import phase_number, run_curriculum

    base = JobConfig.model_validate(job)
    trial_id = ray.tune.get_context().get_trial_id()
    knobs = {k: v for k, v in config.items() if k in KNOBS or k.startswith("phase_w")}
    cfg = arm_config(base, knobs, run_name=f"{sweep_name}-{trial_id}")

    def report(evaluations):
        label, metrics = evaluations[-1]
        scores = stage_report(metrics)
        print(f"[trial {trial_id} {cfg.curriculum.ordering} seed {cfg.train.seed}] after {label}: "
              + " ".join(f"s{s}={scores[f'stage{s}/score']:.3f}" for s in STAGES), flush=True)
        ray.tune.report({**scores, "phase": phase_number(label)})

    tags = {"sweep": sweep_name, "trial_id": trial_id,
            "arm": arm_label(cfg.curriculum.ordering, cfg.curriculum.pacing.name, multi_pacing)}
    # One phase after the other: ASHA decides at each phase boundary, before the next phase is paid for.
    run_curriculum(cfg, evaluate=evaluator(cfg), on_evaluation=report, extra_tags=tags, parent_run_id=sweep_run_id,
                   overlap_eval=False)


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


def verdicts(summary: list[dict[str, Any]], reference: str = "curriculum") -> list[str]:
    """Per stage: does the reference arm beat every other arm beyond the CIs (its lower bound above
    their upper bounds)? Only what the numbers say."""
    lines = []
    by = {(r["arm"], r["stage"]): r for r in summary}
    arms = list(dict.fromkeys(r["arm"] for r in summary))
    if reference not in arms:
        return [f"no '{reference}' arm finished; no comparison made"]
    for s in [*STAGES, "mean"]:
        ref = by[(reference, s)]
        others = [by[(a, s)] for a in arms if a != reference]
        beyond = [o["arm"] for o in others if ref["ci_low"] > o["ci_high"]]
        below = [o["arm"] for o in others if ref["ci_high"] < o["ci_low"]]
        stage = "mean of stages" if s == "mean" else f"stage {s}"
        if others and len(beyond) == len(others):
            verdict = "beats every other arm beyond the 95% CIs"
        elif beyond:
            verdict = f"beats {', '.join(beyond)} beyond the CIs; not the others"
        elif below:
            verdict = f"is below {', '.join(below)} beyond the CIs"
        else:
            verdict = "is not separable from the other arms (CIs overlap)"
        lines.append(f"{stage}: {reference} {verdict}")
    return lines


def best_arms(summary: list[dict[str, Any]]) -> dict[str, str]:
    best = {}
    for s in [*STAGES, "mean"]:
        rows = [r for r in summary if r["stage"] == s]
        best["mean" if s == "mean" else f"stage{s}"] = max(rows, key=lambda r: r["mean"])["arm"]
    return best


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
