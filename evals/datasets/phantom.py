"""The phantom adapter: every subtask from the synthetic phantom eval split (labelled synthetic).

Layout (written by `radisim.curriculum.phantom.write_phantom_dataset`):
    <root>/eval/part-*.parquet   one row per image: image_id, image (PNG bytes), modality, anatomy,
                                 view, organs, target_organ, target_region, finding, subtype, grade, ...
Each subtask's `phantom` section in tasks.yaml says which rows it uses and how the label is read; all
subtasks share one `ImagePool` (the whole split), so the images are embedded once. Every phantom
image is drawn independently (its own synthetic case), so its case id is its image id.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..tasks import Subtask
from .base import DatasetNotFoundError, Examples, ImagePool, register_adapter

SPLIT_DIR = "eval"
_METADATA = ("modality", "anatomy", "view", "finding", "subtype", "grade", "target_organ", "target_region")


def _split_files(root: Path) -> list[Path]:
    files = sorted((root / SPLIT_DIR).glob("part-*.parquet"))
    if not files:
        raise DatasetNotFoundError.expected(
            "phantom", root, f"{SPLIT_DIR}/part-*.parquet",
            "Generate it with radisim.curriculum.phantom.write_phantom_dataset(<root>, ...)",
        )
    return files


@lru_cache(maxsize=4)
def _read_split(files: tuple[Path, ...], stamps: tuple[float, ...]) -> tuple[ImagePool, dict[str, list]]:
    import pyarrow.parquet as pq
    import pyarrow as pa

    table = pa.concat_tables([pq.read_table(f) for f in files])
    columns = {name: table.column(name).to_pylist() for name in table.column_names if not name.startswith("caption_")}
    images = columns.pop("image")
    pool = ImagePool(f"phantom:{files[0].parent}", tuple(str(i) for i in columns["image_id"]), images)
    return pool, columns


def read_split(root: Path) -> tuple[ImagePool, dict[str, list]]:
    """The split's pool and its metadata columns (memoised while the files are unchanged)."""
    files = tuple(_split_files(Path(root)))
    return _read_split(files, tuple(f.stat().st_mtime_ns for f in files))


def _as_set(value: Any) -> set:
    return {str(v) for v in value} if isinstance(value, (list, tuple)) else {str(value)}


def _holds(cell: Any, condition: Any) -> bool:
    """A condition: a value (equal), a list (one of), {not: value or list} (none of). List cells: any."""
    values = _as_set(cell) if isinstance(cell, (list, tuple, np.ndarray)) else {"" if cell is None else str(cell)}
    if isinstance(condition, dict):
        return not values & _as_set(condition["not"])
    return bool(values & _as_set(condition))


def _row_matches(columns: dict[str, list], i: int, conditions: dict[str, Any]) -> bool:
    for column, condition in conditions.items():
        if column not in columns:
            raise KeyError(f"phantom split has no column {column!r} (columns: {sorted(columns)})")
        if not _holds(columns[column][i], condition):
            return False
    return True


def _label(subtask: Subtask, rule: dict[str, Any], columns: dict[str, list], i: int) -> Any:
    """Label of row i under the subtask's rule, or None if the row yields no example."""
    classes = subtask.classes
    if "when" in rule:
        for name, conditions in rule["when"].items():
            if _row_matches(columns, i, conditions):
                return classes.index(name)
        return None
    cell = columns[rule["column"]][i]
    values = rule.get("values", {c: [c] for c in classes})
    if subtask.kind == "multi-label":
        present = _as_set(cell or [])
        return [int(bool(present & _as_set(values[c]))) for c in classes]
    for name in classes:
        if _holds(cell, values[name]):
            return classes.index(name)
    return None


@register_adapter("phantom")
def phantom_adapter(root: Path, subtask: Subtask) -> Examples:
    pool, columns = read_split(root)
    rule = subtask.phantom["label"]
    conditions = subtask.phantom.get("filter") or {}
    rows, labels, queries = [], [], []
    for i in range(len(pool)):
        if not _row_matches(columns, i, conditions):
            continue
        label = _label(subtask, rule, columns, i)
        if label is None:
            continue
        rows.append(i)
        labels.append(label)
        if "query" in rule:
            queries.append(str(columns[rule["query"]][i]))
    if not rows:
        raise ValueError(f"phantom split at {root} yields no examples for subtask {subtask.id} ({subtask.phantom})")
    meta = {c: np.asarray([columns[c][i] for i in rows], dtype=object) for c in _METADATA if c in columns}
    y = np.asarray(labels, dtype=np.int64)
    cases = np.asarray([pool.image_ids[i] for i in rows], dtype=object)
    return Examples(pool, np.asarray(rows), y, subtask.classes, np.asarray(queries) if queries else None, meta, cases)
