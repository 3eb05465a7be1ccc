"""Registry of the 24 zero-shot subtasks of the five-stage framework.

The subtasks are data (`tasks.yaml`, whose header is the written contract of an entry); this module
loads and validates them. A bad entry fails at load with its id and the field's name.

    >>> from radisim.evals.tasks import subtasks, get_subtask
    >>> get_subtask("br35h").key("auc")
    'stage4/br35h/auc'
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from radisim.curriculum.phases import MODALITIES, PHASES, REGIONS

TASKS_FILE = Path(__file__).with_name("tasks.yaml")

#: Every metric computed for a subtask of each kind (the primary one must be among them).
METRICS_BY_KIND: dict[str, tuple[str, ...]] = {
    "single-label": ("accuracy", "balanced_accuracy", "macro_f1", "auc"),
    "binary": ("auc", "accuracy", "balanced_accuracy", "macro_f1"),
    "multi-label": ("map", "auc"),
    "localization": ("accuracy", "balanced_accuracy", "macro_f1", "auc"),
}
KINDS: tuple[str, ...] = tuple(METRICS_BY_KIND)
_LABEL_RULES = ({"column"}, {"column", "values"}, {"when"}, {"query", "column"})


@dataclass(frozen=True)
class Subtask:
    id: str
    stage: int
    modalities: tuple[str, ...]
    dataset: str
    kind: str
    classes: tuple[str, ...]
    metric: str
    prompts: str
    templates: str
    phantom: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def phase(self) -> str:
        return PHASES[self.stage - 1]

    @property
    def metrics(self) -> tuple[str, ...]:
        """All metrics of this subtask, primary first."""
        rest = [m for m in METRICS_BY_KIND[self.kind] if m != self.metric]
        return (self.metric, *rest)

    def key(self, metric: str) -> str:
        """MLflow key of one metric: `stage<N>/<id>/<metric>`."""
        return f"stage{self.stage}/{self.id}/{metric}"


def _fail(sid: str, msg: str) -> None:
    raise ValueError(f"{TASKS_FILE.name}: subtask {sid!r}: {msg}")


def _parse(entry: dict[str, Any]) -> Subtask:
    sid = str(entry.get("id", "<no id>"))
    required = {"id", "stage", "modalities", "dataset", "kind", "classes", "metric", "prompts", "templates", "phantom"}
    if missing := required - set(entry):
        _fail(sid, f"missing fields {sorted(missing)}")
    if extra := set(entry) - required:
        _fail(sid, f"unknown fields {sorted(extra)}")
    task = Subtask(
        id=sid,
        stage=int(entry["stage"]),
        modalities=tuple(entry["modalities"]),
        dataset=str(entry["dataset"]),
        kind=str(entry["kind"]),
        classes=tuple(str(c) for c in entry["classes"]),
        metric=str(entry["metric"]),
        prompts=str(entry["prompts"]),
        templates=str(entry["templates"]),
        phantom=dict(entry["phantom"] or {}),
    )
    if not 1 <= task.stage <= len(PHASES):
        _fail(sid, f"stage {task.stage} not in 1..{len(PHASES)}")
    if not task.modalities or set(task.modalities) - set(MODALITIES):
        _fail(sid, f"modalities {task.modalities} must be a non-empty subset of {MODALITIES}")
    if task.kind not in KINDS:
        _fail(sid, f"kind {task.kind!r} not one of {KINDS}")
    if task.metric not in METRICS_BY_KIND[task.kind]:
        _fail(sid, f"metric {task.metric!r} is not computed for kind {task.kind}: {METRICS_BY_KIND[task.kind]}")
    if len(task.classes) < 2 or len(set(task.classes)) != len(task.classes):
        _fail(sid, f"classes must be >= 2 distinct names, got {task.classes}")
    if task.kind == "binary" and len(task.classes) != 2:
        _fail(sid, "a binary subtask has classes [negative, positive]")
    if task.kind == "localization" and task.classes != REGIONS:
        _fail(sid, f"localization classes must be the regions {REGIONS}")
    label = task.phantom.get("label")
    if not isinstance(label, dict) or set(label) not in _LABEL_RULES:
        _fail(sid, f"phantom.label must have the keys of one of {[sorted(r) for r in _LABEL_RULES]}, got {label}")
    if "when" in label and set(label["when"]) != set(task.classes):
        _fail(sid, f"phantom.label.when must name exactly the classes {task.classes}")
    if "values" in label and set(label["values"]) != set(task.classes):
        _fail(sid, f"phantom.label.values must name exactly the classes {task.classes}")
    if (task.kind == "localization") != ("query" in label):
        _fail(sid, "phantom.label.query is used by (and required for) localization subtasks")
    return task


@lru_cache(maxsize=None)
def load_registry(path: str | Path = TASKS_FILE) -> dict[str, Subtask]:
    """All subtasks in file order, keyed by id."""
    entries = yaml.safe_load(Path(path).read_text())["subtasks"]
    registry: dict[str, Subtask] = {}
    for entry in entries:
        task = _parse(entry)
        if task.id in registry:
            _fail(task.id, "duplicate id")
        registry[task.id] = task
    return registry


def subtasks(ids: list[str] | tuple[str, ...] | None = None, stage: int | None = None) -> list[Subtask]:
    """Subtasks in registry order; `ids` selects (unknown ids raise), `stage` filters."""
    registry = load_registry()
    if ids is None:
        chosen = list(registry.values())
    else:
        chosen = [get_subtask(i) for i in ids]
    return [t for t in chosen if stage is None or t.stage == stage]


def get_subtask(subtask_id: str) -> Subtask:
    registry = load_registry()
    try:
        return registry[subtask_id]
    except KeyError:
        raise KeyError(f"unknown subtask {subtask_id!r}; known: {', '.join(registry)}") from None
