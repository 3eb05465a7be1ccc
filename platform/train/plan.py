"""What a train job will do, resolved before anything starts: phase budgets in steps (epochs turned into
steps from the manifest's row counts), the LR schedule, the contrastive batch, the workers and GPUs.

`build_plan(cfg, counts)` returns a `TrainPlan` (data; `radisim train --dry-run` prints it with
`format_plan`, and others may add sections to it, e.g. sizing); `resolve_epochs(cfg, counts)` gives the
JobConfig whose phases all have `steps`, which the runner trains. Pure: no Ray, no MLflow, no model.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from radisim.platform.config import JobConfig
from radisim.platform.data.pipeline import expected_rows


def samples_per_step(cfg: JobConfig) -> int:
    """Samples of one optimizer step: one contrastive problem (accumulation and gather span them all)."""
    t = cfg.train
    return t.batch_size * t.grad_accum * t.num_workers


def steps_for_epochs(epochs: float, rows: int, per_step: int) -> int:
    """Full optimizer steps in `epochs` passes over `rows` (a step's tail is dropped, as the loop does)."""
    return max(1, math.floor(epochs * rows / per_step))


def resolve_epochs(cfg: JobConfig, counts: dict[str, int]) -> JobConfig:
    """`cfg` with every phase's `steps` set: phases that give `epochs` get them from their own rows
    (pacing and replay included) in the phases' written order, before any ordering rearranges them, so
    that every ordering of an ablation keeps the per-position budget. Fails naming the phase when a
    phase has no rows or its warm-up outlasts its schedule."""
    spec, per_step = cfg.curriculum, samples_per_step(cfg)
    phases = []
    for i, phase in enumerate(spec.phases):
        if phase.steps is None:
            rows = expected_rows(counts, spec.mix(i, counts))
            if rows == 0:
                raise ValueError(f"curriculum.phases.{i} ({phase.name}): epochs given but the manifest has no rows "
                                 f"tagged {phase.data}")
            phase = phase.model_copy(update={"steps": steps_for_epochs(phase.epochs, rows, per_step)})
        phases.append(phase)
    spec = spec.model_copy(update={"phases": phases})
    _check_warmup(spec)
    return cfg.model_copy(update={"curriculum": spec})


def _check_warmup(spec) -> None:
    if spec.lr_across_phases == "continue":
        total = sum(p.steps for p in spec.phases)
        if spec.phases[0].warmup_steps > total:
            raise ValueError(f"curriculum.phases.0.warmup_steps ({spec.phases[0].warmup_steps}) exceeds the "
                             f"curriculum's {total} steps")
        return
    for i, p in enumerate(spec.phases):
        if p.warmup_steps > p.steps:
            raise ValueError(f"curriculum.phases.{i} ({p.name}): warmup_steps ({p.warmup_steps}) exceeds its "
                             f"{p.steps} steps (lr_across_phases=restart warms up every phase)")


@dataclass
class PhasePlan:
    index: int
    name: str
    data: list[str]
    rows: int               # rows of the phase's stream (pacing + replay), from the manifest
    steps: int
    epochs: float           # passes over `rows` the steps amount to
    epochs_given: Optional[float]
    loss: str
    lr: float
    warmup_steps: int       # of this phase's slice of the schedule
    schedule: str
    lr_start: float         # LR at the phase's first and last step (after warm-up/decay)
    lr_end: float
    freeze: list[str]
    hard_negatives: int


@dataclass
class TrainPlan:
    curriculum: str
    ordering: str
    model: str
    pretrained: Optional[str]
    workers: int
    use_gpu: bool
    gpus: int
    cpus_per_worker: float
    batch_size: int
    grad_accum: int
    contrastive_batch: int
    precision: str
    lr_across_phases: str
    optimizer: dict[str, Any]
    phases: list[PhasePlan]
    total_steps: int
    total_samples: int
    #: Sections others add (e.g. sizing): title -> lines; printed after the phases.
    sections: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_plan(cfg: JobConfig, counts: dict[str, int]) -> TrainPlan:
    """The resolved plan of `cfg` on a manifest with `counts` rows per phase tag."""
    from radisim.platform.train.runner import _schedule
    from radisim.platform.train.schedule import lr_factor

    written = resolve_epochs(cfg, counts)
    given = {p.name: p.epochs for p in cfg.curriculum.phases}
    cfg = written.model_copy(update={"curriculum": written.curriculum.effective()})
    spec, t, per_step = cfg.curriculum, cfg.train, samples_per_step(cfg)
    phases, offset = [], 0
    for i, p in enumerate(spec.phases):
        rows = expected_rows(counts, spec.mix(i, counts))
        s = _schedule(cfg, i, offset)
        lr = lambda step: p.lr * lr_factor(s["offset"] + step, s["total"], s["warmup"], s["kind"], s["min_ratio"])  # noqa: E731
        phases.append(PhasePlan(
            index=i + 1, name=p.name, data=list(p.data), rows=rows, steps=p.steps,
            epochs=p.steps * per_step / rows if rows else 0.0, epochs_given=given.get(p.name), loss=p.loss, lr=p.lr,
            warmup_steps=max(0, min(p.steps, s["warmup"] - s["offset"])), schedule=s["kind"],
            lr_start=lr(0), lr_end=lr(p.steps - 1), freeze=list(p.freeze), hard_negatives=p.hard_negatives))
        offset += p.steps
    return TrainPlan(
        curriculum=spec.name, ordering=spec.ordering, model=cfg.model.name, pretrained=cfg.model.pretrained,
        workers=t.num_workers, use_gpu=t.use_gpu, gpus=t.num_workers if t.use_gpu else 0,
        cpus_per_worker=t.cpus_per_worker, batch_size=t.batch_size, grad_accum=t.grad_accum,
        contrastive_batch=per_step, precision=t.precision, lr_across_phases=spec.lr_across_phases,
        optimizer={"name": "AdamW", "betas": (t.beta1, t.beta2), "eps": t.eps, "weight_decay": t.weight_decay,
                   "grad_clip": t.grad_clip, "local_loss": t.local_loss, "gather_with_grad": t.gather_with_grad},
        phases=phases, total_steps=offset, total_samples=offset * per_step)


def format_plan(plan: TrainPlan) -> str:
    o = plan.optimizer
    lines = [
        f"plan: curriculum {plan.curriculum!r} ({plan.ordering}), model {plan.model}"
        + (f" (pretrained {plan.pretrained})" if plan.pretrained else ""),
        f"  workers {plan.workers} x ({plan.cpus_per_worker:g} CPU" + (", 1 GPU)" if plan.use_gpu else ")")
        + f", GPUs {plan.gpus}, precision {plan.precision}",
        f"  batch {plan.batch_size} per worker x {plan.grad_accum} accumulation x {plan.workers} workers"
        f" = contrastive batch {plan.contrastive_batch} (one problem per optimizer step)",
        f"  optimizer AdamW betas {o['betas']} eps {o['eps']:g} weight decay {o['weight_decay']:g}, "
        f"grad clip {o['grad_clip']}, local loss {o['local_loss']}, gather with grad {o['gather_with_grad']}",
        f"  LR schedule across phases: {plan.lr_across_phases}",
        f"  {'#':>2} {'phase':<14}{'loss':<7}{'rows':>10}{'epochs':>9}{'steps':>9}{'warmup':>8}  {'lr start -> end':<22}"
        f"{'schedule':<9}{'freeze':<8}",
    ]
    for p in plan.phases:
        epochs = f"{p.epochs:.2f}" + ("*" if p.epochs_given else "")
        lines.append(f"  {p.index:>2} {p.name:<14}{p.loss:<7}{p.rows:>10}{epochs:>9}{p.steps:>9}{p.warmup_steps:>8}  "
                     f"{p.lr_start:.2e} -> {p.lr_end:.2e}   {p.schedule:<9}{','.join(p.freeze) or '-':<8}")
    lines.append(f"  total {plan.total_steps} optimizer steps, {plan.total_samples} samples"
                 + ("  (* epochs given, steps derived from the manifest)" if any(p.epochs_given for p in plan.phases) else ""))
    for title, body in plan.sections.items():
        lines += [f"{title}:"] + [f"  {line}" for line in body]
    return "\n".join(lines)
