"""The driver side of a curriculum run: one Ray Train `TorchTrainer.fit()` per phase, each phase
starting from the previous phase's checkpoint, evaluation after each phase, an MLflow run tree
(parent run for the curriculum, one child run per phase)."""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from radisim.platform import storage
from radisim.platform.config import JobConfig, flatten, resolve_path
from radisim.platform.data.pipeline import expected_rows, phase_counts, phase_dataset, train_dir
from radisim.platform.tracking import Tracker

log = logging.getLogger(__name__)

#: evaluate(checkpoint_dir, label) -> flat metrics, e.g. {"stage1/score": 0.9, ...}
Evaluator = Callable[[str, str], dict[str, float]]


@dataclass
class PhaseOutcome:
    index: int
    name: str
    run_id: str
    checkpoint: Any  # ray.train.Checkpoint
    train_metrics: dict[str, Any]
    eval_metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class CurriculumResult:
    run_id: str
    run_name: str
    tracking_uri: str
    phases: list[PhaseOutcome]
    #: (label, metrics) for the untrained model and each phase, in order.
    evaluations: list[tuple[str, dict[str, float]]]
    budget: dict[str, int]


def budget(cfg: JobConfig) -> dict[str, int]:
    """Optimizer steps and training samples of the whole curriculum: what equal-budget arms compare."""
    per_step = cfg.train.batch_size * cfg.train.grad_accum * cfg.train.num_workers
    steps = cfg.curriculum.total_steps
    return {"budget/optimizer_steps": steps, "budget/samples": steps * per_step, "budget/samples_per_step": per_step}


def save_init_checkpoint(cfg: JobConfig, dest: str):
    """The seeded starting weights, persisted to storage so every worker on every node can load them."""
    import torch

    from radisim.platform.models import load_clip, save_checkpoint

    torch.manual_seed(cfg.train.seed)
    bundle = load_clip(cfg.model.name, pretrained=cfg.model.pretrained, siglip=cfg.curriculum.uses_siglip)
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(bundle.model, cfg.model.name, tmp, extra={"phase": "init", "step": 0})
        return storage.upload_dir(tmp, dest), bundle.image_size


def phase_loop_config(cfg: JobConfig, index: int, init_checkpoint, tracking_uri: str, parent_id: str,
                      phase_run_id: str, step_offset: int) -> dict[str, Any]:
    phase = cfg.curriculum.phases[index]
    threads = cfg.train.torch_threads or max(1, round(cfg.train.cpus_per_worker))
    return {
        "phase": phase.model_dump(),
        "train": cfg.train.model_dump(),
        "model_name": cfg.model.name,
        "siglip": cfg.curriculum.uses_siglip,
        "init_checkpoint": init_checkpoint,
        "seed": cfg.train.seed + 1000 * index,
        "torch_threads": threads,
        "compile": cfg.train.compile,
        "shuffle_buffer": cfg.data.shuffle_buffer,
        "tracking_uri": tracking_uri,
        "parent_run_id": parent_id,
        "phase_run_id": phase_run_id,
        "step_offset": step_offset,
        # lr_across_phases=continue: this phase is the slice [step_offset, +steps) of one schedule
        "schedule": _schedule(cfg, index, step_offset),
    }


def _schedule(cfg: JobConfig, index: int, offset: int) -> dict[str, Any]:
    spec, phase = cfg.curriculum, cfg.curriculum.phases[index]
    if spec.lr_across_phases == "restart":
        return {"offset": 0, "total": phase.steps, "warmup": phase.warmup_steps, "kind": phase.schedule,
                "min_ratio": phase.min_lr_ratio}
    first = spec.phases[0]
    return {"offset": offset, "total": spec.total_steps, "warmup": first.warmup_steps, "kind": first.schedule,
            "min_ratio": first.min_lr_ratio}


def fit_phase(cfg: JobConfig, index: int, mix: dict[str, float], loop_config: dict, run_name: str, image_size: int):
    """One TorchTrainer.fit() for phase `index`; returns the Ray Train Result."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from radisim.platform.train.loop import train_phase

    phase = cfg.curriculum.phases[index]
    ds = phase_dataset(train_dir(resolve_path(cfg.data.root)), mix, image_size, cfg.model.name,
                       seed=cfg.train.seed + index, preprocess_cpus=cfg.data.preprocess_cpus)
    resources = {"CPU": cfg.train.cpus_per_worker, **({"GPU": 1} if cfg.train.use_gpu else {})}
    trainer = TorchTrainer(
        train_phase,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.train.num_workers, use_gpu=cfg.train.use_gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            # A stable name per phase: a retry of the same run resumes from this phase's checkpoints.
            name=f"{run_name}-p{index + 1}-{phase.name}",
            storage_path=resolve_path(cfg.train.storage_path),
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
        datasets={"train": ds},
    )
    return trainer.fit()


def run_curriculum(
    cfg: JobConfig,
    evaluate: Optional[Evaluator] = None,
    on_evaluation: Optional[Callable[[list[tuple[str, dict[str, float]]]], None]] = None,
    extra_tags: Optional[dict[str, str]] = None,
    parent_run_id: Optional[str] = None,
) -> CurriculumResult:
    """Train every phase of `cfg.curriculum` in order; evaluate after each if `evaluate` is given."""
    cfg = cfg.model_copy(update={"curriculum": cfg.curriculum.effective()})  # apply the ordering once
    spec = cfg.curriculum
    tracker = Tracker(cfg.tracking.experiment, cfg.tracking.tracking_uri)
    run_name = cfg.tracking.run_name or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    tags = {"curriculum": spec.name, "ordering": spec.ordering, "seed": str(cfg.train.seed),
            "model": cfg.model.name, **(extra_tags or {})}
    parent = tracker.start_run(run_name, parent_id=parent_run_id, tags=tags)
    costs = budget(cfg)
    try:
        tracker.log_params(parent, {**flatten(cfg.model_dump(mode="json")), **costs})
        tracker.log_metrics(parent, costs)
        base = storage.join(resolve_path(cfg.train.storage_path), run_name)
        checkpoint, image_size = save_init_checkpoint(cfg, storage.join(base, "init"))
        evaluations: list[tuple[str, dict[str, float]]] = []

        def _evaluate(ckpt, label: str, run_ids: list[str], step: int) -> dict[str, float]:
            if evaluate is None:
                return {}
            with ckpt.as_directory() as local:
                metrics = evaluate(local, label)
            for rid in run_ids:
                tracker.log_metrics(rid, metrics, step=step)
            evaluations.append((label, metrics))
            if on_evaluation:
                on_evaluation(evaluations)
            return metrics

        if cfg.eval.untrained_baseline:
            _evaluate(checkpoint, "untrained", [parent], step=0)
        outcomes: list[PhaseOutcome] = []
        counts = phase_counts(train_dir(resolve_path(cfg.data.root)))
        offset = 0
        for i, phase in enumerate(spec.phases):
            t0 = time.perf_counter()
            child = tracker.start_run(f"p{i + 1}-{phase.name}", parent_id=parent,
                                      tags={**tags, "phase": phase.name, "phase_index": str(i + 1)})
            mix = spec.mix(i, counts)
            tracker.log_params(child, {**flatten(phase.model_dump(mode="json"), "phase."),
                                       **{f"mix.{tag}": round(p, 4) for tag, p in mix.items()},
                                       "phase.expected_rows": expected_rows(counts, mix)})
            loop_cfg = phase_loop_config(cfg, i, checkpoint, tracker.uri, parent, child, offset)
            try:
                result = fit_phase(cfg, i, mix, loop_cfg, run_name, image_size)
            except Exception:
                tracker.end(child, "FAILED")
                raise
            checkpoint = result.checkpoint
            offset += phase.steps
            outcome = PhaseOutcome(i + 1, phase.name, child, checkpoint, dict(result.metrics or {}))
            if cfg.eval.after_each_phase or i == len(spec.phases) - 1:
                outcome.eval_metrics = _evaluate(checkpoint, f"p{i + 1}-{phase.name}", [child, parent], step=i + 1)
            outcome.seconds = time.perf_counter() - t0
            tracker.log_metrics(child, {"time/phase_seconds": outcome.seconds})
            tracker.end(child)
            outcomes.append(outcome)
        tracker.end(parent)
    except BaseException:
        tracker.end(parent, "FAILED")
        raise
    return CurriculumResult(parent, run_name, tracker.uri, outcomes, evaluations, costs)
