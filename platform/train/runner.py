"""The driver side of a curriculum run: one Ray Train `TorchTrainer.fit()` per phase, each phase
starting from the previous phase's checkpoint, evaluation after each phase, an MLflow run tree
(parent run for the curriculum, one child run per phase)."""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from radisim.platform import storage
from radisim.platform.config import JobConfig, flatten, resolve_path
from radisim.platform.data.pipeline import expected_rows, phase_counts, phase_dataset, train_dir
from radisim.platform.tracking import Tracker
from radisim.platform.train.plan import resolve_epochs

log = logging.getLogger(__name__)

class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; retrying would reproduce it, so the run stops."""


#: evaluate(checkpoint_dir, label) -> flat metrics, e.g. {"stage1/score": 0.9, ...}; called with label
#: UNTRAINED on the initial weights (`eval.untrained_baseline`) before any phase, resumed runs included.
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
    label: str = ""


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
    """Optimizer steps and training samples of the whole curriculum: what equal-budget arms compare.
    `budget/contrastive_batch`: the samples one contrastive problem spans; with open_clip's accumulation
    (train/accumulate.py) and gather-with-grad, every sample of an optimizer step."""
    per_step = cfg.train.batch_size * cfg.train.grad_accum * cfg.train.num_workers
    steps = cfg.curriculum.total_steps
    return {"budget/optimizer_steps": steps, "budget/samples": steps * per_step, "budget/samples_per_step": per_step,
            "budget/contrastive_batch": per_step}


def save_init_checkpoint(cfg: JobConfig, dest: str):
    """The seeded starting weights, persisted to storage so every worker on every node can load them."""
    import torch

    from radisim.platform.models import load_clip, save_checkpoint

    torch.manual_seed(cfg.train.seed)
    bundle = load_clip(cfg.model.name, pretrained=cfg.model.pretrained, siglip=cfg.curriculum.uses_siglip)
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(bundle.model, cfg.model.name, tmp, extra={"phase": "init", "step": 0},
                        config=bundle.config, tokenizer=bundle.tokenizer)
        return storage.upload_dir(tmp, dest), bundle.image_size


def worker_threads(cfg: JobConfig, concurrent_trials: int = 1) -> int:
    """Torch threads per Train worker: `train.torch_threads` if set, else the CPUs Ray reserves for it.
    On the embedded local Ray the workers (of `concurrent_trials` Tune trials) share the host's cores
    instead: the reservation there is a scheduling token, and Ray Data's decode and tokenise work is light
    beside the model's. Measured on 2 cores, 40 grading steps: 62 samples/s on 1 thread, 85 on 2, data
    wait 0.1% and 0.4%."""
    t = cfg.train
    if t.torch_threads:
        return t.torch_threads
    reserved = max(1, math.ceil(t.cpus_per_worker))
    if cfg.ray.address or os.environ.get("RAY_ADDRESS"):
        return reserved
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(reserved, cores // (t.num_workers * max(1, concurrent_trials)))


def phase_loop_config(cfg: JobConfig, index: int, init_checkpoint, tracking_uri: str, parent_id: str,
                      phase_run_id: str, step_offset: int) -> dict[str, Any]:
    phase = cfg.curriculum.phases[index]
    threads = worker_threads(cfg)
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

    from radisim.platform.train.loop import train_phase

    phase = cfg.curriculum.phases[index]
    t = cfg.train
    ds = phase_dataset(train_dir(resolve_path(cfg.data.root)), mix, image_size, cfg.model.name, seed=t.seed + index,
                       preprocess_cpus=cfg.data.preprocess_cpus,
                       samples=phase.steps * t.batch_size * t.grad_accum * t.num_workers,
                       hard_negatives=phase.hard_negatives)
    resources = {"CPU": cfg.train.cpus_per_worker, **({"GPU": 1} if cfg.train.use_gpu else {})}
    trainer = trainer_class()(
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
            logging_config=ray.train.LoggingConfig(log_level=cfg.train.ray_log_level),
        ),
        datasets={"train": ds},
        dataset_config=data_config(cfg.train.num_workers),
    )
    return trainer.fit()


def data_config(num_workers: int):
    """How the phase dataset reaches the Train workers.

    Several workers: Ray Train's equal `streaming_split`, one shard each. One worker: no split, the
    worker runs the stream itself (`Dataset.iterator()`), the same batches in the same order without
    a SplitCoordinator actor per fit. Measured on 2 cores, a run of two 10-step phase fits spent 28.8
    and 29.2 s outside its training steps against 36.6 and 31.3 s with the split; a 60-step
    localization phase trained at 100-124 samples/s against 94-103, with identical losses.

    The ingest options are Ray Train's defaults (`DataConfig.default_ingest_options`: the driver's
    DataContext, which carries `preserve_order`), built here in the driver. Left to Ray 2.60, every
    fit's DatasetManager builds them itself and, by copying the deprecated `exclude_resources` over,
    prints a RayDeprecationWarning into the job's log that nothing the user set can cause or silence."""
    import ray.train
    from ray.util.annotations import RayDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RayDeprecationWarning)
        options = ray.train.DataConfig.default_ingest_options()
    return ray.train.DataConfig(datasets_to_split="all" if num_workers > 1 else [], execution_options=options)


def trainer_class():
    """Ray Train's TorchTrainer; on a local Ray that this process owns, less its placement-group cleaner.

    The cleaner is a detached actor per fit that asks the State API every second whether the fit's
    controller is alive, to free the workers' placement group should the controller die; a local Ray
    dies with this process anyway. On 2 cores it cost a fit 5-12 s of wall time and ~7% of the training
    throughput (grading, 50 steps, twice each: 71 and 78 s per fit at 88-98 samples/s without it, 83 and
    83 s at 81-95 with it; 2026-11-30): one more process start per fit, and its polling, which keeps the
    dashboard and the GCS busy too. Clusters and Tune trials (which Tune may stop at any moment) keep it."""
    from ray.train.torch import TorchTrainer

    from radisim.platform.raysession import owns_local_ray

    if not owns_local_ray():
        return TorchTrainer
    try:  # Ray-internal names: should they move, the fit keeps its cleaner
        from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
    except ImportError:
        return TorchTrainer

    class LocalTorchTrainer(TorchTrainer):
        def _create_default_callbacks(self):
            return [cb for cb in super()._create_default_callbacks()
                    if not isinstance(cb, PlacementGroupCleanerCallback)]

    return LocalTorchTrainer


#: What a curriculum run has finished (`RunState`), next to its checkpoints.
RUN_STATE_FILE = "radisim_run.json"
#: The label of the initial weights' evaluation.
UNTRAINED = "untrained"


def phase_label(index: int, name: str) -> str:
    """How a phase's evaluation and MLflow child run are named: p<1-based index>-<name>."""
    return f"p{index + 1}-{name}"


def phase_number(label: str) -> int:
    """Inverse of `phase_label` (0 for the untrained model)."""
    head = label.split("-", 1)[0]
    return int(head[1:]) if head.startswith("p") and head[1:].isdigit() else 0


def config_hash(cfg: JobConfig) -> str:
    """Identifies what a run trains: the whole resolved config except the run's name."""
    tree = cfg.model_dump(mode="json")
    tree["tracking"].pop("run_name", None)
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:10]


def default_run_name(cfg: JobConfig) -> str:
    """Deterministic, so re-running the same command resumes (or shows) the same run."""
    return f"{cfg.curriculum.name}-{config_hash(cfg)}"


@dataclass
class RunState:
    """What a curriculum run has finished, kept next to its checkpoints (<storage>/<run>/radisim_run.json)
    so that re-running the same command resumes at the phase (and Ray Train at the step) it stopped."""

    path: str
    config_hash: str
    parent_run_id: Optional[str] = None
    init_checkpoint: Optional[str] = None
    untrained: Optional[dict[str, float]] = None
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    finished: bool = False

    @classmethod
    def load_or_new(cls, path: str, digest: str) -> "RunState":
        data = storage.read_json(path)
        if data is None:
            return cls(path, digest)
        if data["config_hash"] != digest:
            raise ValueError(f"{path} belongs to a run with another configuration; choose a new tracking.run_name")
        return cls(path=path, **{k: v for k, v in data.items() if k != "path"})

    def save(self) -> None:
        storage.write_json(self.path, {k: v for k, v in self.__dict__.items() if k != "path"})


def run_curriculum(
    cfg: JobConfig,
    evaluate: Optional[Evaluator] = None,
    on_evaluation: Optional[Callable[[list[tuple[str, dict[str, float]]]], None]] = None,
    extra_tags: Optional[dict[str, str]] = None,
    parent_run_id: Optional[str] = None,
    overlap_eval: Optional[bool] = None,
) -> CurriculumResult:
    """Train every phase of `cfg.curriculum` in order; evaluate after each if `evaluate` is given.

    `overlap_eval` (None: `eval.overlap`): evaluate each phase's weights while the next phase's fit
    starts. `evaluate` and `on_evaluation` are called from this thread either way, in phase order.

    Idempotent: a run is named by `tracking.run_name` (default: derived from the config); running it
    again skips finished phases, resumes an interrupted one from its latest checkpoint, and keeps
    logging into the same MLflow run tree."""
    counts = phase_counts(train_dir(resolve_path(cfg.data.root)))
    cfg = resolve_epochs(cfg, counts)  # epochs -> steps from the manifest, before any fit starts
    cfg = cfg.model_copy(update={"curriculum": cfg.curriculum.effective()})  # apply the ordering once
    spec = cfg.curriculum
    for p in spec.phases:
        if p.epochs:
            print(f"phase {p.name}: {p.epochs:g} epochs of its rows = {p.steps} steps", flush=True)
    tracker = Tracker(cfg.tracking.experiment, cfg.tracking.tracking_uri)
    run_name = cfg.tracking.run_name or default_run_name(cfg)
    store = resolve_path(cfg.train.storage_path)
    base = storage.join(store, run_name)
    state = RunState.load_or_new(storage.join(base, RUN_STATE_FILE), config_hash(cfg))
    tags = {"curriculum": spec.name, "ordering": spec.ordering, "pacing": spec.pacing.name, "seed": str(cfg.train.seed),
            "model": cfg.model.name, "radisim.run_name": run_name, **(extra_tags or {})}
    costs = budget(cfg)
    already_finished = state.finished
    if state.parent_run_id:
        parent = state.parent_run_id
        if not already_finished:  # a finished run is shown, not touched (its end time stays)
            tracker.client.update_run(parent, "RUNNING")
        done = sum(1 for p in state.phases.values() if p.get("evaluated") or p.get("trained"))
        print(f"resuming run {run_name}: {done}/{len(spec.phases)} phases already done" +
              (" (the run is complete; nothing is retrained)" if state.finished else ""), flush=True)
    else:
        parent = tracker.start_run(run_name, parent_id=parent_run_id, tags=tags)
        # The sweep's own settings belong to the sweep run; here they would only crowd MLflow's compare view.
        tracker.log_params(parent, {**flatten(cfg.model_dump(mode="json", exclude={"ablate"})), **costs})
        tracker.log_metrics(parent, costs)
        state.parent_run_id = parent
        state.save()
    evaluations: list[tuple[str, dict[str, float]]] = []

    def _evaluate(ckpt, label: str, run_ids: list[str], step: int) -> dict[str, float]:
        with ckpt.as_directory() as local:
            metrics = evaluate(local, label)
        for rid in run_ids:
            tracker.log_metrics(rid, metrics, step=step)
        return metrics

    def _record(label: str, metrics: Optional[dict[str, float]]) -> None:
        if metrics:
            evaluations.append((label, metrics))
            if on_evaluation:
                on_evaluation(evaluations)

    # `later`: the evaluation of the weights just trained, run while the next phase's fit starts when
    # `overlap` is on (see `_run_phase`), else before it; everything it touches stays in this thread.
    later: Optional[Callable[[], None]] = None
    overlap = cfg.eval.overlap if overlap_eval is None else overlap_eval
    try:
        if state.init_checkpoint:
            checkpoint, image_size = storage.checkpoint_at(store, state.init_checkpoint), None
        else:
            checkpoint, image_size = save_init_checkpoint(cfg, storage.join(base, "init"))
            state.init_checkpoint = checkpoint.path
            state.save()
        if evaluate and cfg.eval.untrained_baseline and state.untrained is None:
            def later(ckpt=checkpoint) -> None:
                state.untrained = _evaluate(ckpt, UNTRAINED, [parent], step=0)
                state.save()
                _record(UNTRAINED, state.untrained)
        else:
            if evaluate and cfg.eval.untrained_baseline and not state.finished:
                with checkpoint.as_directory() as local:  # resumed: later phases' gains are measured against it
                    evaluate(local, UNTRAINED)
            _record(UNTRAINED, state.untrained)
        outcomes: list[PhaseOutcome] = []
        offset = 0
        for i, phase in enumerate(spec.phases):
            outcome = _run_phase(cfg, i, state, tracker, tags, parent, checkpoint, counts, offset, run_name, image_size,
                                 meanwhile=later, overlap=overlap)
            checkpoint = outcome.checkpoint
            offset += phase.steps
            wants_eval = bool(evaluate) and (cfg.eval.after_each_phase or i == len(spec.phases) - 1)

            def later(outcome=outcome, rec=state.phases[str(i)], wants_eval=wants_eval) -> None:
                if wants_eval and not rec.get("evaluated"):
                    rec["eval"] = _evaluate(outcome.checkpoint, outcome.label, [outcome.run_id, parent],
                                            step=outcome.index)
                    rec["evaluated"] = True
                    state.save()
                outcome.eval_metrics = rec.get("eval") or {}
                _record(outcome.label, outcome.eval_metrics)
                if not already_finished:
                    tracker.end(outcome.run_id)
            outcomes.append(outcome)
        later()
        if not already_finished and cfg.tracking.register_model:
            register_final_model(cfg, tracker, parent, outcomes[-1], run_name)
        state.finished = True
        state.save()
        if not already_finished:
            tracker.end(parent)
    except BaseException:
        if not already_finished:
            tracker.end(parent, "FAILED")
        raise
    return CurriculumResult(parent, run_name, tracker.uri, outcomes, evaluations, costs)


def register_final_model(cfg: JobConfig, tracker: Tracker, parent: str, last: PhaseOutcome, run_name: str) -> None:
    """The curriculum's final checkpoint as a new version of the registered model of its curriculum,
    the last evaluation's stage scores as its tags. A registry that refuses (e.g. a server that takes no
    local paths as sources) costs a warning, not the finished run."""
    from mlflow.exceptions import MlflowException

    name = cfg.tracking.registered_model or f"radisim-{cfg.curriculum.name}"
    scores = {k: v for k, v in last.eval_metrics.items() if k.startswith("stage") and k.endswith("/score")}
    try:
        version = tracker.register_model(
            name, last.checkpoint.path, parent, scores, description=cfg.curriculum.description,
            tags={"radisim.run_name": run_name, "phase": last.name, "model": cfg.model.name, "format": "open_clip local-dir"})
    except MlflowException as err:
        log.warning("model registry: could not register %s (%s)", name, err)
        return
    tracker.client.set_tag(parent, "radisim.registered_model", f"{name}/{version}")
    print(f"registered model {name} version {version} ({last.checkpoint.path})", flush=True)


def _run_phase(cfg: JobConfig, i: int, state: RunState, tracker: Tracker, tags: dict, parent: str, checkpoint,
               counts: dict[str, int], offset: int, run_name: str, image_size: Optional[int],
               meanwhile: Optional[Callable[[], None]] = None, overlap: bool = False) -> PhaseOutcome:
    """Fit phase `i` unless the run state says it is trained; returns its outcome either way.

    `meanwhile` (the previous evaluation) runs in this thread before the fit, or with `overlap` while
    the fit starts in a helper thread: Ray Train spends the first 10-20 s of a fit starting processes
    that each import torch on one core, and the evaluation takes 5-10 s of the other."""
    spec, store = cfg.curriculum, resolve_path(cfg.train.storage_path)
    phase = spec.phases[i]
    label = phase_label(i, phase.name)
    rec = state.phases.setdefault(str(i), {})
    if rec.get("trained"):
        if meanwhile:
            meanwhile()
        return PhaseOutcome(i + 1, phase.name, rec["child_run_id"], storage.checkpoint_at(store, rec["checkpoint"]),
                            rec.get("train_metrics", {}), label=label)
    mix = spec.mix(i, counts)
    if rec.get("child_run_id"):
        child = rec["child_run_id"]
        tracker.client.update_run(child, "RUNNING")
    else:
        child = tracker.start_run(label, parent_id=parent, tags={**tags, "phase": phase.name, "phase_index": str(i + 1)})
        tracker.log_params(child, {**flatten(phase.model_dump(mode="json"), "phase."),
                                   **{f"mix.{tag}": round(p, 4) for tag, p in mix.items()},
                                   "phase.expected_rows": expected_rows(counts, mix),
                                   "worker.torch_threads": worker_threads(cfg)})
        rec["child_run_id"] = child
        state.save()
    if image_size is None:  # resumed: the init checkpoint was not built in this process
        from radisim.platform.models import load_clip

        with checkpoint.as_directory() as local:
            image_size = load_clip(cfg.model.name, checkpoint=local, siglip=spec.uses_siglip).image_size
    if meanwhile and not overlap:
        meanwhile()
    t0 = time.perf_counter()
    loop_cfg = phase_loop_config(cfg, i, checkpoint, tracker.uri, parent, child, offset)
    loop_cfg["status_path"] = storage.join(store, run_name, f"{label}.status.json")
    storage.remove(loop_cfg["status_path"])
    try:
        result = _fit_with(meanwhile if overlap else None, fit_phase, cfg, i, mix, loop_cfg, run_name, image_size)
    except Exception:
        tracker.end(child, "FAILED")
        raise
    seconds = time.perf_counter() - t0
    status = storage.read_json(loop_cfg["status_path"]) or {}
    if status.get("nonfinite_step"):
        tracker.end(child, "FAILED")
        last = result.checkpoint.path if result.checkpoint else state.init_checkpoint
        raise NonFiniteLossError(f"phase {phase.name!r} (phase {i + 1}) stopped: non-finite loss at step "
                                 f"{status['nonfinite_step']}; the last good checkpoint is {last}")
    tracker.log_metrics(child, {"time/phase_seconds": seconds})
    metrics = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}
    rec.update(trained=True, checkpoint=result.checkpoint.path, train_metrics=metrics)
    state.save()
    return PhaseOutcome(i + 1, phase.name, child, result.checkpoint, metrics, seconds=seconds, label=label)


def _fit_with(meanwhile: Optional[Callable[[], None]], fit: Callable[..., Any], *args) -> Any:
    """`fit(*args)`, with `meanwhile()` run in this thread while the fit runs in a helper thread (Ray
    Train runs fits outside the main thread under Tune too; there it leaves out its own Ctrl-C handler,
    and a Ctrl-C reaches this thread, whose job then shuts Ray down). If `meanwhile` fails, the fit is
    waited for, so that no fit outlives the call, and its error wins over the evaluation's."""
    if meanwhile is None:
        return fit(*args)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="radisim-fit")
    try:
        future = pool.submit(fit, *args)
        try:
            meanwhile()
        except Exception:
            future.result()
            raise
        return future.result()
    finally:
        pool.shutdown(wait=False)
