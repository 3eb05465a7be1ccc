"""Run the five-stage zero-shot suite on one model -> a flat dict of MLflow-ready metrics.

    result = run_suite(ModelRef("radisim-tiny", checkpoint="ckpt/"), data_root="data/phantom",
                       cache_dir="cache/embeddings")
    result.metrics["stage4/br35h/auc"], result.metrics["stage4/br35h/auc_ci_low"], result.metrics["stage4/score"]

Steps: load the model on the driver (fingerprint + text tower) -> each subtask's examples from its
adapter -> image embeddings once per image split (Ray Data, disk cache; `embed.py`) -> zero-shot
scores (`zeroshot.py`) -> metrics with bootstrap CIs (`metrics.py`) -> stage scores.

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

__all__ = ["ModelRef", "SubtaskResult", "SuiteResult", "run_suite", "stage_gains", "stage_score_key"]


def stage_score_key(stage: int) -> str:
    return f"stage{stage}/score"


@dataclass
class SubtaskResult:
    """Arrays of one subtask, for plots: y_true and scores in `metrics_lib`'s shapes, class names."""

    subtask: Subtask
    classes: tuple[str, ...]
    y_true: np.ndarray
    scores: np.ndarray
    metrics: dict[str, float]  # keyed by full MLflow key
    queries: np.ndarray | None = None


@dataclass
class SuiteResult:
    model: ModelRef
    model_fingerprint: str
    metrics: dict[str, float]
    subtasks: dict[str, SubtaskResult]
    timings: dict[str, float] = field(default_factory=dict)
    cache_hits: dict[str, bool] = field(default_factory=dict)  # pool name -> served from the cache
    #: stage -> (n_bootstrap,) stage score on each resample (its subtasks' primary metrics, averaged)
    stage_resamples: dict[int, np.ndarray] = field(default_factory=dict)

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
    logit_scale = zeroshot.logit_scale_of(bundle.model)
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
    primaries: dict[int, list[float]] = {}
    primary_resamples: dict[int, list[np.ndarray]] = {}
    for task in tasks:
        ex = examples[task.id]
        image_emb = pool_embeddings[id(ex.pool)][ex.rows]
        scores = zeroshot.score(task, image_emb, encoder, logit_scale, ex.queries)
        values, boots = metrics_lib.evaluate_resampled(task.kind, ex.y, scores, n_bootstrap, _subtask_seed(seed, task.id))
        keyed = {f"stage{task.stage}/{task.id}/{name}": v for name, v in values.items()}
        flat.update(keyed)
        results[task.id] = SubtaskResult(task, task.classes, ex.y, scores, keyed, ex.queries)
        primaries.setdefault(task.stage, []).append(values[task.metric])
        primary_resamples.setdefault(task.stage, []).append(boots.get(task.metric, np.full(n_bootstrap, np.nan)))
    stage_resamples = {}
    for stage, values in sorted(primaries.items()):
        score = float(metrics_lib.nanmean(np.array(values), axis=0))
        stage_resamples[stage] = metrics_lib.nanmean(np.stack(primary_resamples[stage]), axis=0)
        low, high = metrics_lib.percentile_ci(score, stage_resamples[stage])
        flat.update({stage_score_key(stage): score, f"{stage_score_key(stage)}_ci_low": low,
                     f"{stage_score_key(stage)}_ci_high": high})
    timings["score_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    return SuiteResult(model_ref, bundle.fingerprint, flat, results, timings, cache_hits, stage_resamples)


def _same_examples(a: SuiteResult, b: SuiteResult, stage: int) -> bool:
    """The stage's subtasks ran on the same examples in both (so the same seed drew the same resamples)."""
    ids = sorted(k for k, r in a.subtasks.items() if r.subtask.stage == stage)
    return ids == sorted(k for k, r in b.subtasks.items() if r.subtask.stage == stage) and all(
        np.array_equal(a.subtasks[k].y_true, b.subtasks[k].y_true) for k in ids)


def stage_gains(result: SuiteResult, baseline: SuiteResult) -> dict[str, float]:
    """`stage<N>/gain` = stage score minus the baseline's, with a paired bootstrap 95% CI
    (`_ci_low`/`_ci_high`): both models were scored on the same images and resamples, so the
    interval is of the per-resample difference. A CI above 0 is a gain beyond the eval set's
    sampling noise (not beyond training's run-to-run spread: that takes several seeds)."""
    out: dict[str, float] = {}
    for stage, resamples in result.stage_resamples.items():
        base = baseline.stage_resamples.get(stage)
        if base is None or base.shape != resamples.shape or not _same_examples(result, baseline, stage):
            continue
        key = stage_score_key(stage)
        gain = result.metrics[key] - baseline.metrics[key]
        low, high = metrics_lib.percentile_ci(gain, resamples - base)
        out.update({f"stage{stage}/gain": gain, f"stage{stage}/gain_ci_low": low, f"stage{stage}/gain_ci_high": high})
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
