"""MRNet knee MR (Bien et al. 2018, Stanford ML Group), stage 4: ACL tear, meniscus tear.

Layout of the published `MRNet-v1.0`:
    <root>/{train,valid}/{axial,coronal,sagittal}/NNNN.npy   one exam per file: (slices, 256, 256) uint8
    <root>/{train,valid}-{abnormal,acl,meniscus}.csv          no header; rows "NNNN,0|1"

Scored per exam, as MRNet's protocol (Bien et al. 2018: one probability per exam, AUC over exams):
each exam gives `slices_per_plane` (default 3, evenly spread over the central 60%) slices of each of
`planes` (default all three); the exam's probability is the mean over its planes of the mean
zero-shot probability of that plane's slices (`Examples.unit_scores`). The paper combines the three
per-plane CNN probabilities with a logistic regression fitted on training exams; zero-shot there is
nothing to fit, so the combination is the unweighted mean. The exam is the case. `split`: "valid"
(default, the public 120-exam validation set) or "train". ACL and meniscus subtasks share one pool.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from radisim.platform.data import imaging

from ..tasks import Subtask
from .base import DatasetNotFoundError, Examples, ImagePool, register_adapter
from .common import read_csv, require_file, stamp

PLANES = ("sagittal", "coronal", "axial")
#: subtask id -> label file stem
LABEL_FILES = {"mrnet_acl": "acl", "mrnet_meniscus": "meniscus", "mrnet_abnormal": "abnormal"}


@lru_cache(maxsize=2)
def _pool(root: str, split: str, planes: tuple[str, ...], per_plane: int, key: tuple) -> tuple[ImagePool, list[str], list[str]]:
    root_p = Path(root)
    ids, images, exams, views = [], [], [], []
    for plane in planes:
        directory = root_p / split / plane
        files = sorted(directory.glob("*.npy")) if directory.is_dir() else []
        if not files:
            raise DatasetNotFoundError.expected("mrnet", root_p, f"{split}/{plane}/NNNN.npy")
        for f in files:
            volume = np.load(f, mmap_mode="r")
            if volume.ndim != 3:
                raise DatasetNotFoundError.expected("mrnet", root_p, f"(slices, H, W) arrays in {split}/{plane}/",
                                                    found=f"shape {volume.shape} in {f.name}")
            for s in imaging.slice_indices(volume.shape[0], per_plane):
                ids.append(f"{split}/{plane}/{f.stem}/{s}")
                images.append(imaging.encode_png(imaging.to_uint8(imaging.normalise_mr(volume[s]))
                                                 if volume.dtype != np.uint8 else np.ascontiguousarray(volume[s])))
                exams.append(f.stem)
                views.append(plane)
    return ImagePool(f"mrnet:{root}:{split}", tuple(ids), images), exams, views


@register_adapter("mrnet")
def mrnet(root: Path, subtask: Subtask, split: str = "valid", planes: Sequence[str] = PLANES,
          slices_per_plane: int = 3) -> Examples:
    if subtask.kind != "binary" or subtask.id not in LABEL_FILES:
        raise ValueError(f"mrnet serves the binary subtasks {sorted(LABEL_FILES)}, not {subtask.id}")
    if split not in ("train", "valid") or set(planes) - set(PLANES):
        raise ValueError(f"mrnet: split in (train, valid) and planes among {PLANES}, got {split!r}, {planes}")
    root = Path(root)
    label_file = require_file("mrnet", root, f"{split}-{LABEL_FILES[subtask.id]}.csv")
    labels = {row[0].strip(): int(row[1]) for row in read_csv("mrnet", root, label_file, header=False, delimiter=",")}
    files = [f for p in planes for f in sorted((root / split / p).glob("*.npy"))]  # not the label file: one pool
    pool, exams, views = _pool(str(root.resolve()), split, tuple(planes), int(slices_per_plane), stamp(files))
    if missing := sorted({e for e in exams if e not in labels}):
        raise DatasetNotFoundError.expected("mrnet", root, f"labels of exams {missing[:5]} in {label_file.name}", found="none")
    y = np.asarray([labels[e] for e in exams])
    return Examples(pool, np.arange(len(pool)), y, subtask.classes, None,
                    {"exam": np.asarray(exams, dtype=object), "view": np.asarray(views, dtype=object)},
                    cases=np.asarray(exams, dtype=object), units=np.asarray([f"{split}/{e}" for e in exams], dtype=object),
                    levels=np.asarray(views, dtype=object))
