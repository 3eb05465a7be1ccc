"""CT diagnosis datasets (stage 4): COVID-19, intracranial haemorrhage, lymph nodes, liver tumour.

covid_ct — UCSD-AI4H COVID-CT (Zhao et al. 2020, github.com/UCSD-AI4H/COVID-CT):
    <root>/Images-processed/CT_COVID/*.png|jpg        <root>/Images-processed/CT_NonCOVID/*.png|jpg
    <root>/Data-split/COVID/{train,val,test}CT_COVID.txt
    <root>/Data-split/NonCOVID/{train,val,test}CT_NonCOVID.txt      one image file name per line
  Option `split`: "test" (default), "val", "train" (files listed in the split txt) or "all" (every image).

ct_ich — PhysioNet "CT images for intracranial hemorrhage detection and segmentation" (Hssayeni 2020):
    <root>/ct_scans/NNN.nii        one head CT per patient (HU), axial slices along the stored 3rd axis
    <root>/masks/NNN.nii           haemorrhage masks (not needed for the diagnosis subtask)
    <root>/hemorrhage_diagnosis_raw_ct.csv  PatientNumber,SliceNumber,...,No_Hemorrhage,...
  One example per CSV row: the axial slice SliceNumber (1-based, in stored order; mapped through the
  RAS reorientation), "hemorrhage" iff No_Hemorrhage == 0, brain window (W80/L40) by default.
  Option `max_slices_per_patient` (evenly spread).

ct_lymph_nodes — TCIA "CT Lymph Nodes" (Roth et al. 2014, 90 mediastinal + 86 abdominal CTs):
    <root>/<ABD|MED>_LYMPH_NNN/**/*.dcm         the patient's CT series (NBIA download layout; the
                                               "CT Lymph Nodes/" folder level may be kept)
    <root>/MED_ABD_LYMPH_ANNOTATIONS/<patient>/<patient>_lymphnodes_indices.txt
                                               one enlarged node per line: voxel x y z (0-based; z
                                               indexes the series sorted by ImagePositionPatient along
                                               the slice normal, ascending, as ITK reads it)
  What we derive (the dataset has no per-slice labels): an axial slice within `margin` (default 2)
  slices of an annotated node centre is "enlarged lymph node"; slices of the same patient at least
  `gap` (default 10) slices from every node are "normal lymph nodes". Per patient `slices_per_patient`
  (default 4) of each, evenly spread. Soft-tissue window (W400/L40). Option `annotations` = another
  folder holding the per-patient annotation folders.

lits — LiTS, the Liver Tumor Segmentation Benchmark (Bilic et al. 2023, the CodaLab release
    competitions.codalab.org/competitions/17094, "Training Batch 1" + "Training Batch 2", 131 CTs):
    <root>/Training Batch 1/volume-N.nii, segmentation-N.nii     (N = 0..27)
    <root>/Training Batch 2/volume-N.nii, segmentation-N.nii     (N = 28..130)
  (`.nii.gz`, a flat <root>/volume-N.nii + segmentation-N.nii, or any sub-folder also work.)
  Segmentation labels: 0 background, 1 liver, 2 tumour. The paper took LiTS via MedIMeta, whose LiTS
  sets label organs, not tumours, so the diagnosis subtask is derived from LiTS's own masks: an axial
  slice through the liver (>= `min_liver_pixels` of label 1 or 2) is "liver tumor" when it holds
  >= `min_tumor_pixels` of label 2, "no liver tumor" when it holds none; per volume
  `slices_per_volume` (default 4) of each, evenly spread; abdomen window (W400/L50) by default.
  The case is the volume (one patient's CT).

Cases (the bootstrap's unit): COVID-CT publishes patient ids only in a spreadsheet of the COVID
images, so each image is its own case; CT-ICH the patient number; CT Lymph Nodes the patient folder.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from radisim.platform.data import imaging

from ..tasks import Subtask
from .base import DatasetNotFoundError, Examples, ImagePool, register_adapter
from .common import (
    DEFAULT_MAX_SIDE,
    IMAGE_SUFFIXES,
    canonical_index,
    pick_evenly,
    png,
    read_csv,
    require_dir,
    require_file,
    stamp,
)


def _binary_only(dataset: str, subtask: Subtask) -> None:
    if subtask.kind != "binary":
        raise ValueError(f"{dataset} serves binary subtasks, not {subtask.id} ({subtask.kind})")


def _binary_examples(name: str, key_root: str, rows: list[tuple[str, bytes, int, str]], subtask: Subtask) -> Examples:
    """Examples from (image id, image bytes, label, case id) rows."""
    ids, images, y, cases = zip(*rows)
    return Examples(ImagePool(f"{name}:{key_root}", tuple(ids), list(images)), np.arange(len(ids)), np.asarray(y),
                    subtask.classes, cases=np.asarray(cases, dtype=object))


# ------------------------------------------------------------------------------------------------ COVID-CT

COVID_FOLDERS = (("CT_NonCOVID", "NonCOVID", 0), ("CT_COVID", "COVID", 1))


@lru_cache(maxsize=2)
def _covid(root: str, split: str, key: tuple) -> list[tuple[str, bytes, int]]:
    root_p = Path(root)
    out = []
    for folder, split_dir, label in COVID_FOLDERS:
        image_dir = require_dir("covid_ct", root_p, f"Images-processed/{folder}", f"Images-processed/{folder}/*.png")
        if split == "all":
            names = sorted(p.name for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            listing = require_file("covid_ct", root_p, f"Data-split/{split_dir}/{split}CT_{split_dir}.txt")
            names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        for name in names:
            path = image_dir / name
            if not path.is_file():
                raise DatasetNotFoundError.expected("covid_ct", root_p, f"Images-processed/{folder}/{name} (listed in the {split} split)")
            out.append((f"{folder}/{name}", path.read_bytes(), label, f"{folder}/{name}"))
    if not out:
        raise DatasetNotFoundError.expected("covid_ct", root_p, f"images of the {split} split")
    return out


@register_adapter("covid_ct")
def covid_ct(root: Path, subtask: Subtask, split: str = "test") -> Examples:
    _binary_only("covid_ct", subtask)
    if split not in ("train", "val", "test", "all"):
        raise ValueError(f"covid_ct: split must be train, val, test or all, got {split!r}")
    files = sorted(p for p in Path(root).rglob("*") if p.is_file()) if Path(root).is_dir() else []
    return _binary_examples("covid_ct", f"{Path(root).resolve()}:{split}", _covid(str(Path(root).resolve()), split, stamp(files)), subtask)


# -------------------------------------------------------------------------------------------------- CT-ICH

ICH_CSV = "hemorrhage_diagnosis_raw_ct.csv"


@lru_cache(maxsize=2)
def _ct_ich(root: str, window: str, max_per_patient: int | None, max_side: int | None, key: tuple) -> list[tuple[str, bytes, int]]:
    root_p = Path(root)
    rows = read_csv("ct_ich", root_p, root_p / ICH_CSV, ("PatientNumber", "SliceNumber", "No_Hemorrhage"))
    by_patient: dict[int, list[dict]] = {}
    for r in rows:
        by_patient.setdefault(int(float(r["PatientNumber"])), []).append(r)
    out = []
    for patient, prow in sorted(by_patient.items()):
        path = next((p for p in (root_p / "ct_scans" / f"{patient:03d}.nii", root_p / "ct_scans" / f"{patient:03d}.nii.gz")
                     if p.is_file()), None)
        if path is None:
            raise DatasetNotFoundError.expected("ct_ich", root_p, f"ct_scans/{patient:03d}.nii (patient {patient} in {ICH_CSV})")
        volume, affine = imaging.read_nifti(path)
        prow = sorted(prow, key=lambda r: int(float(r["SliceNumber"])))
        for i in pick_evenly(len(prow), max_per_patient):
            number = int(float(prow[i]["SliceNumber"]))
            axis, index = canonical_index(path, 2, number - 1)
            view = {0: "sagittal", 1: "coronal", 2: "axial"}[axis]
            (sl,) = imaging.nifti_slices(volume, affine, view, indices=[index])
            label = int(int(float(prow[i]["No_Hemorrhage"])) == 0)
            out.append((f"{patient:03d}/{number}", png(imaging.window_ct(sl, window), max_side), label, f"{patient:03d}"))
    return out


@register_adapter("ct_ich")
def ct_ich(root: Path, subtask: Subtask, window: str = "brain", max_slices_per_patient: int | None = None,
           max_side: int | None = DEFAULT_MAX_SIDE) -> Examples:
    _binary_only("ct_ich", subtask)
    csv_path = require_file("ct_ich", root, ICH_CSV, f"{ICH_CSV} (PatientNumber,SliceNumber,...,No_Hemorrhage)")
    require_dir("ct_ich", root, "ct_scans", "ct_scans/NNN.nii")
    files = [csv_path, *sorted((Path(root) / "ct_scans").iterdir())]
    data = _ct_ich(str(Path(root).resolve()), window, max_slices_per_patient, max_side, stamp(files))
    return _binary_examples("ct_ich", str(Path(root).resolve()), data, subtask)


# ----------------------------------------------------------------------------------------- CT Lymph Nodes

LYMPH_ANNOTATIONS = "MED_ABD_LYMPH_ANNOTATIONS"


def _patients(root: Path) -> list[Path]:
    for base in (root / "CT Lymph Nodes", root):
        found = sorted(p for p in base.glob("*_LYMPH_*") if p.is_dir() and p.name != LYMPH_ANNOTATIONS) if base.is_dir() else []
        if found:
            return found
    raise DatasetNotFoundError.expected("ct_lymph_nodes", root, "<ABD|MED>_LYMPH_NNN/**/*.dcm patient folders")


def _sorted_series(files: list[Path]) -> list[Path]:
    """Slices in ITK's order: position along the slice normal, ascending (InstanceNumber as fallback)."""
    import pydicom

    keyed = []
    for f in files:
        ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        ipp, iop = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
        if ipp is not None and iop is not None:
            normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
            keyed.append((float(np.dot(normal, np.asarray(ipp, float))), f))
        else:
            keyed.append((float(ds.get("InstanceNumber", 0) or 0), f))
    return [f for _, f in sorted(keyed, key=lambda t: (t[0], str(t[1])))]


def _node_slices(path: Path) -> list[int]:
    zs = []
    for line in path.read_text().splitlines():
        parts = line.replace(",", " ").split()
        if len(parts) >= 3:
            zs.append(int(round(float(parts[2]))))
    return zs


@lru_cache(maxsize=2)
def _lymph(root: str, annotations: str, margin: int, gap: int, per_patient: int, max_side: int | None, key: tuple):
    root_p = Path(root)
    out = []
    for patient in _patients(root_p):
        ann = Path(annotations) / patient.name / f"{patient.name}_lymphnodes_indices.txt"
        if not ann.is_file():
            raise DatasetNotFoundError.expected("ct_lymph_nodes", Path(annotations),
                                                f"{patient.name}/{patient.name}_lymphnodes_indices.txt")
        series = _sorted_series(sorted(p for p in patient.rglob("*.dcm")))
        if not series:
            raise DatasetNotFoundError.expected("ct_lymph_nodes", root_p, f"{patient.name}/**/*.dcm")
        nodes = _node_slices(ann)
        dist = [min((abs(i - z) for z in nodes), default=10**9) for i in range(len(series))]
        positives = [i for i, d in enumerate(dist) if d <= margin]
        negatives = [i for i, d in enumerate(dist) if d >= gap]
        for label, indices in ((1, positives), (0, negatives)):
            for j in pick_evenly(len(indices), per_patient):
                image, _ = imaging.read_dicom(series[indices[j]], window="soft_tissue")
                out.append((f"{patient.name}/{indices[j]}", png(image, max_side), label, patient.name))
    return out


@register_adapter("ct_lymph_nodes")
def ct_lymph_nodes(root: Path, subtask: Subtask, annotations: str | None = None, margin: int = 2, gap: int = 10,
                   slices_per_patient: int = 4, max_side: int | None = DEFAULT_MAX_SIDE) -> Examples:
    _binary_only("ct_lymph_nodes", subtask)
    root = Path(root)
    ann = Path(annotations) if annotations else root / LYMPH_ANNOTATIONS
    require_dir("ct_lymph_nodes", ann.parent, ann.name, f"{ann.name}/<patient>/<patient>_lymphnodes_indices.txt")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    data = _lymph(str(root.resolve()), str(ann.resolve()), margin, gap, slices_per_patient, max_side, stamp(files))
    if len({row[2] for row in data}) < 2:
        raise DatasetNotFoundError.expected("ct_lymph_nodes", root, "slices near and far from annotated nodes",
                                            found=f"only one class (margin={margin}, gap={gap})")
    return _binary_examples("ct_lymph_nodes", str(root.resolve()), data, subtask)


# ----------------------------------------------------------------------------------------------- LiTS

LITS_LIVER, LITS_TUMOUR = 1, 2


def _lits_pairs(root: Path, max_volumes: int | None) -> list[tuple[str, Path, Path]]:
    """(case, volume file, segmentation file) in volume-number order."""
    volumes = sorted((p for p in root.rglob("volume-*.nii*") if re.fullmatch(r"volume-\d+\.nii(\.gz)?", p.name)),
                     key=lambda p: int(re.findall(r"\d+", p.name)[0]))
    pairs = []
    for v in volumes[: max_volumes or None]:
        n = re.findall(r"\d+", v.name)[0]
        seg = next((p for p in (v.parent / f"segmentation-{n}.nii", v.parent / f"segmentation-{n}.nii.gz") if p.is_file()), None)
        if seg is None:
            raise DatasetNotFoundError.expected("lits", root, f"segmentation-{n}.nii next to {v.relative_to(root)}")
        pairs.append((f"volume-{n}", v, seg))
    if not pairs:
        raise DatasetNotFoundError.expected("lits", root, "volume-N.nii with segmentation-N.nii (LiTS Training Batch 1/2)")
    return pairs


@lru_cache(maxsize=2)
def _lits(root: str, window: str, per_volume: int, min_liver: int, min_tumour: int, max_side: int | None, key: tuple):
    out = []
    for case, volume_path, seg_path in _lits_pairs(Path(root), dict(key)["max_volumes"]):
        volume, affine = imaging.read_nifti(volume_path)
        seg = np.rint(imaging.read_nifti(seg_path)[0]).astype(np.int16)
        if seg.shape != volume.shape:
            raise ValueError(f"lits {case}: segmentation shape {seg.shape} != volume shape {volume.shape}")
        tumour = (seg == LITS_TUMOUR).sum(axis=(0, 1))  # per axial slice (canonical axis 2)
        liver = (seg >= LITS_LIVER).sum(axis=(0, 1))
        through_liver = liver >= min_liver
        positives = np.flatnonzero(through_liver & (tumour >= min_tumour))
        negatives = np.flatnonzero(through_liver & (tumour == 0))
        for label, indices in ((1, positives), (0, negatives)):
            for j in pick_evenly(len(indices), per_volume):
                (sl,) = imaging.nifti_slices(volume, affine, "axial", indices=[int(indices[j])])
                out.append((f"{case}/{int(indices[j])}", png(imaging.window_ct(sl, window), max_side), label, case))
    if not out:
        raise DatasetNotFoundError.expected("lits", Path(root), "axial slices through the liver (segmentation label 1 or 2)")
    return out


@register_adapter("lits")
def lits(root: Path, subtask: Subtask, slices_per_volume: int = 4, window: str = "abdomen", min_liver_pixels: int = 50,
         min_tumor_pixels: int = 20, max_volumes: int | None = None, max_side: int | None = DEFAULT_MAX_SIDE) -> Examples:
    _binary_only("lits", subtask)
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError.expected("lits", root, "volume-N.nii with segmentation-N.nii (LiTS Training Batch 1/2)")
    pairs = _lits_pairs(root, max_volumes)
    key = (("max_volumes", max_volumes), ("stamp", stamp([f for _, v, s in pairs for f in (v, s)])))
    data = _lits(str(root.resolve()), window, int(slices_per_volume), int(min_liver_pixels), int(min_tumor_pixels), max_side, key)
    return _binary_examples("lits", str(root.resolve()), data, subtask)
