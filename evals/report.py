"""Reports of suite results: radar of the five stage scores, comparison CSV, ROC curves, confusion
matrices (PNG via matplotlib's Agg backend), and the text table of stage scores for the CLI.

Inputs are `SuiteResult`s (or, for the radar / table / CSV, plain {label: flat metrics dict}, e.g.
read back from MLflow), so phases of one curriculum and baseline models compare the same way.
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from radisim.curriculum.phases import PHASES

from .suite import SuiteResult, stage_score_key

#: Axis labels of the radar, in stage order (the paper's figure, shortened).
STAGE_LABELS: tuple[str, ...] = ("Modality", "Anatomy", "Localization", "Abnormality", "Grading")
N_STAGES = len(PHASES)

MetricsByLabel = Mapping[str, Mapping[str, float]]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _as_metrics(results: Sequence[SuiteResult] | MetricsByLabel) -> dict[str, Mapping[str, float]]:
    if isinstance(results, Mapping):
        return dict(results)
    return {r.label: r.metrics for r in results}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def stage_scores(metrics: Mapping[str, float]) -> list[float]:
    return [float(metrics.get(stage_score_key(s), float("nan"))) for s in range(1, N_STAGES + 1)]


def _coverage(metrics: Mapping[str, float], stage: int) -> str:
    """" 4/5": subtasks whose primary metric is defined / subtasks chosen ('' when not recorded)."""
    n, covered = metrics.get(f"stage{stage}/n_subtasks"), metrics.get(f"stage{stage}/n_covered")
    return f" {int(covered)}/{int(n)}" if n is not None and covered is not None else ""


def format_stage_table(results: Sequence[SuiteResult] | MetricsByLabel, digits: int = 3) -> str:
    """Rows = models (or phases), columns = the five stage scores (chance-normalised: 0 = chance,
    1 = perfect) with the subtasks they cover ("4/5"), and their mean; '-' where not evaluated."""
    rows = _as_metrics(results)
    header = ["model", *STAGE_LABELS, "mean"]
    body = []
    for label, metrics in rows.items():
        scores = stage_scores(metrics)
        finite = [s for s in scores if math.isfinite(s)]
        mean = sum(finite) / len(finite) if finite else float("nan")
        cells = [f"{s:.{digits}f}{_coverage(metrics, i)}" if math.isfinite(s) else "-" + _coverage(metrics, i)
                 for i, s in enumerate(scores, 1)]
        body.append([label, *cells, f"{mean:.{digits}f}" if math.isfinite(mean) else "-"])
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)])


def format_gain_table(label: str, metrics: Mapping[str, float], baseline: str = "untrained", digits: int = 3) -> str:
    """`label`'s stage gains over `baseline` (`suite.stage_gains`) with their paired 95% CIs, a row per
    stage; '' when the metrics carry none."""
    rows = [(name, *(metrics.get(f"stage{s}/gain{end}") for end in ("", "_ci_low", "_ci_high")))
            for s, name in enumerate(STAGE_LABELS, 1)]
    rows = [r for r in rows if r[1] is not None and math.isfinite(r[1])]
    if not rows:
        return ""
    f = lambda v: f"{v:+.{digits}f}"  # noqa: E731
    body = [f"{name:<12}  {f(g):>7}  [{f(lo)}, {f(hi)}]  {'above 0' if lo > 0 else ('below 0' if hi < 0 else 'spans 0')}"
            for name, g, lo, hi in rows]
    return "\n".join([f"{label} - {baseline}, paired case-bootstrap 95% CI over the held-out cases:",
                       f"{'stage':<12}  {'gain':>7}  {'95% CI':<16}", *body])


def format_paired_table(label: str, reference: str, diffs: Mapping[str, float], digits: int = 3) -> str:
    """`label` minus `reference` per stage score and per subtask primary metric (`suite.paired_differences`
    keys), with the paired case-bootstrap 95% CIs."""
    from .tasks import subtasks

    f = lambda v: f"{v:+.{digits}f}"  # noqa: E731
    rows = [(f"stage {s} {name}", f"stage{s}/score") for s, name in enumerate(STAGE_LABELS, 1)]
    rows += [(f"  {t.id} {t.metric}", t.key(t.metric)) for t in subtasks()]
    body = []
    for name, key in rows:
        d, lo, hi = (diffs.get(f"{key}_delta{end}") for end in ("", "_ci_low", "_ci_high"))
        if d is not None and math.isfinite(d):
            verdict = "above 0" if lo > 0 else ("below 0" if hi < 0 else "spans 0")
            body.append(f"{name:<40}  {f(d):>7}  [{f(lo)}, {f(hi)}]  {verdict}")
    return "\n".join([f"{label} - {reference}, paired difference, case-bootstrap 95% CI "
                       f"(stage scores chance-normalised):", *body])


def format_subtask_counts(result: SuiteResult, digits: int = 3) -> str:
    """Per subtask: primary metric with its case-bootstrap CI, and how many cases and images it rests on."""
    lines = [f"{'subtask':<30} {'metric':<9} {'value':>6}  {'95% CI (cases)':<16} {'cases':>6} {'images':>7} {'scored':>7}"]
    for sid, sub in result.subtasks.items():
        t, m = sub.subtask, sub.metrics
        ci = f"[{m[t.key(t.metric + '_ci_low')]:.{digits}f}, {m[t.key(t.metric + '_ci_high')]:.{digits}f}]"
        lines.append(f"{sid:<30} {t.metric:<9} {m[t.key(t.metric)]:>6.{digits}f}  {ci:<16} {int(m[t.key('n_cases')]):>6} "
                     f"{int(m[t.key('n_images')]):>7} {int(m[t.key('n_scored')]):>7}")
    return "\n".join(lines)


def radar_plot(results: Sequence[SuiteResult] | MetricsByLabel, path: str | Path, title: str | None = None) -> Path:
    """One closed polygon per model over the five stage scores (0..1), like the paper's figure."""
    plt = _pyplot()
    rows = _as_metrics(results)
    angles = np.linspace(0, 2 * np.pi, N_STAGES, endpoint=False).tolist()
    fig, ax = plt.subplots(figsize=(6.5, 6.5), subplot_kw={"polar": True})
    ax.set_theta_offset(np.pi / 2)
    ax.set_theta_direction(-1)
    colors = plt.get_cmap("tab10")
    for i, (label, metrics) in enumerate(rows.items()):
        values = np.nan_to_num(stage_scores(metrics), nan=0.0).tolist()
        ax.plot(angles + angles[:1], values + values[:1], color=colors(i % 10), linewidth=2, label=label, marker="o")
        ax.fill(angles + angles[:1], values + values[:1], color=colors(i % 10), alpha=0.15)
    ax.set_xticks(angles)
    ax.set_xticklabels(STAGE_LABELS, fontsize=12)
    lowest = min([0.0, *(v for m in rows.values() for v in stage_scores(m) if math.isfinite(v))])
    ax.set_ylim(math.floor(lowest * 5) / 5, 1)  # chance-normalised scores fall below 0 when worse than chance
    ax.set_rlabel_position(180 / N_STAGES)  # radial ticks between the first two spokes
    ax.set_yticks([0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_yticklabels(["0.2", "0.4", "0.6", "0.8", "1.0"], fontsize=8, color="grey")
    ax.tick_params(axis="x", pad=14)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(4, max(1, len(rows))), frameon=False)
    ax.set_title(title or "Five-stage zero-shot evaluation", pad=24)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def comparison_csv(results: Sequence[SuiteResult] | MetricsByLabel, path: str | Path) -> Path:
    """One row per model; columns = `model` + every metric key (union over models, sorted)."""
    rows = _as_metrics(results)
    keys = sorted({k for metrics in rows.values() for k in metrics})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["model", *keys])
        for label, metrics in rows.items():
            writer.writerow([label, *(repr(float(metrics[k])) if k in metrics else "" for k in keys)])
    return path


def roc_curves(result: SuiteResult, out_dir: str | Path) -> list[Path]:
    """`roc_stage<N>_<id>.png` for every binary subtask of the result."""
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for sid, sub in result.subtasks.items():
        task = sub.subtask
        if task.kind != "binary" or len(np.unique(sub.y_true)) < 2:
            continue
        fpr, tpr, _ = roc_curve(sub.y_true, sub.scores)
        auc = sub.metrics[task.key("auc")]
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.plot(fpr, tpr, linewidth=2, label=f"AUC {auc:.3f} [{sub.metrics[task.key('auc_ci_low')]:.3f}, "
                                             f"{sub.metrics[task.key('auc_ci_high')]:.3f}]")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
               title=f"stage {task.stage} / {sid}: {task.classes[1]}")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        paths.append(out_dir / f"roc_stage{task.stage}_{sid}.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


def confusion_matrices(result: SuiteResult, out_dir: str | Path) -> list[Path]:
    """`confusion_stage<N>_<id>.png` for every single-label and localization subtask (rows = truth)."""
    from sklearn.metrics import confusion_matrix

    plt = _pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for sid, sub in result.subtasks.items():
        task = sub.subtask
        if task.kind not in ("single-label", "localization"):
            continue
        k = len(sub.classes)
        cm = confusion_matrix(sub.y_true, sub.scores.argmax(1), labels=list(range(k)))
        fig, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.2 * k + 2))
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
        ax.set_xticks(range(k), sub.classes, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(k), sub.classes, fontsize=8)
        ax.set(xlabel="predicted", ylabel="true", title=f"stage {task.stage} / {sid}")
        fig.tight_layout()
        paths.append(out_dir / f"confusion_stage{task.stage}_{sid}.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


def write_report(results: Sequence[SuiteResult], out_dir: str | Path, reference: str | None = None,
                 differences: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, list[Path]]:
    """Everything at once: radar.png, comparison.csv, stage_scores.txt, paired_differences.txt (with
    `differences` = {model: paired differences against `reference`}), and per model
    `<model>/roc_*.png`, `<model>/confusion_*.png`."""
    out_dir = Path(out_dir)
    files: dict[str, list[Path]] = {
        "radar": [radar_plot(results, out_dir / "radar.png")],
        "csv": [comparison_csv(results, out_dir / "comparison.csv")],
        "roc": [],
        "confusion": [],
    }
    table = out_dir / "stage_scores.txt"
    table.write_text(format_stage_table(results) + "\n")
    files["table"] = [table]
    if differences:
        paired = out_dir / "paired_differences.txt"
        paired.write_text("\n\n".join(format_paired_table(label, reference or "", d) for label, d in differences.items()) + "\n")
        files["table"].append(paired)
    for result in results:
        model_dir = out_dir / _slug(result.label)
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "subtasks.txt").write_text(format_subtask_counts(result) + "\n")
        files["table"].append(model_dir / "subtasks.txt")
        files["roc"] += roc_curves(result, model_dir)
        files["confusion"] += confusion_matrices(result, model_dir)
    return files
