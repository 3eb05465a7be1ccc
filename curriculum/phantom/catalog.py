"""The phantom's vocabulary as data: which (modality, anatomy) combinations exist, with their views,
organs and findings; the disease cohorts; subtypes and grades; the words that name each modality.

Everything else in the package reads these tables; nothing here draws or depends on a random state.
"""
from __future__ import annotations

from dataclasses import dataclass

from radisim.curriculum.phases import PHASES, REGIONS

#: Eval images use indices from this offset, a seed stream disjoint from train (indices < 2**40).
EVAL_INDEX_OFFSET = 1 << 40


@dataclass(frozen=True)
class Combo:
    modality: str
    anatomy: str
    views: tuple[str, ...]
    organs: tuple[str, ...]          # organ vocabulary that may be labelled for this combo
    findings: tuple[str, ...]        # abnormal findings (besides "none")
    fov_mm: float                    # field of view, for lesion sizes in captions


COMBOS: tuple[Combo, ...] = (
    Combo("MR", "head", ("axial", "sagittal", "coronal"), ("brain", "pituitary", "ventricles"),
          ("tumor",), 240.0),
    Combo("CT", "head", ("axial", "sagittal", "coronal"), ("brain", "skull", "ventricles"),
          ("hemorrhage",), 240.0),
    Combo("MR", "knee", ("sagittal", "coronal"), ("femur", "meniscus", "patella", "tibia"),
          ("acl tear", "meniscus tear"), 160.0),
    Combo("MR", "abdomen", ("axial", "coronal"), ("kidneys", "liver", "spleen"), (), 380.0),
    Combo("CT", "chest", ("axial", "sagittal", "coronal"), ("aorta", "heart", "lungs", "spine"),
          ("covid-19 pneumonia", "lung adenocarcinoma", "enlarged lymph node"), 350.0),
    Combo("CT", "abdomen", ("axial", "sagittal", "coronal"),
          ("bladder", "kidneys", "liver", "spine", "spleen", "stomach"),
          ("liver tumor", "enlarged lymph node"), 380.0),
    Combo("DR", "chest", ("frontal", "lateral"), ("clavicles", "heart", "lungs", "ribs", "spine"),
          ("pneumonia",), 400.0),
)

#: Disease cohorts: extra cases that all carry one finding, the way the paper's stage-5 subtasks come
#: from dedicated series (brain-tumour MRI, meningioma and lung-adenocarcinoma cohorts) rather than
#: from a general population, where such cases are rare (see docs/phantom.md for the counts).
#: `write_phantom_dataset(cohort_fraction=...)` appends them to both splits, in their own index range,
#: so the general cases stay as they were.
COHORTS: dict[str, tuple[str, str, str]] = {
    "brain-tumor-mr": ("MR", "head", "tumor"),
    "lung-adenocarcinoma-ct": ("CT", "chest", "lung adenocarcinoma"),
}
COHORT_INDEX_OFFSET = 1 << 41

SUBTYPES: dict[str, tuple[str, ...]] = {
    "tumor": ("glioma", "meningioma", "pituitary adenoma"),
    "hemorrhage": ("epidural", "subdural", "intraparenchymal"),
    "lung adenocarcinoma": ("adenocarcinoma in situ", "minimally invasive adenocarcinoma",
                            "invasive adenocarcinoma"),
}
#: Grades are keyed by subtype: only these subtypes are graded (pituitary adenoma, AIS and MIA
#: are not; IASLC grading applies to invasive adenocarcinoma).
GRADES: dict[str, tuple[str, ...]] = {
    "glioma": ("low grade", "high grade"),
    "meningioma": ("grade 1", "grade 2", "grade 3"),
    "invasive adenocarcinoma": ("grade 1", "grade 2", "grade 3"),
}
#: Words that name each modality in captions (used by tests and prompt builders).
MODALITY_WORDS: dict[str, tuple[str, ...]] = {
    "CT": ("CT", "computed tomography"),
    "MR": ("MRI", "MR", "magnetic resonance"),
    "DR": ("X-ray", "radiograph"),
}


def combo_of(modality: str, anatomy: str) -> Combo:
    """The COMBOS entry of (modality, anatomy)."""
    return next(c for c in COMBOS if (c.modality, c.anatomy) == (modality, anatomy))


def catalog() -> dict:
    """The phantom vocabulary as plain data (JSON-serialisable), for tests, prompts and classes."""
    findings = ["none"] + sorted({f for c in COMBOS for f in c.findings})
    return {
        "modalities": ["CT", "MR", "DR"],
        "anatomies": ["head", "chest", "abdomen", "knee"],
        "views": ["axial", "sagittal", "coronal", "frontal", "lateral"],
        "organs": sorted({o for c in COMBOS for o in c.organs}),
        "findings": findings,
        "subtypes": {k: list(v) for k, v in SUBTYPES.items()},
        "grades": {k: list(v) for k, v in GRADES.items()},
        "regions": list(REGIONS),
        "phases": list(PHASES),
        "modality_words": {k: list(v) for k, v in MODALITY_WORDS.items()},
        "combos": [
            {"modality": c.modality, "anatomy": c.anatomy, "views": list(c.views),
             "organs": list(c.organs), "findings": ["none", *c.findings]}
            for c in COMBOS
        ],
    }
