"""The adapter registry and the table of examples an adapter returns.

Contract of an adapter (register it with `@register_adapter("<dataset name>")`):

    def adapter(root: Path, subtask: Subtask, **options) -> Examples

  - `root` is the dataset's directory in its real published layout (the adapter documents that
    layout in its docstring). If `root` or a file the adapter needs is missing, raise
    `DatasetNotFoundError` with what was expected where (`DatasetNotFoundError.expected(...)`).
  - Every example names its CASE (`Examples.cases`): the patient, exam or volume it comes from, the
    unit the bootstrap resamples. A dataset that publishes no patient grouping uses the image id
    (its docstring says so); `load_examples` refuses examples without case ids.
  - The result holds, for every example, an image (uint8 array, grayscale HxW or RGB HxWx3, or encoded
    PNG/JPEG bytes), its label(s) in the subtask's class order (`Examples` docstring), and optional
    per-example metadata (e.g. "view", "patient_id").
  - Images live in an `ImagePool` (an image split); examples point into it by row. Subtasks whose
    adapters return the same pool share one embedding computation and one cache entry, so an adapter
    that serves several subtasks from one split should return the same pool object for all of them
    (the phantom adapter does). `Examples.from_images(...)` builds a private pool for the simple case.
  - Options come from the caller (`run_suite(..., adapter_options={name: {...}})`); unknown options
    should raise TypeError rather than be ignored.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..tasks import Subtask

Adapter = Callable[..., "Examples"]
_ADAPTERS: dict[str, Adapter] = {}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset root, or a file inside it, is not where the adapter expects it."""

    @classmethod
    def expected(cls, dataset: str, root: Path, what: str, hint: str = "",
                 found: str = "nothing") -> "DatasetNotFoundError":
        msg = f"dataset {dataset!r}: expected {what} under {Path(root).resolve()}, found {found}"
        return cls(msg + (f". {hint}" if hint else ""))


@dataclass(eq=False)
class ImagePool:
    """An image split: ids and images in row order. `fingerprint` changes iff any id or pixel does."""

    name: str
    image_ids: tuple[str, ...]
    images: Sequence[bytes | np.ndarray]
    _fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if len(self.image_ids) != len(self.images):
            raise ValueError(f"pool {self.name}: {len(self.image_ids)} ids but {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for image_id, image in zip(self.image_ids, self.images):
                digest.update(str(image_id).encode() + b"\0")
                if isinstance(image, np.ndarray):
                    digest.update(str(image.shape).encode())
                    digest.update(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
                else:
                    digest.update(bytes(image))
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint


@dataclass(eq=False)
class Examples:
    """The examples of one subtask.

    rows     (n,) int rows into `pool`
    y        single-label / localization: (n,) int index into `classes`; binary: (n,) 0/1 (1 = classes[1]);
             multi-label: (n, K) 0/1 per class
    classes  the subtask's class names (score column order)
    queries  localization only: (n,) the organ each example asks about
    metadata optional per-example columns, each (n,)
    cases    (n,) str: the case (patient / exam / volume) of each example; the bootstrap's unit
    units    optional (n,) str: score per unit, not per image (an MRNet exam): `unit_scores` turns the
             image scores into one score per unit = the mean over its `levels` (e.g. the MR planes) of
             the mean score of its images at that level; all images of a unit share its label and case
    levels   optional (n,) str, with `units`
    """

    pool: ImagePool
    rows: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    queries: np.ndarray | None = None
    metadata: dict[str, np.ndarray] = field(default_factory=dict)
    cases: np.ndarray | None = None
    units: np.ndarray | None = None
    levels: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.rows = np.asarray(self.rows, dtype=np.int64)
        self.y = np.asarray(self.y)
        if len(self.rows) != len(self.y):
            raise ValueError(f"{len(self.rows)} rows but {len(self.y)} labels")
        if self.cases is not None:
            self.cases = np.asarray([str(c) for c in self.cases], dtype=object)
            if len(self.cases) != len(self.rows):
                raise ValueError(f"{len(self.rows)} rows but {len(self.cases)} case ids")

    def __len__(self) -> int:
        return len(self.rows)

    def unit_scores(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(unit ids, y, cases, scores) with one row per unit (in sorted unit order); without `units`
        the examples themselves (image ids, y, cases, scores)."""
        if self.units is None:
            return np.asarray(self.image_ids, dtype=object), self.y, self.cases, scores
        units = np.asarray(self.units).astype(str)
        levels = np.zeros(len(units), dtype=str) if self.levels is None else np.asarray(self.levels).astype(str)
        ids = np.unique(units)
        y, cases, out = [], [], []
        for unit in ids:
            mask = units == unit
            labels = self.y[mask]
            if not (labels == labels[0]).all():
                raise ValueError(f"unit {unit}: its images carry different labels")
            y.append(labels[0])
            cases.append(self.cases[mask][0])
            out.append(np.mean([scores[mask & (levels == lv)].mean(axis=0) for lv in np.unique(levels[mask])], axis=0))
        return ids.astype(object), np.asarray(y), np.asarray(cases, dtype=object), np.asarray(out)

    @property
    def image_ids(self) -> list[str]:
        return [self.pool.image_ids[r] for r in self.rows]

    @classmethod
    def from_images(
        cls,
        name: str,
        image_ids: Sequence[str],
        images: Sequence[bytes | np.ndarray],
        y: Any,
        classes: Sequence[str],
        queries: Any = None,
        metadata: dict[str, Any] | None = None,
        cases: Sequence[str] | None = None,
    ) -> "Examples":
        """A private pool of `images`; `cases` defaults to the image ids (one image per case)."""
        pool = ImagePool(name, tuple(str(i) for i in image_ids), list(images))
        return cls(
            pool, np.arange(len(pool)), np.asarray(y), tuple(classes),
            None if queries is None else np.asarray(queries),
            {k: np.asarray(v) for k, v in (metadata or {}).items()},
            np.asarray(pool.image_ids if cases is None else list(cases), dtype=object),
        )


def register_adapter(name: str) -> Callable[[Adapter], Adapter]:
    def decorate(fn: Adapter) -> Adapter:
        if name in _ADAPTERS and _ADAPTERS[name] is not fn:
            raise ValueError(f"dataset adapter {name!r} registered twice")
        _ADAPTERS[name] = fn
        return fn

    return decorate


def adapter_names() -> list[str]:
    return sorted(_ADAPTERS)


def get_adapter(name: str) -> Adapter:
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise KeyError(
            f"no dataset adapter named {name!r} (registered: {', '.join(adapter_names())}); "
            f"write one following radisim.evals.datasets.base's contract, or evaluate on the phantom"
        ) from None


def load_examples(adapter: str, root: str | Path, subtask: Subtask, **options: Any) -> Examples:
    """Run an adapter and check what it returned against the subtask."""
    examples = get_adapter(adapter)(Path(root), subtask, **options)
    if tuple(examples.classes) != subtask.classes:
        raise ValueError(f"adapter {adapter!r} returned classes {examples.classes} for {subtask.id}, expected {subtask.classes}")
    if len(examples) == 0:
        raise ValueError(f"adapter {adapter!r} returned no examples for subtask {subtask.id}")
    if examples.cases is None:
        raise ValueError(f"adapter {adapter!r} returned no case ids for subtask {subtask.id} (Examples.cases: the "
                         f"patient / exam / volume of each example, the image id where the dataset has none)")
    if subtask.kind == "localization" and examples.queries is None:
        raise ValueError(f"adapter {adapter!r} returned no queries for localization subtask {subtask.id}")
    return examples
