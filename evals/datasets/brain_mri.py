"""Brain-tumour MR datasets (stage 4 diagnosis, stage 5 subtyping).

br35h — Br35H :: Brain Tumor Detection 2020 (Kaggle, Hamada):
    <root>/yes/*.jpg    tumour            <root>/no/*.jpg    no tumour
  (`pred/`, the unlabelled images, is ignored.)

kaggle_brain_tumor — Brain Tumor MRI Dataset (Kaggle, Nickparvar), and its predecessor by
Bhuvaji et al. whose folders end in `_tumor`:
    <root>/{Training,Testing}/{glioma,meningioma,pituitary,notumor}/*.jpg
    (also accepted: glioma_tumor, meningioma_tumor, pituitary_tumor, no_tumor)
  Option `split`: "Testing" (default), "Training", or "all". The binary subtask counts glioma,
  meningioma and pituitary as tumour; the subtype subtask maps pituitary -> "pituitary adenoma" and
  notumor -> "no tumor". Both subtasks share one image pool.

Cases: neither dataset publishes which images come from one patient, so each image is its own case
(the bootstrap cannot see patient clustering there; say so when reporting these intervals).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..tasks import Subtask
from .base import DatasetNotFoundError, Examples, ImagePool, register_adapter
from .common import IMAGE_SUFFIXES, stamp
from .folder import read_image_folder


@register_adapter("br35h")
def br35h(root: Path, subtask: Subtask) -> Examples:
    if subtask.kind != "binary":
        raise ValueError(f"br35h serves the binary tumour subtask, not {subtask.id}")
    return read_image_folder("br35h", root, subtask, folders={subtask.classes[0]: "no", subtask.classes[1]: "yes"})


#: Kaggle folder -> (is tumour, subtype class)
KAGGLE_FOLDERS = {
    "glioma": "glioma", "glioma_tumor": "glioma",
    "meningioma": "meningioma", "meningioma_tumor": "meningioma",
    "pituitary": "pituitary adenoma", "pituitary_tumor": "pituitary adenoma",
    "notumor": "no tumor", "no_tumor": "no tumor",
}
KAGGLE_SPLITS = ("Training", "Testing")


def _kaggle_files(root: Path, split: str) -> list[tuple[Path, str]]:
    splits = KAGGLE_SPLITS if split == "all" else (split,)
    if split != "all" and split not in KAGGLE_SPLITS:
        raise ValueError(f"kaggle_brain_tumor: split must be Training, Testing or all, got {split!r}")
    files = []
    for s in splits:
        for folder, cls in KAGGLE_FOLDERS.items():
            d = Path(root) / s / folder
            if d.is_dir():
                files += [(p, cls) for p in sorted(d.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    found = {cls for _, cls in files}
    if found != set(KAGGLE_FOLDERS.values()):
        missing = sorted(set(KAGGLE_FOLDERS.values()) - found)
        raise DatasetNotFoundError.expected(
            "kaggle_brain_tumor", root, f"{'/'.join(splits)}/{{glioma,meningioma,pituitary,notumor}}/*.jpg",
            found=f"no images for {missing}")
    return files


@lru_cache(maxsize=2)
def _kaggle_pool(root: str, split: str, key: tuple) -> tuple[ImagePool, tuple[str, ...]]:
    files = _kaggle_files(Path(root), split)
    ids = tuple(str(p.relative_to(root)) for p, _ in files)
    return ImagePool(f"kaggle_brain_tumor:{root}:{split}", ids, [p.read_bytes() for p, _ in files]), tuple(c for _, c in files)


@register_adapter("kaggle_brain_tumor")
def kaggle_brain_tumor(root: Path, subtask: Subtask, split: str = "Testing") -> Examples:
    files = _kaggle_files(Path(root), split)
    pool, subtypes = _kaggle_pool(str(Path(root).resolve()), split, stamp(p for p, _ in files))
    if subtask.kind == "binary":
        y = np.asarray([int(s != "no tumor") for s in subtypes])
        return Examples(pool, np.arange(len(pool)), y, subtask.classes, None, {"subtype": np.asarray(subtypes, dtype=object)},
                        cases=np.asarray(pool.image_ids, dtype=object))
    rows = [i for i, s in enumerate(subtypes) if s in subtask.classes]
    y = np.asarray([subtask.classes.index(subtypes[i]) for i in rows])
    return Examples(pool, np.asarray(rows), y, subtask.classes, None, {"subtype": np.asarray([subtypes[i] for i in rows], dtype=object)},
                    cases=np.asarray([pool.image_ids[i] for i in rows], dtype=object))
