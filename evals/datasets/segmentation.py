"""Organ-segmentation datasets -> stage 2 (organs in a slice, CT view) and stage 3 (organ quadrant).

Each becomes a `common.SliceSet` (one pool per dataset and options, shared by all its subtasks); see
`common` for how presence (mask >= `min_organ_fraction` of the slice) and quadrants (mask centroid,
`curriculum.phases.region_of`) are derived. Common options: `max_cases` (first N cases in name
order), `max_side` (longest image side kept, default 512), `min_organ_fraction` (default 0.002).

chaos_ct / chaos_mr — CHAOS challenge (Kavur et al. 2021), the published `CHAOS_Train_Sets.zip`:
    <root>/Train_Sets/CT/<case>/DICOM_anon/*.dcm          axial CT slices
    <root>/Train_Sets/CT/<case>/Ground/liver_GT_*.png      liver mask per slice (255 = liver)
    <root>/Train_Sets/MR/<case>/T2SPIR/DICOM_anon/*.dcm + T2SPIR/Ground/*.png
    <root>/Train_Sets/MR/<case>/T1DUAL/DICOM_anon/{InPhase,OutPhase}/*.dcm + T1DUAL/Ground/*.png
  (`<root>` may also be the Train_Sets folder itself.) Slices and masks are paired in file-name
  order (the order CHAOS's own evaluation code uses). MR masks are grey levels: liver 63 (55-70),
  right kidney 126 (110-135), left kidney 189 (175-200), spleen 252 (240-255). Options:
  `slices_per_case` (default 6, evenly spaced in the central 60% of each series), `window` (CT,
  default "abdomen"), MR `sequences` (default T2SPIR and T1DUAL) and `t1_phase` (default InPhase).

amos — AMOS 2022 (Ji et al.), nnU-Net style:
    <root>/dataset.json       "labels": {"0": "background", "1": "spleen", ...} (name -> id also accepted)
    <root>/imagesTr/amos_NNNN.nii.gz, <root>/labelsTr/amos_NNNN.nii.gz  (also imagesVa/labelsVa)
  Cases amos_0001-0500 are CT, higher numbers MR (AMOS's numbering); `modality="CT"` (default) keeps
  CT. Options: `splits` (default ("Tr",)), `views`, `slices_per_view` (default 3).

totalseg — TotalSegmentator CT (Wasserthal et al. 2023, Zenodo release):
    <root>/sNNNN/ct.nii.gz, <root>/sNNNN/segmentations/<structure>.nii.gz, optional <root>/meta.csv
  Structures used (others ignored): liver, spleen, stomach, aorta, heart (and heart_*), kidney_left/
  kidney_right, urinary_bladder -> bladder, vertebrae_* -> spine, lung_*_left/right -> left/right lung,
  brain. Options: `split` (keep meta.csv rows with that `split`, e.g. "test"), `views`, `slices_per_view`.

ctorg — CT-ORG (Rister et al. 2020, TCIA):
    <root>/**/volume-N.nii.gz with labels-N.nii.gz next to it; label ids 1 liver, 2 bladder, 3 lungs,
    4 kidneys, 5 bone, 6 brain. "bone" is the whole skeleton and is not queried (no prompt organ).
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from radisim.platform.data import imaging

from ..tasks import Subtask
from .base import DatasetNotFoundError, Examples, register_adapter
from .common import (
    DEFAULT_MAX_SIDE,
    DEFAULT_MIN_ORGAN_FRACTION,
    SliceSet,
    SliceSetBuilder,
    add_volume,
    read_csv,
    read_mask,
    slice_examples,
    stamp,
)

ALL_VIEWS = ("axial", "sagittal", "coronal")
NIFTI = "*.nii.gz"


def _case_dirs(path: Path, max_cases: int | None) -> list[Path]:
    dirs = sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    return dirs[:max_cases] if max_cases else dirs


# ------------------------------------------------------------------------------------------------ CHAOS

MR_GREY_LEVELS = {"liver": (55, 70), "right kidney": (110, 135), "left kidney": (175, 200), "spleen": (240, 255)}


def _chaos_root(root: Path, modality: str) -> Path:
    for base in (Path(root) / "Train_Sets", Path(root)):
        if (base / modality).is_dir():
            return base / modality
    raise DatasetNotFoundError.expected(
        f"chaos_{modality.lower()}", root, f"Train_Sets/{modality}/<case>/ (unzipped CHAOS_Train_Sets.zip)")


def _dicoms(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in (".dcm", "")) if directory.is_dir() else []


def _add_chaos_series(builder: SliceSetBuilder, name: str, root: Path, case: str, dicom_dir: Path, ground_dir: Path,
                      masks_of, slices_per_case: int, window: str) -> None:
    from PIL import Image

    dicoms = _dicoms(dicom_dir)
    grounds = sorted(p for p in ground_dir.glob("*.png")) if ground_dir.is_dir() else []
    if not dicoms or len(grounds) != len(dicoms):
        raise DatasetNotFoundError.expected(
            name, root, f"as many Ground/*.png masks as DICOM slices in {dicom_dir.relative_to(root)}",
            found=f"{len(dicoms)} slices and {len(grounds)} masks")
    for i in imaging.slice_indices(len(dicoms), slices_per_case):
        image, meta = imaging.read_dicom(dicoms[i], window=window)
        ground = np.asarray(Image.open(grounds[i]).convert("L"))
        builder.add(f"{case}/{dicoms[i].name}",
                    image, meta.view or "axial", case, masks_of(ground), meta.modality)


@lru_cache(maxsize=4)
def _chaos_slices(modality: str, root: str, key: tuple) -> SliceSet:
    opts = dict(key)
    name = f"chaos_{modality.lower()}"
    base = _chaos_root(Path(root), modality)
    builder = SliceSetBuilder(name, opts["max_side"], opts["min_organ_fraction"])
    for case_dir in _case_dirs(base, opts["max_cases"]):
        case = f"{modality}/{case_dir.name}"
        if modality == "CT":
            _add_chaos_series(builder, name, Path(root), case, case_dir / "DICOM_anon", case_dir / "Ground",
                              lambda g: {"liver": g > 127}, opts["slices_per_case"], opts["window"])
            continue
        for sequence in opts["sequences"]:
            dicom_dir = case_dir / sequence / "DICOM_anon"
            if sequence == "T1DUAL":
                dicom_dir = dicom_dir / opts["t1_phase"]
            masks_of = lambda g: {o: (g >= lo) & (g <= hi) for o, (lo, hi) in MR_GREY_LEVELS.items()}  # noqa: E731
            _add_chaos_series(builder, name, Path(root), f"{case}/{sequence}", dicom_dir,
                              case_dir / sequence / "Ground", masks_of, opts["slices_per_case"], opts["window"])
    return builder.build(Path(root), f"Train_Sets/{modality}/<case>/... with DICOM_anon/ and Ground/")


def _chaos(modality: str, root: Path, subtask: Subtask, slices_per_case: int, window: str, max_cases: int | None,
           max_side: int | None, min_organ_fraction: float, sequences: Sequence[str] = ("T2SPIR", "T1DUAL"),
           t1_phase: str = "InPhase") -> Examples:
    key = (("slices_per_case", int(slices_per_case)), ("window", window), ("max_cases", max_cases),
           ("max_side", max_side), ("min_organ_fraction", float(min_organ_fraction)),
           ("sequences", tuple(sequences)), ("t1_phase", t1_phase),
           ("stamp", stamp(sorted(p for p in _chaos_root(root, modality).rglob("*") if p.is_file()))))
    slices = _chaos_slices(modality, str(Path(root).resolve()), key)
    return slice_examples(f"chaos_{modality.lower()}", root, slices, subtask)


@register_adapter("chaos_ct")
def chaos_ct(root: Path, subtask: Subtask, slices_per_case: int = 6, window: str = "abdomen", max_cases: int | None = None,
             max_side: int | None = DEFAULT_MAX_SIDE, min_organ_fraction: float = DEFAULT_MIN_ORGAN_FRACTION) -> Examples:
    return _chaos("CT", root, subtask, slices_per_case, window, max_cases, max_side, min_organ_fraction)


@register_adapter("chaos_mr")
def chaos_mr(root: Path, subtask: Subtask, slices_per_case: int = 6, sequences: Sequence[str] = ("T2SPIR", "T1DUAL"),
             t1_phase: str = "InPhase", max_cases: int | None = None, max_side: int | None = DEFAULT_MAX_SIDE,
             min_organ_fraction: float = DEFAULT_MIN_ORGAN_FRACTION) -> Examples:
    return _chaos("MR", root, subtask, slices_per_case, imaging.DEFAULT_CT_WINDOW, max_cases, max_side,
                  min_organ_fraction, sequences, t1_phase)


# ------------------------------------------------------------------------------------- NIfTI datasets


def _nifti_options(views, slices_per_view, max_cases, max_side, min_organ_fraction, window) -> tuple:
    bad = set(views) - set(ALL_VIEWS)
    if bad:
        raise ValueError(f"views must be among {ALL_VIEWS}, got {sorted(bad)}")
    return (("views", tuple(views)), ("slices_per_view", int(slices_per_view)), ("max_cases", max_cases),
            ("max_side", max_side), ("min_organ_fraction", float(min_organ_fraction)), ("window", window))


def _builder(name: str, opts: dict) -> SliceSetBuilder:
    return SliceSetBuilder(name, opts["max_side"], opts["min_organ_fraction"])


# AMOS ------------------------------------------------------------------------------------------------

AMOS_ORGANS = {"spleen": "spleen", "right kidney": "right kidney", "left kidney": "left kidney", "liver": "liver",
               "stomach": "stomach", "aorta": "aorta", "arota": "aorta", "bladder": "bladder",
               "urinary bladder": "bladder"}
AMOS_FIRST_MR_CASE = 501


def _amos_labels(root: Path) -> dict[int, str]:
    path = Path(root) / "dataset.json"
    if not path.is_file():
        raise DatasetNotFoundError.expected("amos", root, "dataset.json (with the label names)")
    labels = json.loads(path.read_text()).get("labels")
    if not isinstance(labels, dict) or not labels:
        raise DatasetNotFoundError.expected("amos", root, 'a "labels" mapping in dataset.json', found="none")
    pairs = labels.items() if all(str(k).isdigit() for k in labels) else ((v, k) for k, v in labels.items())
    out = {}
    for label_id, label_name in pairs:
        organ = AMOS_ORGANS.get(str(label_name).strip().lower().replace("_", " "))
        if organ:
            out[int(label_id)] = organ
    return out


def _amos_case_modality(image: Path) -> str:
    digits = re.findall(r"\d+", image.name)
    return "MR" if digits and int(digits[-1]) >= AMOS_FIRST_MR_CASE else "CT"


@lru_cache(maxsize=2)
def _amos_slices(root: str, key: tuple) -> SliceSet:
    opts = dict(key)
    root_p = Path(root)
    labels = _amos_labels(root_p)
    builder = _builder("amos", opts)
    images = [p for split in opts["splits"] for p in sorted((root_p / f"images{split}").glob(NIFTI))]
    images = [p for p in images if _amos_case_modality(p) == opts["modality"]][: opts["max_cases"] or None]
    for image in images:
        label_path = image.parent.parent / image.parent.name.replace("images", "labels") / image.name
        if not label_path.is_file():
            raise DatasetNotFoundError.expected("amos", root_p, f"{label_path.relative_to(root_p)} (labels of {image.name})")

        def masks(label_path=label_path):
            volume = read_mask(label_path)
            out: dict[str, np.ndarray] = {}
            for label_id, organ in labels.items():
                out[organ] = out.get(organ, False) | (volume == label_id)
            return out

        add_volume(builder, image.name.split(".")[0], image, masks, opts["modality"], opts["views"],
                   opts["slices_per_view"], opts["window"])
    return builder.build(root_p, f"images{{{','.join(opts['splits'])}}}/amos_*.nii.gz ({opts['modality']} cases) with labels")


@register_adapter("amos")
def amos(root: Path, subtask: Subtask, splits: Sequence[str] = ("Tr",), modality: str = "CT",
         views: Sequence[str] = ALL_VIEWS, slices_per_view: int = 3, window: str = "abdomen",
         max_cases: int | None = None, max_side: int | None = DEFAULT_MAX_SIDE,
         min_organ_fraction: float = DEFAULT_MIN_ORGAN_FRACTION) -> Examples:
    root = Path(root)
    if not any((root / f"images{s}").is_dir() for s in splits):
        raise DatasetNotFoundError.expected("amos", root, f"images{splits[0]}/amos_*.nii.gz and labels{splits[0]}/")
    files = sorted(f for s in splits for d in (f"images{s}", f"labels{s}") for f in (root / d).glob(NIFTI))
    key = _nifti_options(views, slices_per_view, max_cases, max_side, min_organ_fraction, window) + (
        ("splits", tuple(splits)), ("modality", modality), ("stamp", stamp(files)))
    return slice_examples("amos", root, _amos_slices(str(root.resolve()), key), subtask)


# TotalSegmentator -------------------------------------------------------------------------------------


def totalseg_organ(structure: str) -> str | None:
    """TotalSegmentator structure file stem -> prompt organ (None: not used)."""
    s = structure.lower()
    if s in ("liver", "spleen", "stomach", "aorta", "heart", "brain"):
        return s
    if s.startswith("heart_"):
        return "heart"
    if s in ("kidney_left", "kidney_right"):
        return f"{s.split('_')[1]} kidney"
    if s == "urinary_bladder":
        return "bladder"
    if s.startswith("vertebrae_"):
        return "spine"
    if s.startswith("lung_") and s.rsplit("_", 1)[-1] in ("left", "right"):
        return f"{s.rsplit('_', 1)[-1]} lung"
    return None


def _totalseg_cases(root: Path, split: str | None, max_cases: int | None) -> list[Path]:
    cases = sorted(p for p in root.glob("s*") if (p / "ct.nii.gz").is_file())
    if split is not None:
        meta = root / "meta.csv"
        if not meta.is_file():
            raise DatasetNotFoundError.expected("totalseg", root, f"meta.csv (to select split={split!r})")
        keep = {r["image_id"] for r in read_csv("totalseg", root, meta, ("image_id", "split")) if r["split"] == split}
        cases = [c for c in cases if c.name in keep]
    if not cases:
        raise DatasetNotFoundError.expected("totalseg", root, "sNNNN/ct.nii.gz with sNNNN/segmentations/*.nii.gz"
                                            + (f" (split {split!r} in meta.csv)" if split else ""))
    return cases[:max_cases] if max_cases else cases


@lru_cache(maxsize=2)
def _totalseg_slices(root: str, key: tuple) -> SliceSet:
    opts = dict(key)
    builder = _builder("totalseg", opts)
    for case in _totalseg_cases(Path(root), opts["split"], opts["max_cases"]):
        def masks(case=case):
            out: dict[str, np.ndarray] = {}
            for path in sorted((case / "segmentations").glob(NIFTI)):
                organ = totalseg_organ(path.name.split(".")[0])
                if organ:
                    out[organ] = out.get(organ, False) | (read_mask(path) > 0)
            return out

        add_volume(builder, case.name, case / "ct.nii.gz", masks, "CT", opts["views"], opts["slices_per_view"], opts["window"])
    return builder.build(Path(root), "sNNNN/ct.nii.gz")


@register_adapter("totalseg")
def totalseg(root: Path, subtask: Subtask, split: str | None = None, views: Sequence[str] = ALL_VIEWS,
             slices_per_view: int = 3, window: str = "soft_tissue", max_cases: int | None = None,
             max_side: int | None = DEFAULT_MAX_SIDE, min_organ_fraction: float = DEFAULT_MIN_ORGAN_FRACTION) -> Examples:
    root = Path(root)
    cases = _totalseg_cases(root, split, max_cases)
    files = [f for c in cases for f in [c / "ct.nii.gz", *sorted((c / "segmentations").glob(NIFTI))]]
    key = _nifti_options(views, slices_per_view, max_cases, max_side, min_organ_fraction, window) + (
        ("split", split), ("stamp", stamp(files)))
    return slice_examples("totalseg", root, _totalseg_slices(str(root.resolve()), key), subtask)


# CT-ORG ----------------------------------------------------------------------------------------------

CTORG_LABELS = {1: "liver", 2: "bladder", 3: "lungs", 4: "kidneys", 6: "brain"}  # 5 = bone: not queried


def _ctorg_pairs(root: Path, max_cases: int | None) -> list[tuple[Path, Path]]:
    volumes = sorted(root.rglob("volume-*.nii*"), key=lambda p: int(re.findall(r"\d+", p.name)[0]))
    pairs = []
    for v in volumes:
        n = re.findall(r"\d+", v.name)[0]
        labels = [p for p in (v.parent / f"labels-{n}.nii.gz", v.parent / f"labels-{n}.nii") if p.is_file()]
        if not labels:
            raise DatasetNotFoundError.expected("ctorg", root, f"labels-{n}.nii.gz next to {v.relative_to(root)}")
        pairs.append((v, labels[0]))
    if not pairs:
        raise DatasetNotFoundError.expected("ctorg", root, "volume-N.nii.gz and labels-N.nii.gz (CT-ORG OrganSegmentations)")
    return pairs[:max_cases] if max_cases else pairs


@lru_cache(maxsize=2)
def _ctorg_slices(root: str, key: tuple) -> SliceSet:
    opts = dict(key)
    builder = _builder("ctorg", opts)
    for volume, labels in _ctorg_pairs(Path(root), opts["max_cases"]):
        def masks(labels=labels):
            lab = read_mask(labels)
            return {organ: lab == label_id for label_id, organ in CTORG_LABELS.items()}

        add_volume(builder, volume.name.split(".")[0], volume, masks, "CT", opts["views"], opts["slices_per_view"], opts["window"])
    return builder.build(Path(root), "volume-N.nii.gz")


@register_adapter("ctorg")
def ctorg(root: Path, subtask: Subtask, views: Sequence[str] = ALL_VIEWS, slices_per_view: int = 3,
          window: str = "soft_tissue", max_cases: int | None = None, max_side: int | None = DEFAULT_MAX_SIDE,
          min_organ_fraction: float = DEFAULT_MIN_ORGAN_FRACTION) -> Examples:
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError.expected("ctorg", root, "volume-N.nii.gz and labels-N.nii.gz")
    pairs = _ctorg_pairs(root, max_cases)
    key = _nifti_options(views, slices_per_view, max_cases, max_side, min_organ_fraction, window) + (
        ("stamp", stamp([f for pair in pairs for f in pair])),)
    return slice_examples("ctorg", root, _ctorg_slices(str(root.resolve()), key), subtask)
