"""Chest radiograph pneumonia datasets (stage 4, DR).

pneumoniamnist — MedMNIST v2 (Yang et al. 2023), the published NumPy archive:
    <root>/pneumoniamnist.npz   {train,val,test}_images (N, H, W) uint8, {train,val,test}_labels (N, 1);
                                label 0 normal, 1 pneumonia. MedMNIST+ sizes (pneumoniamnist_224.npz,
                                ...) are found too when the 28 px file is absent; option `file` picks one.
  Option `split`: "test" (default), "val", "train".

rsna_pneumonia — RSNA Pneumonia Detection Challenge (Kaggle, stage 2):
    <root>/stage_2_train_labels.csv   patientId,x,y,width,height,Target (one row per box; Target 0 rows
                                      have empty boxes)
    <root>/stage_2_train_images/<patientId>.dcm
  A patient is "pneumonia" iff any of its rows has Target 1 (negatives include "No Lung Opacity / Not
  Normal"). Options: `max_images` (an evenly spread, deterministic subset of patients in id order),
  `max_side` (default 512: the 1024 px radiographs are downsized when read).

Cases: RSNA's patientId (one radiograph per patient in stage 2); MedMNIST publishes no patient ids,
so each PneumoniaMNIST image is its own case.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from radisim.platform.data import imaging

from ..tasks import Subtask
from .base import DatasetNotFoundError, Examples, ImagePool, register_adapter
from .common import DEFAULT_MAX_SIDE, pick_evenly, png, read_csv, require_dir, require_file, stamp

MEDMNIST_SPLITS = ("train", "val", "test")


def _binary_only(dataset: str, subtask: Subtask) -> None:
    if subtask.kind != "binary":
        raise ValueError(f"{dataset} serves binary subtasks, not {subtask.id} ({subtask.kind})")


def _medmnist_file(root: Path, file: str | None) -> Path:
    if file is not None:
        return require_file("pneumoniamnist", root, file)
    default = Path(root) / "pneumoniamnist.npz"
    if default.is_file():
        return default
    sized = sorted(Path(root).glob("pneumoniamnist_*.npz"))
    if not sized:
        raise DatasetNotFoundError.expected("pneumoniamnist", root, "pneumoniamnist.npz (MedMNIST)")
    return sized[0]


@lru_cache(maxsize=2)
def _medmnist_pool(path: str, split: str, key: tuple) -> tuple[ImagePool, np.ndarray]:
    with np.load(path) as npz:
        needed = (f"{split}_images", f"{split}_labels")
        if not set(needed) <= set(npz.files):
            raise DatasetNotFoundError.expected("pneumoniamnist", Path(path).parent, f"arrays {list(needed)} in {Path(path).name}",
                                                found=f"arrays {sorted(npz.files)}")
        images, labels = npz[needed[0]], npz[needed[1]].reshape(-1)
    ids = tuple(f"{split}/{i}" for i in range(len(images)))
    pool = ImagePool(f"pneumoniamnist:{path}:{split}", ids, [imaging.encode_png(imaging.to_uint8(im) if im.ndim == 2 else
                                                                               np.asarray(im.mean(-1), np.uint8)) for im in images])
    return pool, labels.astype(np.int64)


@register_adapter("pneumoniamnist")
def pneumoniamnist(root: Path, subtask: Subtask, split: str = "test", file: str | None = None) -> Examples:
    _binary_only("pneumoniamnist", subtask)
    if split not in MEDMNIST_SPLITS:
        raise ValueError(f"pneumoniamnist: split must be one of {MEDMNIST_SPLITS}, got {split!r}")
    path = _medmnist_file(Path(root), file)
    pool, labels = _medmnist_pool(str(path.resolve()), split, stamp([path]))
    return Examples(pool, np.arange(len(pool)), labels, subtask.classes, cases=np.asarray(pool.image_ids, dtype=object))


RSNA_LABELS = "stage_2_train_labels.csv"
RSNA_IMAGES = "stage_2_train_images"


@lru_cache(maxsize=2)
def _rsna_pool(root: str, max_images: int | None, max_side: int | None, key: tuple) -> tuple[ImagePool, np.ndarray]:
    root_p = Path(root)
    rows = read_csv("rsna_pneumonia", root_p, root_p / RSNA_LABELS, ("patientId", "Target"))
    target: dict[str, int] = {}
    for r in rows:
        target[r["patientId"]] = max(target.get(r["patientId"], 0), int(float(r["Target"] or 0)))
    patients = sorted(target)
    patients = [patients[i] for i in pick_evenly(len(patients), max_images)]
    images = []
    for pid in patients:
        path = root_p / RSNA_IMAGES / f"{pid}.dcm"
        if not path.is_file():
            raise DatasetNotFoundError.expected("rsna_pneumonia", root_p, f"{RSNA_IMAGES}/{pid}.dcm (listed in {RSNA_LABELS})")
        image, _ = imaging.read_dicom(path)
        images.append(png(image, max_side))
    return ImagePool(f"rsna_pneumonia:{root}", tuple(patients), images), np.asarray([target[p] for p in patients])


@register_adapter("rsna_pneumonia")
def rsna_pneumonia(root: Path, subtask: Subtask, max_images: int | None = None, max_side: int | None = DEFAULT_MAX_SIDE) -> Examples:
    _binary_only("rsna_pneumonia", subtask)
    labels = require_file("rsna_pneumonia", root, RSNA_LABELS, f"{RSNA_LABELS} (patientId,x,y,width,height,Target)")
    images = require_dir("rsna_pneumonia", root, RSNA_IMAGES, f"{RSNA_IMAGES}/<patientId>.dcm")
    pool, y = _rsna_pool(str(Path(root).resolve()), max_images, max_side, stamp([labels, images]))
    return Examples(pool, np.arange(len(pool)), y, subtask.classes, cases=np.asarray(pool.image_ids, dtype=object))
