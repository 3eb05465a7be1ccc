"""Curriculum specs: what is taught when, as YAML validated into typed config.

A spec is an ordered list of phases. Each phase trains on the rows tagged with its `data` phases
(by default its own name), optionally mixing in a `replay` share of the rows of all earlier phases,
for a fixed number of optimizer steps with its own LR schedule and loss. Bundled specs live in
curriculum/specs/*.yaml and are addressed by file stem (`curriculum: radisim_cl`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .orderings import arrange, ordering_names
from .pacing import pacing_names, phase_mix, uses_replay
from .phases import PHASES

SPEC_DIR = Path(__file__).parent / "specs"


class PhaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: A label for the phase (MLflow child run name); one of the five phases or e.g. "all".
    name: str
    #: Which phase tags of the data this phase trains on. Default: [name].
    data: list[str] = Field(default_factory=list)
    #: The phase's budget: optimizer `steps`, or `epochs` over its own rows (its data tags' rows as
    #: pacing and replay mix them), turned into steps from the manifest's row counts before any fit
    #: (radisim.platform.train.plan.resolve_epochs). Exactly one of the two.
    steps: Optional[int] = Field(None, ge=1, description="optimizer steps in this phase")
    epochs: Optional[float] = Field(None, gt=0, description="passes over this phase's rows (instead of steps)")
    lr: float = Field(1e-4, gt=0, lt=1)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["cosine", "constant", "linear"] = "cosine"
    #: LR at the end of the phase as a fraction of `lr` (cosine/linear decay floor).
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    loss: Literal["clip", "siglip"] = "clip"
    #: Share of each batch drawn from the data of all earlier phases (rehearsal against forgetting);
    #: read by the `step` pace only (any other pace decides the earlier-data share itself).
    replay: float = Field(0.0, ge=0, lt=1)
    #: Replay only the rows of the last n phases (0: of every earlier phase). Every caption restates
    #: modality and anatomy, so replaying them is wasted where the fine phase just taught is forgotten.
    #: Used by the `step` pace.
    replay_last: int = Field(0, ge=0)
    #: Replay only these data tags (where already taught). Set by an ordering that moves a phase
    #: together with its settings: the phase keeps replaying what it replayed in the written order.
    replay_from: Optional[list[str]] = None
    #: Towers kept fixed in this phase.
    freeze: list[Literal["visual", "text"]] = Field(default_factory=list)
    #: With `freeze`: True (the default) also holds the frozen tower's normalisation statistics
    #: (eval mode: BatchNorm running statistics fixed, dropout off), so the tower is bit-identical after
    #: the phase. False fixes the weights only and lets BatchNorm normalise with, and track, the phase's
    #: batch statistics (open_clip's `lock_image_tower(freeze_bn_stats=False)`). That is for towers whose
    #: statistics were never fitted to data: a random-init ResNet tower in eval mode maps every image to
    #: nearly the same embedding (initial running mean 0, variance 1), so nothing could be learnt against it.
    freeze_norm_stats: bool = True
    #: Counterfactual captions per sample (curriculum/counterfactuals.py): hard negatives that differ
    #: from the true caption only in what the row's phase teaches ("upper left" -> "lower right").
    #: Each costs one more caption through the text tower.
    hard_negatives: int = Field(0, ge=0, le=8)

    @model_validator(mode="after")
    def _data_defaults_to_name(self) -> "PhaseSpec":
        if not self.data:
            if self.name not in PHASES:
                raise ValueError(f"data: phase {self.name!r} is not one of {PHASES}; list the phases it teaches in `data`")
            self.data = [self.name]
        unknown = [d for d in self.data if d not in PHASES]
        if unknown:
            raise ValueError(f"data: unknown phase(s) {unknown}; expected some of {list(PHASES)}")
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give a phase either `steps` or `epochs` (passes over its own rows), not both or neither")
        if self.steps is not None and self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) exceeds steps ({self.steps})")
        if (self.replay_last or self.replay_from) and not self.replay:
            raise ValueError("replay_last/replay_from: set `replay` too; without a replay share there is nothing to restrict")
        if self.replay_last and self.replay_from is not None:
            raise ValueError("replay_last and replay_from: give one of them")
        if self.replay_from is not None and [d for d in self.replay_from if d not in PHASES]:
            raise ValueError(f"replay_from: unknown phase(s); expected some of {list(PHASES)}")
        if len(self.freeze) == 2:
            raise ValueError("freeze: freezing both towers leaves nothing to train")
        return self


class PacingSpec(BaseModel):
    """Which share of the ordered data each phase draws from (curriculum/pacing.py, which cites the
    closed forms). `t` is the fraction of the total optimizer steps run before a phase."""

    model_config = ConfigDict(extra="forbid")

    name: str = "step"
    #: Share of the ordered pool at t = 0 (Wu et al.'s b, Hacohen & Weinshall's starting_percent,
    #: Platanios et al.'s c0).
    start: float = Field(0.2, gt=0, le=1)
    #: The t at which the whole pool is available (Wu et al.'s a; Platanios et al.'s T / total).
    saturation: float = Field(0.8, gt=0, le=1)
    #: `fixed_exponential`: the share is multiplied by `growth` every `step_length` of training.
    growth: float = Field(2.0, gt=1)
    step_length: float = Field(0.2, gt=0, le=1)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in pacing_names():
            raise ValueError(f"unknown pacing {name!r}; registered: {pacing_names()}")
        return name


class CurriculumSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    #: What the arm is for and what it costs (command, hardware, runtime); shown in MLflow.
    description: str = ""
    #: How the phases' contents are arranged (curriculum/orderings.py); every ordering keeps the
    #: total budget, so arms are comparable. `phases` are always written coarse to fine.
    ordering: str = "curriculum"
    #: What an ordering moves: `content_and_settings` (default) moves each phase with its steps, LR,
    #: schedule, loss, freeze, counterfactuals and replay source; `content` moves only the data tags
    #: and leaves every position's settings in place (the position-bound variant).
    ordering_moves: Literal["content_and_settings", "content"] = "content_and_settings"
    #: Seeds this spec's settings were chosen on: an ablation that verdicts on them is biased, so the
    #: sweep refuses them (jobs/ablate.py).
    tuning_seeds: list[int] = Field(default_factory=list)
    #: Seed of the `random_order` permutation.
    order_seed: int = 0
    pacing: PacingSpec = PacingSpec()
    #: `restart`: every phase runs its own warm-up + decay; `continue`: one schedule spans all phases
    #: (the first phase's warm-up, schedule and floor; each phase's own peak `lr`).
    lr_across_phases: Literal["restart", "continue"] = "restart"
    phases: list[PhaseSpec] = Field(..., min_length=1)

    @field_validator("ordering")
    @classmethod
    def _known_ordering(cls, name: str) -> str:
        if name not in ordering_names():
            raise ValueError(f"unknown ordering {name!r}; registered: {ordering_names()}")
        return name

    @field_validator("phases")
    @classmethod
    def _unique_names(cls, phases: list[PhaseSpec]) -> list[PhaseSpec]:
        names = [p.name for p in phases]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"phase names must be unique (MLflow run names, checkpoint folders); repeated: {dupes}")
        if phases[0].replay > 0:
            raise ValueError("phases.0.replay: the first phase has no earlier phase to replay")
        return phases

    @model_validator(mode="after")
    def _replay_needs_step_pace(self) -> "CurriculumSpec":
        replaying = [p.name for p in self.phases if p.replay > 0]
        if replaying and not uses_replay(self.pacing.name):
            raise ValueError(f"phases: {replaying} set `replay`, which only the `step` pace uses; pacing "
                             f"{self.pacing.name!r} decides the share of earlier data itself. Set replay: 0 "
                             f"or pacing.name: step")
        return self

    @property
    def total_steps(self) -> int:
        unresolved = [p.name for p in self.phases if p.steps is None]
        if unresolved:
            raise ValueError(f"phases {unresolved} give epochs: resolve them into steps from the data first "
                             "(radisim.platform.train.plan.resolve_epochs)")
        return sum(p.steps for p in self.phases)

    @property
    def uses_siglip(self) -> bool:
        return any(p.loss == "siglip" for p in self.phases)

    def effective(self) -> "CurriculumSpec":
        """The phases as they will be trained: arranged by `ordering` (a no-op for `curriculum`)."""
        return self.model_copy(update={"phases": arrange(self.ordering, self.phases, self.order_seed,
                                                         self.ordering_moves)})

    def progress(self, index: int) -> float:
        """t of phase `index`: the fraction of the total optimizer steps run before it starts."""
        return sum(p.steps for p in self.phases[:index]) / self.total_steps

    def mix(self, index: int, counts: dict[str, int]) -> dict[str, float]:
        """Keep-probability per data tag in phase `index`'s stream (pacing + replay)."""
        order = [p.data for p in self.phases]
        phase = self.phases[index]
        return phase_mix(order, index, counts, self.pacing.name, self.progress(index), self.pacing,
                         phase.replay, phase.replay_last, phase.replay_from)


def bundled_specs() -> list[str]:
    return sorted(p.stem for p in SPEC_DIR.glob("*.yaml"))


def load_spec_dict(ref: Any) -> dict:
    """A bundled spec name, a YAML path, or an inline mapping -> the raw mapping (validated later)."""
    if isinstance(ref, dict):
        return ref
    if not isinstance(ref, str):
        raise ValueError(f"curriculum: expected a spec name, a YAML path or a mapping, got {type(ref).__name__}")
    path = Path(ref)
    if not path.suffix:
        path = SPEC_DIR / f"{ref}.yaml"
        if not path.is_file():
            raise ValueError(f"curriculum: no bundled spec {ref!r}; bundled: {bundled_specs()}")
    elif not path.is_file():
        raise ValueError(f"curriculum: no such spec file {ref}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"curriculum: {path} must hold a mapping")
    return data


def load_spec(ref: Any) -> CurriculumSpec:
    return CurriculumSpec.model_validate(load_spec_dict(ref))
