"""Bring-your-own labelled folder: `<root>/<class folder>/*.{png,jpg,jpeg}` (Br35H's `yes/`/`no/`,
Kaggle brain-tumor MRI's `Training/glioma/...`, an internal grading set).

Registered as "image_folder". Options: `folders={class name: folder name or relative path}` (default:
the class names themselves), `split=None` (a sub-directory such as "Testing" under root).
Single-label and binary subtasks only. Real-dataset adapters can delegate to `read_image_folder`.
Class folders carry no patient grouping: each image is its own case.
"""
from __future__ import annotations

from pathlib import Path

from ..tasks import Subtask
from .base import DatasetNotFoundError, Examples, register_adapter
from .common import IMAGE_SUFFIXES, image_file_bytes


def read_image_folder(name: str, root: Path, subtask: Subtask, folders: dict[str, str] | None = None,
                      split: str | None = None) -> Examples:
    if subtask.kind not in ("single-label", "binary"):
        raise ValueError(f"image_folder serves single-label/binary subtasks, not {subtask.kind} ({subtask.id})")
    base = Path(root) / split if split else Path(root)
    folders = folders or {c: c for c in subtask.classes}
    ids, images, labels = [], [], []
    for k, cls in enumerate(subtask.classes):
        directory = base / folders[cls]
        files = sorted(p for p in directory.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if directory.is_dir() else []
        if not files:
            raise DatasetNotFoundError.expected(name, base, f"images ({'/'.join(IMAGE_SUFFIXES)}) of class {cls!r} in {folders[cls]}/")
        for path in files:
            ids.append(str(path.relative_to(base)))
            images.append(image_file_bytes(path))
            labels.append(k)
    return Examples.from_images(f"{name}:{base}", ids, images, labels, subtask.classes)


@register_adapter("image_folder")
def image_folder_adapter(root: Path, subtask: Subtask, folders: dict[str, str] | None = None,
                         split: str | None = None) -> Examples:
    return read_image_folder("image_folder", root, subtask, folders, split)
