"""Bring-your-own labelled set: a CSV of image paths + label column(s), or class folders.

Registered as "labelled" and as the internal datasets of the paper, which nobody else can download:
internal_modality (stage 1), internal_brain_tumor, internal_meningioma (WHO grade),
internal_lung_adeno (adenocarcinoma subtype and IASLC grade). Layout, either

    <root>/labels.csv            (or `csv=<file>`; `root` may be the CSV itself)
        path,subtype,grade       image path relative to the CSV (PNG/JPEG/TIFF, DICOM, or NIfTI ->
        p01.dcm,invasive adenocarcinoma,2        its central axial slice), then label columns
        p02.png,adenocarcinoma in situ,          empty cell = no label for that subtask (row skipped)
or
    <root>/<class name>/*.png    one folder per class (`folders={class: folder}` to rename)

The label column defaults per subtask (`DEFAULT_LABEL_COLUMNS`, else "label"); `image_column`
defaults to "path" (or filepath/image/file). A cell matches a class by exact name, case-insensitively,
through `label_map={cell: class}`, or for graded classes by its number ("2", "II", "G2" -> "... grade 2").
An unmatched non-empty cell is an error naming the row. All subtasks reading one CSV share one pool.

Cases: the `case_column` (default the first of patient_id, patient, case_id, case, study_id present;
else each row is its own case) groups a patient's images for the bootstrap. Internal sets are patient
data, so image and case ids leave the adapter only as salted keys (`imaging.salted_key`, salt from
$RADISIM_PHI_SALT): predictions and logs never carry a file name or a patient number.

Windows and slices: `window` (a CT window name or (width, level); default per dataset in
`DEFAULT_WINDOWS`: "lung" for internal_lung_adeno, whose ground-glass component separates AIS/MIA from
invasive adenocarcinoma and vanishes in a soft-tissue window). For NIfTI images the axial slice is the
lesion's: a `lesion_slice` column (axial index in the stored file), else a `mask` column (a NIfTI mask,
the slice with the largest mask area), else the central slice.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..tasks import Subtask
from .base import DatasetNotFoundError, Examples, ImagePool, register_adapter
from radisim.platform.data import imaging

from .common import IMAGE_COLUMNS, image_file_bytes, read_csv, stamp
from .folder import read_image_folder

DEFAULT_CSV = "labels.csv"
CASE_COLUMNS = ("patient_id", "patient", "case_id", "case", "study_id")
#: dataset -> default window of its CT images (others: imaging.DEFAULT_CT_WINDOW)
DEFAULT_WINDOWS = {"internal_lung_adeno": "lung"}
#: subtask id -> label column of the CSV
DEFAULT_LABEL_COLUMNS = {
    "modality": "modality",
    "internal_brain_tumor_subtype": "subtype",
    "internal_meningioma_grade": "grade",
    "internal_lung_adeno_subtype": "subtype",
    "internal_lung_adeno_grade": "grade",
}
ROMAN = {"i": "1", "ii": "2", "iii": "3", "iv": "4"}


def _grade_number(text: str) -> str | None:
    m = re.fullmatch(r"(?:who\s*)?(?:grade\s*|g)?\s*(\d+|iv|iii|ii|i)", text.strip().lower())
    return None if m is None else ROMAN.get(m.group(1), m.group(1))


def match_class(cell: str, classes: tuple[str, ...], label_map: dict[str, str] | None = None) -> int | None:
    """Class index of a label cell, None if it matches nothing."""
    if label_map and cell in label_map:
        return classes.index(label_map[cell])
    lowered = {c.lower(): i for i, c in enumerate(classes)}
    if cell.strip().lower() in lowered:
        return lowered[cell.strip().lower()]
    number = _grade_number(cell)
    if number is not None:
        hits = [i for i, c in enumerate(classes) if _grade_number(c.lower().split("grade")[-1]) == number and "grade" in c.lower()]
        if len(hits) == 1:
            return hits[0]
    return None


def _lesion_slice(csv_dir: Path, row: dict[str, str], image: Path) -> int | None:
    """Axial slice (stored-file index) of the lesion: `lesion_slice`, else the `mask`'s largest slice."""
    if row.get("lesion_slice", "").strip():
        return int(float(row["lesion_slice"]))
    if row.get("mask", "").strip():
        import nibabel as nib

        mask = np.asarray(nib.load(str(csv_dir / row["mask"])).dataobj) > 0
        if mask.shape != nib.load(str(image)).shape:
            raise ValueError(f"mask {row['mask']} has shape {mask.shape}, image {image.name} another")
        return int(mask.sum(axis=(0, 1)).argmax()) if mask.any() else None
    return None


@lru_cache(maxsize=4)
def _csv_pool(csv_path: str, image_column: str | None, case_column: str | None, window: str | tuple,
              key: tuple) -> tuple[ImagePool, list[dict[str, str]], list[str]]:
    path = Path(csv_path)
    rows = read_csv("labelled", path.parent, path)
    columns = list(rows[0]) if rows else []
    column = image_column if image_column in columns else next((c for c in IMAGE_COLUMNS if c in columns), None)
    if column is None or (image_column and image_column not in columns):
        raise DatasetNotFoundError.expected("labelled", path.parent, f"an image column ({image_column or IMAGE_COLUMNS}) in {path.name}",
                                            found=f"columns {columns}")
    case_col = case_column if case_column else next((c for c in CASE_COLUMNS if c in columns), None)
    if case_col is not None and case_col not in columns:
        raise DatasetNotFoundError.expected("labelled", path.parent, f"a case column {case_col!r} in {path.name}",
                                            found=f"columns {columns}")
    ids, images, cases = [], [], []
    for i, row in enumerate(rows):
        image = path.parent / row[column]
        if not image.is_file():
            raise DatasetNotFoundError.expected("labelled", path.parent, f"{row[column]} (row {i + 1} of {path.name})")
        ids.append(f"img-{imaging.salted_key(row[column], kind='image')}")
        images.append(image_file_bytes(image, window=window, slice_index=_lesion_slice(path.parent, row, image)))
        case = row[case_col].strip() if case_col and row[case_col].strip() else row[column]
        cases.append(f"case-{imaging.salted_key(case, kind='case')}")
    return ImagePool(f"labelled:{csv_path}", tuple(ids), images), rows, cases


def read_labelled(name: str, root: Path, subtask: Subtask, csv: str | None = None, image_column: str | None = None,
                  label_column: str | None = None, label_map: dict[str, str] | None = None,
                  folders: dict[str, str] | None = None, case_column: str | None = None,
                  window: str | tuple | None = None) -> Examples:
    if subtask.kind not in ("single-label", "binary"):
        raise ValueError(f"{name} serves single-label/binary subtasks, not {subtask.id} ({subtask.kind})")
    root = Path(root)
    csv_path = root if root.is_file() else root / (csv or DEFAULT_CSV)
    if not csv_path.is_file():
        if csv is None and root.is_dir() and any(p.is_dir() for p in root.iterdir()):
            return read_image_folder(name, root, subtask, folders)
        raise DatasetNotFoundError.expected(
            name, root, f"{csv or DEFAULT_CSV} (image path + label columns) or one folder per class "
                        f"({', '.join(subtask.classes)})")
    window = window or DEFAULT_WINDOWS.get(name, imaging.DEFAULT_CT_WINDOW)
    pool, rows, cases = _csv_pool(str(csv_path.resolve()), image_column, case_column,
                                  tuple(window) if isinstance(window, list) else window, stamp([csv_path]))
    column = label_column or DEFAULT_LABEL_COLUMNS.get(subtask.id, "label")
    if rows and column not in rows[0]:
        raise DatasetNotFoundError.expected(name, csv_path.parent, f"a label column {column!r} in {csv_path.name} "
                                            f"(label_column=... to choose another)", found=f"columns {list(rows[0])}")
    kept, y = [], []
    for i, row in enumerate(rows):
        cell = row[column].strip()
        if not cell:
            continue
        k = match_class(cell, subtask.classes, label_map)
        if k is None:
            raise DatasetNotFoundError.expected(name, csv_path.parent, f"one of {list(subtask.classes)} in column {column!r} "
                                                f"of {csv_path.name} (or label_map=...)", found=f"{cell!r} in row {i + 1}")
        kept.append(i)
        y.append(k)
    return Examples(pool, np.asarray(kept, dtype=np.int64), np.asarray(y, dtype=np.int64), subtask.classes,
                    cases=np.asarray([cases[i] for i in kept], dtype=object))


def _register(name: str) -> None:
    def adapter(root: Path, subtask: Subtask, csv: str | None = None, image_column: str | None = None,
                label_column: str | None = None, label_map: dict[str, str] | None = None,
                folders: dict[str, str] | None = None, case_column: str | None = None,
                window: str | tuple | None = None) -> Examples:
        return read_labelled(name, root, subtask, csv, image_column, label_column, label_map, folders, case_column, window)

    adapter.__name__ = adapter.__qualname__ = f"{name}_adapter"
    adapter.__doc__ = f"{name}: a labelled CSV or class folders (see radisim.evals.datasets.labelled)."
    register_adapter(name)(adapter)


for _name in ("labelled", "internal_modality", "internal_brain_tumor", "internal_meningioma", "internal_lung_adeno"):
    _register(_name)
