"""Helpers shared by the real-dataset adapters: checking a layout, encoding images, and turning
segmented volumes / slice series into labelled 2-D slices.

Readers come from `radisim.platform.data.imaging` (CT windowing, MR percentiles, MONOCHROME1,
`nifti_slices`), so an evaluation slice looks like an ingested training slice of the same scan.

Segmentation datasets (CHAOS, AMOS, TotalSegmentator, CT-ORG) all become a `SliceSet`: one image pool
of 2-D slices, each with its view and, per organ visible in it, the quadrant of the organ's mask
centroid. From it
  - stage 2 multi-label: class present iff one of its organs covers >= `min_organ_fraction` of the slice
    (default 0.2% of the pixels; the organ names are the prompt vocabulary of prompts/organs.yaml, and
    "kidneys"/"lungs" also count the left/right organ);
  - stage 2 view: the slice's view (axial / sagittal / coronal);
  - stage 3 localization: one example per (slice, visible organ): query = organ, class =
    `curriculum.phases.region_of(centroid)` in the displayed slice (radiological convention, see
    `imaging.nifti_slices`: the patient's right on the viewer's left), with three rules so that the
    label means what it says:
      * two-sided organs labelled as one structure (CT-ORG's "lungs" and "kidneys") are split into
        "left ..." / "right ..." by `split_sides` in the volume's patient axes (canonical RAS from the
        NIfTI affine: connected components, each assigned to the side of the body's midline its
        centroid lies on), so no centroid of a pair sits on the midline;
      * midline organs (`MIDLINE_ORGANS`: brain, bladder, spine, aorta) are not asked about: their
        left/right half is decided by a pixel;
      * a (slice, organ) whose centroid lies within `margin` (default 5% of the side) of either
        dividing line is not asked about either.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from radisim.curriculum.phases import REGIONS, region_of
from radisim.platform.data import imaging

from ..tasks import Subtask
from .base import DatasetNotFoundError, Examples, ImagePool

#: Images are stored with their longest side at most this (CLIP resizes to <= 448 anyway).
DEFAULT_MAX_SIDE = 512
#: An organ is "in" a slice when its mask covers at least this share of the slice's pixels.
DEFAULT_MIN_ORGAN_FRACTION = 0.002
#: Two-sided organs some datasets label as one structure -> the names of their sides.
BILATERAL: dict[str, tuple[str, str]] = {"kidneys": ("left kidney", "right kidney"), "lungs": ("left lung", "right lung")}
#: Organs on the midline: present in stage 2, never asked about in stage 3 localization.
MIDLINE_ORGANS = frozenset({"brain", "bladder", "spine", "aorta"})
#: Localization examples whose centroid is within this share of the side from a dividing line are dropped.
DEFAULT_MARGIN = 0.05
#: Multi-label classes that also count their left/right parts.
CLASS_MEMBERS: dict[str, frozenset[str]] = {
    "kidneys": frozenset({"kidneys", "left kidney", "right kidney"}),
    "lungs": frozenset({"lungs", "left lung", "right lung"}),
}
#: Image files the folder and CSV adapters read (PNG/JPEG pass through, TIFF/BMP are re-encoded).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Column names a CSV's image path may have, in the order they are looked for.
IMAGE_COLUMNS = ("path", "filepath", "image", "image_path", "file")


# ------------------------------------------------------------------------------------------ layout checks


def require_dir(dataset: str, root: Path, relative: str | Path = "", what: str = "", hint: str = "") -> Path:
    path = Path(root) / relative
    if not path.is_dir():
        raise DatasetNotFoundError.expected(dataset, root, what or f"the folder {relative}/", hint)
    return path


def require_file(dataset: str, root: Path, relative: str | Path, what: str = "", hint: str = "") -> Path:
    path = Path(root) / relative
    if not path.is_file():
        raise DatasetNotFoundError.expected(dataset, root, what or f"the file {relative}", hint)
    return path


def read_csv(dataset: str, root: Path, path: Path, columns: Sequence[str] = (), delimiter: str | None = None,
             header: bool = True) -> list[dict[str, str]] | list[list[str]]:
    """Rows of a CSV as dicts (header) or lists; a missing required column is a malformed dataset."""
    text = path.read_text(encoding="utf-8-sig")
    if delimiter is None:
        first = text.splitlines()[0] if text else ""
        delimiter = ";" if first.count(";") > first.count(",") else ","
    if not header:
        return [row for row in csv.reader(text.splitlines(), delimiter=delimiter) if row]
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    have = [c.strip() for c in (reader.fieldnames or [])]
    if missing := [c for c in columns if c not in have]:
        raise DatasetNotFoundError.expected(dataset, root, f"columns {missing} in {path.name}",
                                            found=f"columns {have}")
    return rows


def stamp(paths: Iterable[Path]) -> tuple:
    """(path, mtime, size) of each file: a cache key that changes when a file does."""
    out = []
    for p in paths:
        st = Path(p).stat()
        out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


def pick_evenly(n: int, k: int | None) -> list[int]:
    """k indices spread evenly over range(n) (all of them if k is None or >= n): deterministic subsets."""
    if k is None or k >= n:
        return list(range(n))
    if k <= 0:
        return []
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, k)})


# ------------------------------------------------------------------------------------------------ images


def fit_side(image: np.ndarray, max_side: int | None = DEFAULT_MAX_SIDE,
             spacing: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 2-D -> at most `max_side` on its longest side; with `spacing` (row, col in mm) the pixels
    are made square first, so a coronal slice of 5 mm axial sections is not squashed. Ingestion's own
    resize (`platform.data.imaging.fit_side`), with the evaluation's default size."""
    return imaging.fit_side(image, max_side, spacing)


def png(image: np.ndarray, max_side: int | None = DEFAULT_MAX_SIDE,
        spacing: tuple[float, float] | None = None) -> bytes:
    return imaging.encode_png(fit_side(imaging.to_uint8(image), max_side, spacing))


def image_file_bytes(path: Path, max_side: int | None = DEFAULT_MAX_SIDE, window: str | tuple = imaging.DEFAULT_CT_WINDOW,
                     slice_index: int | None = None) -> bytes:
    """Any supported file -> encoded image bytes. PNG/JPEG pass through unchanged (the pool fingerprint
    then hashes the published file); DICOM -> `imaging.read_dicom` in `window`; NIfTI -> the axial slice
    `slice_index` (an index along the stored file's third axis, e.g. a lesion's; default the central
    slice), in `window` for CT."""
    suffix = "".join(path.suffixes[-2:]).lower() if path.name.lower().endswith(".nii.gz") else path.suffix.lower()
    if suffix in (".dcm", ".dicom", ""):
        image, _ = imaging.read_dicom(path, window=window)
        return png(image, max_side)
    if suffix in (".nii", ".nii.gz"):
        volume, affine = imaging.read_nifti(path)
        modality = imaging.guess_volume_modality(volume)
        if slice_index is None:
            (sl,) = imaging.nifti_slices(volume, affine, "axial")
        else:
            axis, index = canonical_index(path, 2, int(slice_index))
            (sl,) = imaging.nifti_slices(volume, affine, {0: "sagittal", 1: "coronal", 2: "axial"}[axis], indices=[index])
        return png(imaging.normalise(sl, modality, window), max_side)
    if suffix in (".tif", ".tiff", ".bmp"):
        return png(imaging.decode_image(path.read_bytes()), max_side)
    return path.read_bytes()


# ------------------------------------------------------------------------------------ segmented slices


@dataclass
class SliceSet:
    """2-D slices of one dataset: a shared pool plus, per row, its view, case and visible organs."""

    pool: ImagePool
    views: list[str]
    cases: list[str]
    organs: list[dict[str, str | None]]  # per row: organ in the slice -> region of its centroid (None: too near a dividing line)
    modalities: list[str] = field(default_factory=list)


class SliceSetBuilder:
    def __init__(self, name: str, max_side: int | None = DEFAULT_MAX_SIDE,
                 min_organ_fraction: float = DEFAULT_MIN_ORGAN_FRACTION, margin: float = DEFAULT_MARGIN):
        self.name, self.max_side, self.min_fraction = name, max_side, float(min_organ_fraction)
        self.margin = float(margin)
        self.ids: list[str] = []
        self.images: list[bytes] = []
        self.views: list[str] = []
        self.cases: list[str] = []
        self.organs: list[dict[str, str]] = []
        self.modalities: list[str] = []

    def add(self, image_id: str, image: np.ndarray, view: str, case: str, masks: Mapping[str, np.ndarray],
            modality: str, spacing: tuple[float, float] | None = None) -> None:
        """`image` uint8 2-D; `masks` organ -> bool 2-D in the same orientation (any resolution)."""
        present = {}
        for organ, mask in masks.items():
            mask = np.asarray(mask, dtype=bool)
            if mask.sum() >= max(1.0, self.min_fraction * mask.size):
                rows, cols = np.nonzero(mask)
                r, c, (h, w) = float(rows.mean()) + 0.5, float(cols.mean()) + 0.5, mask.shape
                near_line = abs(r - h / 2) < self.margin * h or abs(c - w / 2) < self.margin * w
                present[organ] = None if near_line else region_of(r, c, h, w)
        self.ids.append(image_id)
        self.images.append(png(image, self.max_side, spacing))
        self.views.append(view)
        self.cases.append(case)
        self.organs.append(present)
        self.modalities.append(modality)

    def build(self, root: Path, what: str) -> SliceSet:
        if not self.ids:
            raise DatasetNotFoundError.expected(self.name, root, what)
        pool = ImagePool(f"{self.name}:{Path(root).resolve()}", tuple(self.ids), self.images)
        return SliceSet(pool, self.views, self.cases, self.organs, self.modalities)


def _members(cls: str) -> frozenset[str]:
    return CLASS_MEMBERS.get(cls, frozenset({cls}))


def slice_examples(dataset: str, root: Path, slices: SliceSet, subtask: Subtask,
                   queries: Sequence[str] | None = None) -> Examples:
    """A subtask's examples from a SliceSet (see the module docstring); `queries` limits the organs
    asked about in localization (default: every organ visible in a slice)."""
    meta = lambda rows: {"view": np.asarray([slices.views[r] for r in rows], dtype=object),  # noqa: E731
                         "case": np.asarray([slices.cases[r] for r in rows], dtype=object)}
    cases_of = lambda rows: np.asarray([slices.cases[r] for r in rows], dtype=object)  # noqa: E731
    n = len(slices.pool)
    if subtask.kind == "multi-label":
        rows = list(range(n))
        y = np.asarray([[int(bool(_members(c) & set(slices.organs[r]))) for c in subtask.classes] for r in rows])
        return Examples(slices.pool, np.asarray(rows), y, subtask.classes, None, meta(rows), cases_of(rows))
    if subtask.kind == "single-label" and set(subtask.classes) <= set(imaging.VIEWS):
        rows = [r for r in range(n) if slices.views[r] in subtask.classes]
        y = [subtask.classes.index(slices.views[r]) for r in rows]
        if not rows:
            raise DatasetNotFoundError.expected(dataset, root, f"slices in the views {subtask.classes}")
        return Examples(slices.pool, np.asarray(rows), np.asarray(y), subtask.classes, None, meta(rows), cases_of(rows))
    if subtask.kind == "localization":
        rows, y, asked = [], [], []
        allowed = None if queries is None else set(queries)
        for r in range(n):
            for organ, region in sorted(slices.organs[r].items()):
                askable = region is not None and organ not in MIDLINE_ORGANS and organ not in BILATERAL
                if askable and (allowed is None or organ in allowed):
                    rows.append(r)
                    y.append(REGIONS.index(region))
                    asked.append(organ)
        if not rows:
            raise DatasetNotFoundError.expected(dataset, root, f"slices showing one of the organs {sorted(allowed or [])}",
                                                found="no slice where an organ mask is large enough")
        return Examples(slices.pool, np.asarray(rows), np.asarray(y), subtask.classes, np.asarray(asked), meta(rows), cases_of(rows))
    raise ValueError(f"dataset {dataset!r} serves multi-label, view and localization subtasks, not {subtask.id} ({subtask.kind})")


def spacing_of(affine: np.ndarray, view: str) -> tuple[float, float]:
    """(row, col) pixel spacing in mm of a `nifti_slices` slice of a canonical volume."""
    zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(0))
    rows_cols = {"axial": (1, 0), "coronal": (2, 0), "sagittal": (2, 1)}[view]
    return float(zooms[rows_cols[0]]), float(zooms[rows_cols[1]])


def body_midline(volume: np.ndarray) -> float:
    """x (axis 0) of the patient's midline in a canonical volume: the centroid of the body, i.e. of the
    voxels brighter than 10% of the intensity range (air and MR background are below it)."""
    lo, hi = float(volume.min()), float(volume.max())
    body = volume > lo + 0.1 * (hi - lo)
    return float(np.nonzero(body)[0].mean()) if body.any() else (volume.shape[0] - 1) / 2


def split_sides(mask: np.ndarray, midline: float) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) parts of a two-sided organ's mask in a canonical RAS volume (axis 0 runs to the
    patient's right): each connected component (26-connected) goes to the side of the patient's
    midline (`body_midline`) its centroid lies on, so a single remaining kidney keeps its side; a
    component that crosses the midline (lungs touching) is cut there."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    left, right = np.zeros_like(mask), np.zeros_like(mask)
    x = np.arange(mask.shape[0])[:, None, None]
    components, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    for k in range(1, n + 1):
        part = components == k
        xs = np.nonzero(part)[0]
        if xs.min() < midline - 1 and xs.max() > midline + 1:
            right |= part & (x > midline)
            left |= part & (x <= midline)
        elif xs.mean() > midline:
            right |= part
        else:
            left |= part
    return left, right


def with_sides(masks: dict[str, np.ndarray], midline: float) -> dict[str, np.ndarray]:
    """`masks` with every `BILATERAL` structure replaced by its left and right organs."""
    out = {o: m for o, m in masks.items() if o not in BILATERAL}
    for organ, (left_name, right_name) in BILATERAL.items():
        if organ in masks:
            left, right = split_sides(masks[organ], midline)
            out[left_name] = out.get(left_name, False) | left
            out[right_name] = out.get(right_name, False) | right
    return out


def add_volume(builder: SliceSetBuilder, case: str, image_path: Path, masks: Callable[[], dict[str, np.ndarray]],
               modality: str, views: Sequence[str], slices_per_view: int, window: str | tuple = imaging.DEFAULT_CT_WINDOW) -> None:
    """Slices of one NIfTI volume and its organ masks (canonical 3-D bool arrays, organ -> mask):
    `slices_per_view` evenly spaced central slices in each view (`imaging.slice_indices`). Two-sided
    organs labelled as one are split into their sides first (`with_sides`)."""
    volume, affine = imaging.read_nifti(image_path)
    organ_masks = with_sides(masks(), body_midline(volume))
    for organ, mask in organ_masks.items():
        if mask.shape != volume.shape:
            raise ValueError(f"{case}: mask of {organ} has shape {mask.shape}, image {volume.shape}")
    for view in views:
        axis = {"sagittal": 0, "coronal": 1, "axial": 2}[view]
        for index in imaging.slice_indices(volume.shape[axis], slices_per_view):
            (sl,) = imaging.nifti_slices(volume, affine, view, indices=[index])
            mask_slices = {o: imaging.nifti_slices(m, None, view, indices=[index])[0] for o, m in organ_masks.items()}
            builder.add(f"{case}/{view}/{index}", imaging.to_uint8(imaging.normalise(sl, modality, window)), view, case,
                        mask_slices, modality, spacing_of(affine, view))


def read_mask(path: Path) -> np.ndarray:
    """A label volume, canonical like `imaging.read_nifti`, as integers."""
    volume, _ = imaging.read_nifti(path)
    return np.rint(volume).astype(np.int32)


def canonical_index(path: Path, file_axis: int, index: int) -> tuple[int, int]:
    """Where slice `index` along axis `file_axis` of the file as stored lands after `read_nifti`'s
    reorientation: (canonical axis, canonical index). Needs only the header."""
    import nibabel as nib

    img = nib.load(str(path))
    ornt = nib.io_orientation(img.affine)
    axis, flip = int(ornt[file_axis, 0]), int(ornt[file_axis, 1])
    length = img.shape[file_axis]
    return axis, (length - 1 - index if flip < 0 else index)

