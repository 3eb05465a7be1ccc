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
                       hard_negatives=phase.hard_negatives, global_shuffle=cfg.data.global_shuffle)
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
    run = _CurriculumRun.open(cfg, evaluate, on_evaluation, extra_tags, parent_run_id)
    overlap = run.cfg.eval.overlap if overlap_eval is None else overlap_eval
    return run.execute(_DeferredEvaluation(overlap))


class _DeferredEvaluation:
    """The one place that decides when the evaluation of the weights last trained runs.

    A phase's evaluation is deferred (`defer`) until the next phase is set up. With `overlap` it then
    runs in this thread while that phase's fit runs in a helper thread (`during_fit`): Ray Train spends
    the first 10-20 s of a fit starting processes that each import torch on one core, and the evaluation
    takes 5-10 s of the other. Without `overlap` it runs just before the fit (`before_fit`). A phase that
    is already trained, and the end of the curriculum, run it at once (`run`)."""

    def __init__(self, overlap: bool):
        self.overlap = overlap
        self._work: Optional[Callable[[], None]] = None

    def defer(self, work: Optional[Callable[[], None]]) -> None:
        self._work = work

    def run(self) -> None:
        work, self._work = self._work, None
        if work:
            work()

    def before_fit(self) -> None:
        if not self.overlap:
            self.run()

    def during_fit(self, fit: Callable[..., Any], *args) -> Any:
        work, self._work = self._work, None
        return _fit_with(work, fit, *args)


@dataclass
class _PhaseFit:
    """A phase about to be fitted: its child run is open, its state record is `rec`."""
    index: int
    label: str
    child: str
    rec: dict[str, Any]
    mix: dict[str, float]
    image_size: int


@dataclass
class _CurriculumRun:
    """One curriculum run on the driver: its resolved config, run state and MLflow run tree."""
    cfg: JobConfig
    counts: dict[str, int]
    tracker: Tracker
    run_name: str
    store: str
    state: RunState
    tags: dict[str, str]
    costs: dict[str, int]
    parent: str
    evaluate: Optional[Evaluator]
    on_evaluation: Optional[Callable[[list[tuple[str, dict[str, float]]]], None]]
    #: a finished run is shown, not touched: no run of its tree is reopened or ended
    already_finished: bool
    evaluations: list[tuple[str, dict[str, float]]] = field(default_factory=list)

    @classmethod
    def open(cls, cfg: JobConfig, evaluate, on_evaluation, extra_tags, parent_run_id) -> "_CurriculumRun":
        """Resolve the config (epochs -> steps, the ordering), load the run state, open or reopen the parent run."""
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
        state = RunState.load_or_new(storage.join(store, run_name, RUN_STATE_FILE), config_hash(cfg))
        tags = {"curriculum": spec.name, "ordering": spec.ordering, "pacing": spec.pacing.name,
                "seed": str(cfg.train.seed), "model": cfg.model.name, "radisim.run_name": run_name,
                **(extra_tags or {})}
        run = cls(cfg, counts, tracker, run_name, store, state, tags, budget(cfg), state.parent_run_id or "",
                  evaluate, on_evaluation, already_finished=state.finished)
        if state.parent_run_id:
            run._reopen_parent()
        else:
            run._start_parent(parent_run_id)
        return run

    def _reopen_parent(self) -> None:
        state, spec = self.state, self.cfg.curriculum
        if not self.already_finished:  # a finished run is shown, not touched (its end time stays)
            self.tracker.client.update_run(self.parent, "RUNNING")
        done = sum(1 for p in state.phases.values() if p.get("evaluated") or p.get("trained"))
        print(f"resuming run {self.run_name}: {done}/{len(spec.phases)} phases already done" +
              (" (the run is complete; nothing is retrained)" if state.finished else ""), flush=True)

    def _start_parent(self, parent_run_id: Optional[str]) -> None:
        self.parent = self.tracker.start_run(self.run_name, parent_id=parent_run_id, tags=self.tags)
        # The sweep's own settings belong to the sweep run; here they would only crowd MLflow's compare view.
        self.tracker.log_params(self.parent, {**flatten(self.cfg.model_dump(mode="json", exclude={"ablate"})),
                                              **self.costs})
        self.tracker.log_metrics(self.parent, self.costs)
        self.state.parent_run_id = self.parent
        self.state.save()

    def execute(self, pending: _DeferredEvaluation) -> CurriculumResult:
        """Every phase, then the final evaluation, the model registration and the parent run's end; the
        parent run ends FAILED on any error (unless the run had already finished)."""
        try:
            outcomes = self._phases(pending)
            self._finish(outcomes[-1])
        except BaseException:
            if not self.already_finished:
                self.tracker.end(self.parent, "FAILED")
            raise
        return CurriculumResult(self.parent, self.run_name, self.tracker.uri, outcomes, self.evaluations, self.costs)

    def _phases(self, pending: _DeferredEvaluation) -> list[PhaseOutcome]:
        """The sequence: the untrained model, then each phase fitted from the previous checkpoint, each
        one's evaluation deferred to `pending` (which overlaps it with the next fit, or not)."""
        checkpoint, image_size = self._init_checkpoint()
        pending.defer(self._untrained_baseline(checkpoint))
        outcomes: list[PhaseOutcome] = []
        offset = 0
        for i, phase in enumerate(self.cfg.curriculum.phases):
            outcome = self._phase(i, checkpoint, offset, image_size, pending)
            pending.defer(self._phase_evaluation(outcome, self.state.phases[str(i)]))
            outcomes.append(outcome)
            checkpoint, offset = outcome.checkpoint, offset + phase.steps
        pending.run()
        return outcomes

    def _init_checkpoint(self):
        """The seeded starting weights and their image size (None when loaded from a resumed run's state)."""
        if self.state.init_checkpoint:
            return storage.checkpoint_at(self.store, self.state.init_checkpoint), None
        checkpoint, image_size = save_init_checkpoint(self.cfg, storage.join(self.store, self.run_name, "init"))
        self.state.init_checkpoint = checkpoint.path
        self.state.save()
        return checkpoint, image_size

    def _untrained_baseline(self, checkpoint) -> Optional[Callable[[], None]]:
        """The untrained model's evaluation to defer, if it is still to be measured; a resumed run's is
        recorded from its state now (and re-run unrecorded: later phases' gains are measured against it)."""
        wanted = bool(self.evaluate) and self.cfg.eval.untrained_baseline
        if wanted and self.state.untrained is None:
            def evaluation() -> None:
                self.state.untrained = self._evaluate(checkpoint, UNTRAINED, [self.parent], step=0)
                self.state.save()
                self._record(UNTRAINED, self.state.untrained)
            return evaluation
        if wanted and not self.state.finished:
            with checkpoint.as_directory() as local:
                self.evaluate(local, UNTRAINED)
        self._record(UNTRAINED, self.state.untrained)
        return None

    def _phase_evaluation(self, outcome: PhaseOutcome, rec: dict[str, Any]) -> Callable[[], None]:
        """The evaluation of a phase's weights (after each phase, or the last only), then its child run's end."""
        last = outcome.index == len(self.cfg.curriculum.phases)
        wants_eval = bool(self.evaluate) and (self.cfg.eval.after_each_phase or last)

        def evaluation() -> None:
            if wants_eval and not rec.get("evaluated"):
                rec["eval"] = self._evaluate(outcome.checkpoint, outcome.label, [outcome.run_id, self.parent],
                                             step=outcome.index)
                rec["evaluated"] = True
                self.state.save()
            outcome.eval_metrics = rec.get("eval") or {}
            self._record(outcome.label, outcome.eval_metrics)
            if not self.already_finished:
                self.tracker.end(outcome.run_id)
        return evaluation

    def _evaluate(self, ckpt, label: str, run_ids: list[str], step: int) -> dict[str, float]:
        with ckpt.as_directory() as local:
            metrics = self.evaluate(local, label)
        for rid in run_ids:
            self.tracker.log_metrics(rid, metrics, step=step)
        return metrics

    def _record(self, label: str, metrics: Optional[dict[str, float]]) -> None:
        if metrics:
            self.evaluations.append((label, metrics))
            if self.on_evaluation:
                self.on_evaluation(self.evaluations)

    def _finish(self, last: PhaseOutcome) -> None:
        if not self.already_finished and self.cfg.tracking.register_model:
            register_final_model(self.cfg, self.tracker, self.parent, last, self.run_name)
        self.state.finished = True
        self.state.save()
        if not self.already_finished:
            self.tracker.end(self.parent)

    def _phase(self, i: int, checkpoint, offset: int, image_size: Optional[int],
               pending: _DeferredEvaluation) -> PhaseOutcome:
        """Fit phase `i` unless the run state says it is trained; returns its outcome either way."""
        phase = self.cfg.curriculum.phases[i]
        label = phase_label(i, phase.name)
        rec = self.state.phases.setdefault(str(i), {})
        if rec.get("trained"):
            pending.run()
            return PhaseOutcome(i + 1, phase.name, rec["child_run_id"],
                                storage.checkpoint_at(self.store, rec["checkpoint"]),
                                rec.get("train_metrics", {}), label=label)
        mix = self.cfg.curriculum.mix(i, self.counts)
        child = self._open_child_run(i, label, rec, mix)
        if image_size is None:
            image_size = self._image_size(checkpoint)
        plan = _PhaseFit(i, label, child, rec, mix, image_size)
        pending.before_fit()
        return self._close_phase(plan, *self._fit(plan, checkpoint, offset, pending))

    def _open_child_run(self, i: int, label: str, rec: dict[str, Any], mix: dict[str, float]) -> str:
        """The phase's MLflow child run: reopened if a previous attempt started it, else started with its params."""
        if rec.get("child_run_id"):
            self.tracker.client.update_run(rec["child_run_id"], "RUNNING")
            return rec["child_run_id"]
        phase = self.cfg.curriculum.phases[i]
        child = self.tracker.start_run(label, parent_id=self.parent,
                                       tags={**self.tags, "phase": phase.name, "phase_index": str(i + 1)})
        self.tracker.log_params(child, {**flatten(phase.model_dump(mode="json"), "phase."),
                                        **{f"mix.{tag}": round(p, 4) for tag, p in mix.items()},
                                        "phase.expected_rows": expected_rows(self.counts, mix),
                                        "worker.torch_threads": worker_threads(self.cfg)})
        rec["child_run_id"] = child
        self.state.save()
        return child

    def _image_size(self, checkpoint) -> int:
        """Resumed: the init checkpoint was not built in this process, so its model tells the image size."""
        from radisim.platform.models import load_clip

        with checkpoint.as_directory() as local:
            return load_clip(self.cfg.model.name, checkpoint=local, siglip=self.cfg.curriculum.uses_siglip).image_size

    def _fit(self, plan: _PhaseFit, checkpoint, offset: int, pending: _DeferredEvaluation):
        """The phase's fit (with the deferred evaluation alongside if it is still pending), its seconds
        and the status its workers left; the child run ends FAILED if either fails."""
        t0 = time.perf_counter()
        loop_cfg = phase_loop_config(self.cfg, plan.index, checkpoint, self.tracker.uri, self.parent, plan.child,
                                     offset)
        loop_cfg["status_path"] = storage.join(self.store, self.run_name, f"{plan.label}.status.json")
        storage.remove(loop_cfg["status_path"])
        try:
            result = pending.during_fit(fit_phase, self.cfg, plan.index, plan.mix, loop_cfg, self.run_name,
                                        plan.image_size)
        except Exception:
            self.tracker.end(plan.child, "FAILED")
            raise
        seconds = time.perf_counter() - t0
        return result, seconds, storage.read_json(loop_cfg["status_path"]) or {}

    def _close_phase(self, plan: _PhaseFit, result, seconds: float, status: dict) -> PhaseOutcome:
        """Stop on a non-finite loss, else log the phase's time and record it trained."""
        phase = self.cfg.curriculum.phases[plan.index]
        if status.get("nonfinite_step"):
            self.tracker.end(plan.child, "FAILED")
            last = result.checkpoint.path if result.checkpoint else self.state.init_checkpoint
            raise NonFiniteLossError(f"phase {phase.name!r} (phase {plan.index + 1}) stopped: non-finite loss at "
                                     f"step {status['nonfinite_step']}; the last good checkpoint is {last}")
        self.tracker.log_metrics(plan.child, {"time/phase_seconds": seconds})
        metrics = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}
        plan.rec.update(trained=True, checkpoint=result.checkpoint.path, train_metrics=metrics)
        self.state.save()
        return PhaseOutcome(plan.index + 1, phase.name, plan.child, result.checkpoint, metrics, seconds=seconds,
                            label=plan.label)


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
