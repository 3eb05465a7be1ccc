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

lits — LiTS liver tumours as distributed in MedIMeta-style folders (2-D axial slices, 224 px):
    <root>/images/<file>.png|jpg|tiff            the slices
    <root>/<task>.csv                            image path (relative to root or to images/) + label
  The CSV is `csv` (default: the only *.csv in root); its image column `image_column` (default the
  first of filepath, image, image_path, path, file) and label column `label_column` (default the first
  of liver_tumor, tumor, label). Labels: 0/1, no/yes, false/true, or the class names.
"""
from __future__ import annotations

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
    image_file_bytes,
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


def _binary_examples(name: str, key_root: str, files_and_labels: list[tuple[str, bytes, int]], subtask: Subtask) -> Examples:
    ids, images, y = zip(*files_and_labels)
    return Examples(ImagePool(f"{name}:{key_root}", tuple(ids), list(images)), np.arange(len(ids)), np.asarray(y), subtask.classes)


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
            out.append((f"{folder}/{name}", path.read_bytes(), label))
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
            out.append((f"{patient:03d}/{number}", png(imaging.window_ct(sl, window), max_side), label))
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
                out.append((f"{patient.name}/{indices[j]}", png(image, max_side), label))
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
    if len({y for *_, y in data}) < 2:
        raise DatasetNotFoundError.expected("ct_lymph_nodes", root, "slices near and far from annotated nodes",
                                            found=f"only one class (margin={margin}, gap={gap})")
    return _binary_examples("ct_lymph_nodes", str(root.resolve()), data, subtask)


# ----------------------------------------------------------------------------------------- LiTS (MedIMeta)

IMAGE_COLUMNS = ("filepath", "image", "image_path", "path", "file")
LITS_LABEL_COLUMNS = ("liver_tumor", "tumor", "label")
TRUE_WORDS, FALSE_WORDS = {"1", "yes", "true", "y", "tumor", "tumour"}, {"0", "no", "false", "n", "none"}


def _first_present(columns: list[str], wanted: tuple[str, ...], option: str | None) -> str | None:
    if option is not None:
        return option if option in columns else None
    return next((c for c in wanted if c in columns), None)


@lru_cache(maxsize=2)
def _lits(root: str, csv_name: str, image_column: str | None, label_column: str | None, classes: tuple[str, ...], key: tuple):
    root_p = Path(root)
    rows = read_csv("lits", root_p, root_p / csv_name)
    columns = list(rows[0]) if rows else []
    img_col = _first_present(columns, IMAGE_COLUMNS, image_column)
    lab_col = _first_present(columns, LITS_LABEL_COLUMNS, label_column)
    if img_col is None or lab_col is None:
        raise DatasetNotFoundError.expected("lits", root_p, f"an image column ({image_column or IMAGE_COLUMNS}) and a label "
                                            f"column ({label_column or LITS_LABEL_COLUMNS}) in {csv_name}", found=f"columns {columns}")
    out = []
    for i, r in enumerate(rows):
        value = r[lab_col].strip().lower()
        if value in TRUE_WORDS or value == classes[1].lower():
            label = 1
        elif value in FALSE_WORDS or value == classes[0].lower():
            label = 0
        else:
            raise DatasetNotFoundError.expected("lits", root_p, f"0/1 or {list(classes)} in column {lab_col} of {csv_name}",
                                                found=f"{r[lab_col]!r} in row {i + 1}")
        path = next((p for p in (root_p / r[img_col], root_p / "images" / r[img_col]) if p.is_file()), None)
        if path is None:
            raise DatasetNotFoundError.expected("lits", root_p, f"images/{r[img_col]} (row {i + 1} of {csv_name})")
        out.append((str(path.relative_to(root_p)), image_file_bytes(path), label))
    if not out:
        raise DatasetNotFoundError.expected("lits", root_p, f"rows in {csv_name}")
    return out


@register_adapter("lits")
def lits(root: Path, subtask: Subtask, csv: str | None = None, image_column: str | None = None,
         label_column: str | None = None) -> Examples:
    _binary_only("lits", subtask)
    root = Path(root)
    require_dir("lits", root, "images", "images/*.png (MedIMeta-style LiTS slices)")
    if csv is None:
        found = sorted(p.name for p in root.glob("*.csv"))
        if len(found) != 1:
            raise DatasetNotFoundError.expected("lits", root, "one task CSV (image path + liver_tumor label); pass csv=<file>",
                                                found=f"{found or 'no CSV'}")
        csv = found[0]
    csv_path = require_file("lits", root, csv)
    data = _lits(str(root.resolve()), csv, image_column, label_column, subtask.classes,
                 stamp([csv_path, root / "images"]))
    return _binary_examples("lits", f"{root.resolve()}:{csv}", data, subtask)
