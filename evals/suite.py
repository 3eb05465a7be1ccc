"""Run the five-stage zero-shot suite on one model -> a flat dict of MLflow-ready metrics.

    result = run_suite(ModelRef("radisim-tiny", checkpoint="ckpt/"), data_root="data/phantom",
                       cache_dir="cache/embeddings")
    result.metrics["stage4/br35h/auc"], result.metrics["stage4/br35h/auc_ci_low"], result.metrics["stage4/score"]

Steps: load the model on the driver (fingerprint + text tower) -> each subtask's examples from its
adapter -> image embeddings once per image split (Ray Data, disk cache; `embed.py`) -> zero-shot
scores (`zeroshot.py`) -> metrics with case-level bootstrap CIs (`metrics.py`) -> stage scores.

Keys of one subtask (`stage<N>/<id>/...`): for every metric m of its kind `m`, `m_ci_low`, `m_ci_high`
(cluster bootstrap over the subtask's cases), `m_chance` (`metrics.chance_levels`), `m_norm` (chance-
normalised, (m - chance) / (1 - chance)) with `m_norm_ci_low`/`_high`, and `n_images`, `n_cases`,
`n_scored` (the examples scored: images, or units such as MRNet exams, `Examples.unit_scores`).
Keys of a stage: `stage<N>/score` = mean chance-normalised primary metric over the stage's subtasks
whose primary metric is defined, with `_ci_low`/`_ci_high`; `stage<N>/score_raw` = the same mean of
the raw primary metrics; `stage<N>/n_subtasks` and `stage<N>/n_covered` (shown as "4/5"). A metric
that is undefined on a subtask (one class only) is listed in `SuiteResult.undefined`, never averaged
in silently.

`source="phantom"` (default) reads every subtask from the phantom eval split at `data_root`;
`source="real"` runs each subtask's own adapter on `roots.get(dataset, data_root / dataset)`.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from radisim.curriculum.phases import PHASES

from . import metrics as metrics_lib
from . import zeroshot
from .datasets import Examples, ImagePool, load_examples
from .embed import ModelRef, embed_pool
from .tasks import Subtask, subtasks as select_subtasks

__all__ = ["ModelRef", "PairingError", "SubtaskResult", "SuiteResult", "paired_differences", "run_suite",
           "stage_gains", "stage_score_key"]


class PairingError(ValueError):
    """Two suite results cannot be paired: they were not scored on the same images, cases and labels."""


def stage_score_key(stage: int) -> str:
    return f"stage{stage}/score"


@dataclass
class SubtaskResult:
    """Arrays of one subtask: y_true and scores in `metrics_lib`'s shapes, class names, the image and
    case of each example, and each metric's point value, chance level and bootstrap resamples."""

    subtask: Subtask
    classes: tuple[str, ...]
    y_true: np.ndarray
    scores: np.ndarray
    metrics: dict[str, float]  # keyed by full MLflow key
    queries: np.ndarray | None = None
    image_ids: np.ndarray | None = None
    case_ids: np.ndarray | None = None
    values: dict[str, float] = field(default_factory=dict)  # metric -> point value
    chance: dict[str, float] = field(default_factory=dict)  # metric -> chance level
    resamples: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> (n_bootstrap,)


@dataclass
class SuiteResult:
    model: ModelRef
    model_fingerprint: str
    metrics: dict[str, float]
    subtasks: dict[str, SubtaskResult]
    timings: dict[str, float] = field(default_factory=dict)
    cache_hits: dict[str, bool] = field(default_factory=dict)  # pool name -> served from the cache
    #: stage -> (n_bootstrap,) stage score on each resample (its covered subtasks' normalised primaries, averaged)
    stage_resamples: dict[int, np.ndarray] = field(default_factory=dict)
    undefined: list[str] = field(default_factory=list)  # MLflow keys of metrics undefined on their data
    seed: int = 0
    n_bootstrap: int = 0

    @property
    def label(self) -> str:
        return self.model.display

    @property
    def stage_scores(self) -> dict[int, float]:
        return {s: self.metrics[stage_score_key(s)] for s in range(1, len(PHASES) + 1) if stage_score_key(s) in self.metrics}


def _subtask_seed(seed: int, subtask_id: str) -> np.random.SeedSequence:
    """Bootstrap seed of a subtask: independent of which other subtasks run."""
    return np.random.SeedSequence([seed, zlib.crc32(subtask_id.encode())])


def _load_all(tasks: Sequence[Subtask], source: str, data_root: Path | None, roots: dict[str, Path],
              adapter_options: dict[str, dict[str, Any]]) -> dict[str, Examples]:
    out = {}
    for task in tasks:
        adapter = "phantom" if source == "phantom" else task.dataset
        if adapter in roots:
            root = Path(roots[adapter])
        elif data_root is not None:
            root = Path(data_root) if source == "phantom" else Path(data_root) / adapter
        else:
            raise ValueError(f"no root for dataset {adapter!r}: pass data_root or roots={{{adapter!r}: path}}")
        out[task.id] = load_examples(adapter, root, task, **adapter_options.get(adapter, {}))
    return out


def run_suite(
    model_ref: ModelRef,
    subtasks: Sequence[str] | None = None,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    source: str = "phantom",
    roots: dict[str, str | Path] | None = None,
    adapter_options: dict[str, dict[str, Any]] | None = None,
    batch_size: int = 64,
    num_actors: int = 1,
    num_cpus_per_actor: float | None = None,
    driver_max_images: int = 0,
) -> SuiteResult:
    """Evaluate `model_ref` on the chosen subtasks (default: all 24). Needs `ray.init` beforehand.

    metrics: `stage<N>/<id>/<metric>` plus `_ci_low`/`_ci_high` for every metric of each subtask,
    and `stage<N>/score` = mean primary metric over that stage's chosen subtasks, with its own CI
    (`stage<N>/score_ci_low`/`_ci_high`: each resample's mean over the same subtasks).
    """
    if source not in ("phantom", "real"):
        raise ValueError(f"source must be 'phantom' or 'real', got {source!r}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    tasks = select_subtasks(list(subtasks) if subtasks is not None else None)
    examples = _load_all(tasks, source, None if data_root is None else Path(data_root),
                         {k: Path(v) for k, v in (roots or {}).items()}, adapter_options or {})
    timings["load_data_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    bundle = model_ref.load("cpu")
    encoder = zeroshot.make_text_encoder(bundle)
    logit_scale = zeroshot.logit_scale_of(bundle)
    encoder([p for task in tasks for p in zeroshot.prompts_of(task, examples[task.id].queries)])  # one batched pass
    timings["load_model_and_prompts_s"] = time.perf_counter() - t

    t = time.perf_counter()
    pools: dict[int, ImagePool] = {id(ex.pool): ex.pool for ex in examples.values()}
    pool_embeddings: dict[int, np.ndarray] = {}
    cache_hits: dict[str, bool] = {}
    for pid, pool in pools.items():
        pool_embeddings[pid], cache_hits[pool.name] = embed_pool(
            model_ref, pool, bundle.fingerprint, cache_dir, batch_size=batch_size, num_actors=num_actors,
            num_cpus_per_actor=num_cpus_per_actor, bundle=bundle, driver_max_images=driver_max_images)
    timings["embed_s"] = time.perf_counter() - t

    t = time.perf_counter()
    flat: dict[str, float] = {}
    results: dict[str, SubtaskResult] = {}
    for task in tasks:
        ex = examples[task.id]
        scores = zeroshot.score(task, pool_embeddings[id(ex.pool)][ex.rows], encoder, logit_scale, ex.queries)
        results[task.id] = score_subtask(task, ex, scores, n_bootstrap, seed)
        flat.update(results[task.id].metrics)
    stage_flat, stage_resamples = stage_summaries(results, n_bootstrap)
    flat.update(stage_flat)
    undefined = [task.key(m) for task in tasks for m in task.metrics if not np.isfinite(results[task.id].values[m])]
    timings["score_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    return SuiteResult(model_ref, bundle.fingerprint, flat, results, timings, cache_hits, stage_resamples,
                       undefined, seed, n_bootstrap)


def score_subtask(task: Subtask, ex: Examples, scores: np.ndarray, n_bootstrap: int, seed: int) -> SubtaskResult:
    """Every metric of one subtask with its case-level CI, chance level and chance-normalised value."""
    ids, y, cases, scores = ex.unit_scores(scores)  # per exam where the protocol scores exams (MRNet)
    values, boots = metrics_lib.evaluate_resampled(task.kind, y, scores, n_bootstrap, _subtask_seed(seed, task.id),
                                                   cases=cases)
    chance = metrics_lib.chance_levels(task.kind, y, len(task.classes))
    keyed = {task.key(name): v for name, v in values.items()}
    for name in task.metrics:
        norm = [metrics_lib.chance_normalised(values[name + end], chance[name]) for end in ("", "_ci_low", "_ci_high")]
        keyed.update({task.key(f"{name}_chance"): chance[name], task.key(f"{name}_norm"): norm[0],
                      task.key(f"{name}_norm_ci_low"): norm[1], task.key(f"{name}_norm_ci_high"): norm[2]})
    keyed[task.key("n_images")] = float(len(ex))
    keyed[task.key("n_cases")] = float(len(set(cases)))
    keyed[task.key("n_scored")] = float(len(y))  # images, or units (exams) where scored per unit
    queries = ex.queries if ex.units is None else None
    return SubtaskResult(task, task.classes, y, scores, keyed, queries, ids, cases,
                         {m: values[m] for m in task.metrics}, chance, boots)


def _normalised_resamples(result: SubtaskResult, n_bootstrap: int) -> np.ndarray:
    task = result.subtask
    boots = result.resamples.get(task.metric, np.full(n_bootstrap, np.nan))
    return metrics_lib.chance_normalised(boots, result.chance[task.metric])


def stage_summaries(results: dict[str, SubtaskResult], n_bootstrap: int) -> tuple[dict[str, float], dict[int, np.ndarray]]:
    """Stage scores (module docstring) and each stage's (n_bootstrap,) resampled score."""
    flat: dict[str, float] = {}
    resamples: dict[int, np.ndarray] = {}
    for stage in sorted({r.subtask.stage for r in results.values()}):
        chosen = [r for r in results.values() if r.subtask.stage == stage]
        covered = [r for r in chosen if np.isfinite(r.values[r.subtask.metric])]
        key = stage_score_key(stage)
        flat[f"stage{stage}/n_subtasks"], flat[f"stage{stage}/n_covered"] = float(len(chosen)), float(len(covered))
        if not covered:
            continue
        score = float(np.mean([r.metrics[r.subtask.key(r.subtask.metric + "_norm")] for r in covered]))
        resamples[stage] = metrics_lib.nanmean(np.stack([_normalised_resamples(r, n_bootstrap) for r in covered]), axis=0)
        low, high = metrics_lib.percentile_ci(score, resamples[stage])
        flat.update({key: score, f"{key}_ci_low": low, f"{key}_ci_high": high,
                     f"stage{stage}/score_raw": float(np.mean([r.values[r.subtask.metric] for r in covered]))})
    return flat, resamples


def check_pairable(result: SuiteResult, reference: SuiteResult) -> None:
    """Raise `PairingError` unless both were scored on the same subtasks, images, cases and labels with
    the same bootstrap seed and size (then their resamples are the same draws of cases)."""
    problem = ""
    if sorted(result.subtasks) != sorted(reference.subtasks):
        problem = f"different subtasks ({sorted(set(result.subtasks) ^ set(reference.subtasks))} in one only)"
    elif (result.seed, result.n_bootstrap) != (reference.seed, reference.n_bootstrap):
        problem = f"different bootstrap (seed, n) {(result.seed, result.n_bootstrap)} vs {(reference.seed, reference.n_bootstrap)}"
    else:
        for sid, a in result.subtasks.items():
            b = reference.subtasks[sid]
            for what, x, y in (("images", a.image_ids, b.image_ids), ("cases", a.case_ids, b.case_ids), ("labels", a.y_true, b.y_true)):
                if x is None or y is None or not np.array_equal(np.asarray(x), np.asarray(y)):
                    problem = f"subtask {sid} was scored on different {what}"
                    break
            if problem:
                break
    if problem:
        raise PairingError(f"cannot pair {result.label} with {reference.label}: {problem}")


def paired_differences(result: SuiteResult, reference: SuiteResult, suffix: str = "_delta") -> dict[str, float]:
    """`result` minus `reference` for every subtask metric (`stage<N>/<id>/<metric><suffix>`) and stage
    score (`stage<N>/score<suffix>`), each with the 95% percentile interval of the per-resample
    difference (`..._ci_low`/`_ci_high`): both were scored on the same cases and drew the same case
    resamples, so the interval is of a paired difference. Raises `PairingError` otherwise."""
    check_pairable(result, reference)
    out: dict[str, float] = {}

    def put(key: str, value: float, boots: np.ndarray | None) -> None:
        low, high = metrics_lib.percentile_ci(value, boots if boots is not None else np.array([]))
        out.update({f"{key}{suffix}": value, f"{key}{suffix}_ci_low": low, f"{key}{suffix}_ci_high": high})

    for sid, a in result.subtasks.items():
        b = reference.subtasks[sid]
        for metric in a.subtask.metrics:
            boots = a.resamples[metric] - b.resamples[metric] if metric in a.resamples and metric in b.resamples else None
            put(a.subtask.key(metric), a.values[metric] - b.values[metric], boots)
    for stage, resamples in result.stage_resamples.items():
        key = stage_score_key(stage)
        if stage in reference.stage_resamples and key in reference.metrics:
            put(key, result.metrics[key] - reference.metrics[key], resamples - reference.stage_resamples[stage])
    return out


def stage_gains(result: SuiteResult, baseline: SuiteResult) -> dict[str, float]:
    """`stage<N>/gain` = stage score minus the baseline's (a training job's initial weights), with the
    paired case-bootstrap 95% CI (`_ci_low`/`_ci_high`). A CI above 0 is a gain beyond the eval set's
    sampling noise (not beyond training's run-to-run spread: that takes several seeds). Empty when the
    two cannot be paired (`check_pairable`)."""
    try:
        diffs = paired_differences(result, baseline, suffix="")
    except PairingError:
        return {}
    out = {}
    for stage in result.stage_resamples:
        key = stage_score_key(stage)
        if key in diffs:
            out.update({f"stage{stage}/gain{end}": diffs[f"{key}{end}"] for end in ("", "_ci_low", "_ci_high")})
    return out


def evaluator(cfg):
    """The per-phase evaluation of a training job (`radisim.platform.config.JobConfig`): the suite on
    the held-out split of `cfg.data.root`, image embeddings cached per checkpoint in `cfg.eval.cache_dir`.
    Returns `evaluate(checkpoint_dir, label) -> flat metrics`, as `run_curriculum` expects. Once it has
    evaluated the initial weights (label `UNTRAINED`), later labels also get `stage_gains` against them."""
    from radisim.evals.compare import timing_metrics
    from radisim.platform.config import resolve_path
    from radisim.platform.train.runner import UNTRAINED

    subtask_ids = None if cfg.eval.subtasks == ["all"] else list(cfg.eval.subtasks)
    untrained: list[SuiteResult] = []

    def evaluate(checkpoint_dir: str, label: str) -> dict[str, float]:
        ref = ModelRef(cfg.model.name, checkpoint=checkpoint_dir, siglip=cfg.curriculum.uses_siglip, label=label)
        result = run_suite(ref, subtasks=subtask_ids, data_root=resolve_path(cfg.eval.data_root or cfg.data.root),
                           cache_dir=resolve_path(cfg.eval.cache_dir), n_bootstrap=cfg.eval.n_bootstrap,
                           seed=cfg.eval.seed, source=cfg.eval.source, roots=cfg.eval.roots or None,
                           driver_max_images=cfg.eval.driver_max_images)
        metrics = {**result.metrics, **timing_metrics(result)}  # eval/total_s...: what it cost
        if label == UNTRAINED:
            untrained[:] = [result]
            return metrics
        return {**metrics, **(stage_gains(result, untrained[0]) if untrained else {})}

    return evaluate
