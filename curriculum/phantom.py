"""Deterministic phantom radiology: the built-in, offline, SYNTHETIC dataset of RadiSim-CL.

Every image is a pure function of ``(seed, index, size)``. A case draws one (modality, anatomy)
combination, a view, a finding (about half are "none"), lays out organs and lesions as ellipses
and polar-modulated masses in anatomical coordinates, places the picture in the field with random
flips and a translation (so that organ quadrants vary and stay balanced), paints tissues with the
modality's intensity table and finishes with the modality's physics: CT is black air with low
noise, MR has a Rician noise floor and a smooth bias field, DR is a projection that fills the
field with a vertical gradient. Captions are written at the five curriculum granularities.

Drawing is vectorised numpy on small windows of separable 1-D coordinates: an unrotated ellipse is
one broadcast add, which keeps generation well above 2,000 images/s at 64 px on one core.

The data are labelled synthetic in the manifest (`synthetic` column) and the data card, never in
the captions, which stay clinical.
"""
from __future__ import annotations

import io
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from radisim.curriculum.counterfactuals import with_article
from radisim.curriculum.phases import PHASE_INDEX, PHASES, REGIONS, region_of

#: Eval images use indices from this offset, a seed stream disjoint from train (indices < 2**40).
EVAL_INDEX_OFFSET = 1 << 40

# --------------------------------------------------------------------------------------------
# Catalog: the vocabulary as data
# --------------------------------------------------------------------------------------------


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
#: from a general population, where such cases are rare: 3,000 general phantom images hold 57 lung
#: adenocarcinomas, 3 of them grade-1 invasive ones. `write_phantom_dataset(cohort_fraction=...)`
#: appends them to both splits, in their own index range, so the general cases stay as they were.
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


# --------------------------------------------------------------------------------------------
# Tissues: intensity in [0, 1] per modality (CT, MR, DR)
# --------------------------------------------------------------------------------------------

_TISSUE: dict[str, tuple[float, float, float]] = {
    "air": (0.0, 0.0, 0.03),
    "fat": (0.27, 0.86, 0.34),
    "scalp": (0.45, 0.80, 0.40),
    "muscle": (0.44, 0.30, 0.38),
    "soft": (0.46, 0.38, 0.40),
    "brain": (0.50, 0.50, 0.40),
    "white": (0.45, 0.62, 0.40),
    "csf": (0.33, 0.10, 0.40),
    "bone": (0.97, 0.04, 0.86),
    "marrow": (0.74, 0.72, 0.66),
    "lung": (0.05, 0.03, 0.12),
    "heart": (0.56, 0.34, 0.60),
    "aorta": (0.76, 0.08, 0.58),
    "liver": (0.60, 0.56, 0.45),
    "spleen": (0.53, 0.42, 0.45),
    "kidney": (0.70, 0.46, 0.45),
    "medulla": (0.52, 0.28, 0.45),
    "stomach": (0.50, 0.36, 0.40),
    "chyme": (0.36, 0.20, 0.40),
    "gas": (0.01, 0.02, 0.10),
    "bowel": (0.40, 0.33, 0.40),
    "urine": (0.37, 0.10, 0.45),
    "pituitary": (0.55, 0.66, 0.40),
    "cartilage": (0.50, 0.58, 0.40),
    "meniscus": (0.45, 0.04, 0.40),
    "ligament": (0.45, 0.05, 0.40),
    "fluid": (0.38, 0.93, 0.40),
    "vertebra": (0.88, 0.62, 0.80),
    "disc": (0.45, 0.30, 0.45),
    # lesions
    "blood": (0.76, 0.60, 0.50),
    "edema": (0.38, 0.34, 0.40),
    "enhancing": (0.55, 0.94, 0.50),
    "necrosis": (0.30, 0.10, 0.40),
    "lgg": (0.45, 0.30, 0.40),
    "ggo": (0.33, 0.30, 0.30),
    "nodule": (0.54, 0.50, 0.50),
    "node": (0.55, 0.42, 0.50),
    "hypo": (0.34, 0.22, 0.40),
    # projection radiography
    "dr_body": (0.40, 0.40, 0.36),
    "dr_lung": (0.05, 0.03, 0.13),
    "dr_medi": (0.50, 0.40, 0.58),
    "dr_heart": (0.56, 0.34, 0.62),
    "dr_trachea": (0.20, 0.10, 0.32),
    "dr_consol": (0.50, 0.50, 0.56),
}
_MOD_COL = {"CT": 0, "MR": 1, "DR": 2}

# --------------------------------------------------------------------------------------------
# Shapes and drawing ops (anatomical coordinates: u to the viewer's right, v downwards, [-1, 1])
# --------------------------------------------------------------------------------------------
# ("e", cu, cv, a, b, theta)                          ellipse
# ("d", A, B)                                          A minus B (B evaluated on A's window)
# ("m", cu, cv, r, amp, k, phi, spiky)                 polar-modulated mass
# ("s", cu, cv, a, b, freq, curv, duty)                stripes (ribs, vertebrae) inside an ellipse


def E(cu, cv, a, b, th=0.0):
    return ("e", float(cu), float(cv), float(a), float(b), float(th))


@dataclass
class Op:
    shape: tuple
    tissue: str
    organ: str | None = None
    lesion: bool = False
    satellite: bool = False          # secondary lesion (extra GGO patches): not in finding_region
    clip: str | None = None          # multiply by this organ's mask (lesions inside an organ)
    mottle: float = 0.0              # additive texture amplitude (intensity units)
    add: float | None = None         # additive overlay instead of painting (DR bones)
    edge: float = 1.0                # edge softness in pixels


@dataclass
class Plan:
    ops: list[Op]
    present: set[str]                # organs present at this slice (before field clipping)
    lesion_center: tuple[float, float] | None = None
    details: dict = field(default_factory=dict)


def _centre_weight(shape) -> tuple[float, float, float]:
    kind = shape[0]
    if kind == "e" or kind == "s":
        return shape[1], shape[2], shape[3] * shape[4]
    if kind == "d":
        return _centre_weight(shape[1])
    if kind == "m":
        return shape[1], shape[2], shape[3] ** 2
    raise ValueError(kind)


def _clip01(x: np.ndarray) -> np.ndarray:
    """In-place clip to [0, 1] (np.clip's dispatch costs more than the work on small windows)."""
    np.maximum(x, 0.0, out=x)
    return np.minimum(x, 1.0, out=x)


class _Canvas:
    """Separable pixel grid under a flip + translation; windows keep every op small."""

    def __init__(self, size: int, fx: int, fy: int, tx: float, ty: float, modality: str,
                 tex: np.ndarray):
        self.S = size
        xs = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1)
        self.xs = xs
        self.fx, self.fy, self.tx, self.ty = fx, fy, tx, ty
        self.U = (fx * (xs - tx)).astype(np.float32)     # anatomical u of each column
        self.V = (fy * (xs - ty)).astype(np.float32)     # anatomical v of each row
        self.col = _MOD_COL[modality]
        self.img = np.full((size, size), _TISSUE["air"][self.col], dtype=np.float32)
        self.tex = _upsample(tex, size)
        self.organs: dict[str, np.ndarray] = {}
        self.lesion = np.zeros((size, size), dtype=np.float32)
        self.main_lesion = np.zeros((size, size), dtype=np.float32)

    # -- windows -------------------------------------------------------------------------
    def _span(self, f, t, c, R):
        p = f * c + t
        S = self.S
        lo = int(math.floor((p - R + 1) * S / 2 - 0.5))
        hi = int(math.ceil((p + R + 1) * S / 2 - 0.5)) + 1
        return max(lo, 0), min(hi, S)

    def window(self, cu, cv, R):
        R = R + 2.5 * 2 / self.S
        c0, c1 = self._span(self.fx, self.tx, cu, R)
        r0, r1 = self._span(self.fy, self.ty, cv, R)
        if c0 >= c1 or r0 >= r1:
            return None
        return (slice(r0, r1), slice(c0, c1))

    # -- shapes ----------------------------------------------------------------------------
    def _ellipse_on(self, win, cu, cv, a, b, th, edge):
        # soft mask k * (1 - r^2) + 1/2 clipped to [0, 1]: a ~1 px edge centred on the boundary
        # (area-preserving, and small shapes still reach 1 inside). Written as few 2-D
        # ops as possible: per-axis terms are 1-D and only their broadcast sum is 2-D.
        k = max(min(a, b) * self.S / (4.0 * edge), 0.5)
        du = self.U[win[1]] - cu
        dv = self.V[win[0]] - cv
        if th == 0.0:
            cu_ = du * (1.0 / a)
            cv_ = dv * (1.0 / b)
            m = (k + 0.5 - k * cu_ * cu_)[None, :] - (k * cv_ * cv_)[:, None]
        else:
            c, s = math.cos(th), math.sin(th)
            x = (du * (c / a))[None, :] + (dv * (s / a))[:, None]
            y = (dv * (c / b))[:, None] - (du * (s / b))[None, :]
            np.multiply(x, x, out=x)
            np.multiply(y, y, out=y)
            x += y
            x *= -k
            x += k + 0.5
            m = x
        return _clip01(m)

    def shape(self, sh, edge=1.0, win=None):
        kind = sh[0]
        if kind == "e":
            _, cu, cv, a, b, th = sh
            win = win or self.window(cu, cv, max(a, b))
            if win is None:
                return None, None
            return win, self._ellipse_on(win, cu, cv, a, b, th, edge)
        if kind == "d":
            win, m = self.shape(sh[1], edge)
            if win is None:
                return None, None
            _, cu, cv, a, b, th = sh[2]
            return win, m * (1.0 - self._ellipse_on(win, cu, cv, a, b, th, edge))
        if kind == "m":
            _, cu, cv, r, amp, k, phi, spiky = sh
            win = self.window(cu, cv, r * (1 + 2 * amp))
            if win is None:
                return None, None
            du = (self.U[win[1]] - cu)[None, :]
            dv = (self.V[win[0]] - cv)[:, None]
            d = np.sqrt(du * du + dv * dv)
            if amp > 0:
                ang = np.arctan2(dv, du)
                wave = np.cos(k * ang + phi)
                if spiky:
                    rr = r * (0.9 + 2.2 * amp * np.maximum(wave, 0.0) ** 6)
                else:
                    rr = r * (1.0 + amp * wave)
            else:
                rr = r
            kk = max(r * self.S / (2.0 * edge), 0.5)
            return win, _clip01((kk + 0.5) - (kk * d) / rr)
        if kind == "s":
            _, cu, cv, a, b, freq, curv, duty = sh
            win, m = self.shape(E(cu, cv, a, b), edge)
            if win is None:
                return None, None
            du = self.U[win[1]] - cu
            dv = self.V[win[0]]
            phase = dv[:, None] - curv * (du * du)[None, :]
            stripes = _clip01((np.cos(phase * freq) - duty) * 3.0)
            return win, m * stripes
        raise ValueError(kind)

    # -- painting --------------------------------------------------------------------------
    def draw(self, op: Op):
        win, m = self.shape(op.shape, op.edge)
        if win is None:
            return
        if op.clip is not None:
            mask = self.organs.get(op.clip)
            if mask is None:
                return
            m = m * mask[win]
        img = self.img[win]
        if op.add is not None:
            img += m * op.add
        else:
            val = _TISSUE[op.tissue][self.col]
            if op.mottle:
                delta = self.tex[win] * op.mottle
                delta += val
                delta -= img
            else:
                delta = val - img
            delta *= m
            img += delta
        if op.organ is not None:
            om = self.organs.get(op.organ)
            if om is None:
                om = self.organs[op.organ] = np.zeros((self.S, self.S), dtype=np.float32)
            np.maximum(om[win], m, out=om[win])
        if op.lesion:
            np.maximum(self.lesion[win], m, out=self.lesion[win])
            if not op.satellite:
                np.maximum(self.main_lesion[win], m, out=self.main_lesion[win])


# --------------------------------------------------------------------------------------------
# Lesion helpers
# --------------------------------------------------------------------------------------------

_MARGIN = {  # margin -> (amplitude, lobes range, spiky)
    "smooth": (0.04, (2, 3), False),
    "lobulated": (0.2, (3, 5), False),
    "spiculated": (0.32, (7, 10), True),
}


#: Lesion radii are drawn from the ranges in the builders times this. Lesions are teaching-file
#: conspicuous: at 64 px a finding must cover enough pixels for a small model to learn it within the
#: demo's few hundred steps (1.0 gave 16-78 px lesions; stage-4/5 scores then stayed at chance).
LESION_SCALE = 1.5


def _lesion_size(rng, lo: float, hi: float, size=None):
    return LESION_SCALE * rng.uniform(lo, hi, size)


def _mass(rng, cu, cv, r, margin="smooth"):
    amp, (k0, k1), spiky = _MARGIN[margin]
    return ("m", float(cu), float(cv), float(r), amp, int(rng.integers(k0, k1 + 1)),
            float(rng.uniform(0, 2 * math.pi)), spiky)


def _inside(rng, cu, cv, a, b, rho=(0.0, 0.6)):
    """A random point inside ellipse (cu, cv, a, b) at relative radius in rho."""
    t = rng.uniform(0, 2 * math.pi)
    p = rng.uniform(*rho)
    return cu + p * a * math.cos(t), cv + p * b * math.sin(t)


def _edge_point(cu, cv, a, b, t, inset=0.0):
    return cu + (a - inset) * math.cos(t), cv + (b - inset) * math.sin(t)


def _jit(rng, x, s=0.05):
    return x * (1 + rng.uniform(-s, s))


# --------------------------------------------------------------------------------------------
# Scene builders, one per (modality, anatomy), registered by key
# --------------------------------------------------------------------------------------------

Builder = Callable[[np.random.Generator, str, str, str, str], Plan]
_BUILDERS: dict[tuple[str, str], Builder] = {}


def _register(modality: str, anatomy: str):
    def deco(fn: Builder) -> Builder:
        _BUILDERS[(modality, anatomy)] = fn
        return fn
    return deco


def _head(rng, view, modality, finding, subtype, grade) -> Plan:
    ops: list[Op] = []
    present = {"brain"}
    d = {}
    want_pit = subtype == "pituitary adenoma"
    if view == "axial":
        z = rng.uniform(0.1, 0.9)
        s = 1 - 0.28 * abs(z - 0.55) / 0.45
        a, b = _jit(rng, 0.56) * s, _jit(rng, 0.70) * s
        cu, cv = 0.0, 0.0
        ops += [Op(E(0, 0, a + 0.1, b + 0.1), "scalp"),
                Op(("d", E(0, 0, a + 0.06, b + 0.06), E(0, 0, a, b)), "bone", "skull"),
                Op(E(0, 0, a, b), "csf", "intracranial"),
                Op(E(0, 0, a - 0.025, b - 0.025), "brain", "brain", mottle=0.015),
                Op(E(0, 0.02, a * 0.74, b * 0.76), "white", "brain", mottle=0.01)]
        if 0.3 < z < 0.8:
            vs = 1 - abs(z - 0.55) / 0.35
            ops += [Op(E(-0.08, -0.02, 0.055, 0.2 * vs + 0.05, 0.15), "csf", "ventricles"),
                    Op(E(0.08, -0.02, 0.055, 0.2 * vs + 0.05, -0.15), "csf", "ventricles")]
            present.add("ventricles")
        ops.append(Op(E(0, -0.1, 0.01, b * 0.5), "csf", edge=0.6))          # falx
        brain = (cu, cv, a, b)
    elif view == "sagittal":
        lat = 0.0 if want_pit else rng.uniform(-0.7, 0.7)
        cu, cv, a, b = -0.03, -0.12, _jit(rng, 0.56), _jit(rng, 0.5)
        ops += [Op(E(-0.1, 0.78, 0.3, 0.45), "soft"),                        # neck
                Op(E(0.33, 0.25, 0.3, 0.33, -0.2), "soft"),                  # face
                Op(E(0.3, 0.28, 0.09, 0.05), "gas"),                         # sinus / airway
                Op(E(cu, cv, a + 0.1, b + 0.1), "scalp"),
                Op(("d", E(cu, cv, a + 0.06, b + 0.06), E(cu, cv, a, b)), "bone", "skull"),
                Op(E(cu, cv, a, b), "csf", "intracranial"),
                Op(E(cu, cv, a - 0.025, b - 0.025), "brain", "brain", mottle=0.015),
                Op(E(cu, cv - 0.03, a * 0.75, b * 0.7), "white", "brain", mottle=0.01),
                Op(E(-0.3, 0.22, 0.2, 0.13, 0.2), "brain", "brain"),           # cerebellum
                Op(E(-0.08, 0.3, 0.07, 0.2, 0.25), "brain", "brain"),         # brainstem
                Op(E(0.12, 0.31, 0.11, 0.055), "bone")]                      # sella floor
        if abs(lat) < 0.5:
            ops.append(Op(E(-0.05, -0.12, 0.22, 0.065, 0.1), "csf", "ventricles"))
            present.add("ventricles")
        if abs(lat) < 0.3:
            ops.append(Op(E(0.12, 0.22, 0.075, 0.05), "pituitary", "pituitary"))
            present.add("pituitary")
        brain = (cu, cv, a, b)
        d["sella"] = (0.12, 0.2)
    else:  # coronal
        dep = 0.5 if want_pit else rng.uniform(0.0, 1.0)
        cu, cv, a, b = 0.0, -0.18, _jit(rng, 0.54), _jit(rng, 0.55)
        ops += [Op(E(0, 0.75, 0.3, 0.42), "soft"),
                Op(E(cu, cv, a + 0.1, b + 0.1), "scalp"),
                Op(("d", E(cu, cv, a + 0.06, b + 0.06), E(cu, cv, a, b)), "bone", "skull"),
                Op(E(cu, cv, a, b), "csf", "intracranial"),
                Op(E(0.045 - a / 2, cv, a / 2 + 0.02, b - 0.025), "brain", "brain", mottle=0.015),
                Op(E(a / 2 - 0.045, cv, a / 2 + 0.02, b - 0.025), "brain", "brain", mottle=0.015),
                Op(E(-0.2, cv - 0.03, 0.17, b * 0.68), "white", "brain"),
                Op(E(0.2, cv - 0.03, 0.17, b * 0.68), "white", "brain"),
                Op(E(0, cv - 0.2, 0.012, b * 0.55), "csf", edge=0.6),             # fissure
                Op(E(0, 0.38, 0.13, 0.05), "bone")]                             # skull base
        if 0.2 < dep < 0.8:
            ops += [Op(E(-0.075, -0.12, 0.045, 0.13, -0.35), "csf", "ventricles"),
                    Op(E(0.075, -0.12, 0.045, 0.13, 0.35), "csf", "ventricles")]
            present.add("ventricles")
        if 0.35 < dep < 0.65:
            ops.append(Op(E(0, 0.3, 0.075, 0.05), "pituitary", "pituitary"))
            present.add("pituitary")
        brain = (cu, cv, a, b)
        d["sella"] = (0.0, 0.28)
    if modality == "CT":
        present.add("skull")
    plan = Plan(ops, present, details=d)
    if finding == "tumor":
        _brain_tumor(rng, plan, view, brain, subtype, grade)
    elif finding == "hemorrhage":
        _hemorrhage(rng, plan, view, brain, subtype)
    return plan


def _convexity_angle(rng, view):
    # sagittal/coronal: lesions on the convexity (upper half), axial: anywhere
    if view == "axial":
        return rng.uniform(0, 2 * math.pi)
    return rng.uniform(math.pi * 1.1, math.pi * 1.9)


def _brain_tumor(rng, plan, view, brain, subtype, grade):
    cu, cv, a, b = brain
    ops = plan.ops
    if subtype == "glioma":
        lu, lv = _inside(rng, cu, cv, a * 0.8, b * 0.8, (0.15, 0.5))
        if grade == "low grade":
            r = _lesion_size(rng, 0.1, 0.13)
            ops.append(Op(_mass(rng, lu, lv, r, "smooth"), "lgg", lesion=True, clip="brain"))
        else:
            r = _lesion_size(rng, 0.13, 0.17)
            ops += [Op(_mass(rng, lu, lv, r * 1.5, "lobulated"), "edema", clip="brain"),
                    Op(_mass(rng, lu, lv, r, "lobulated"), "enhancing", lesion=True, clip="brain"),
                    Op(_mass(rng, lu, lv, r * 0.55, "smooth"), "necrosis")]
    elif subtype == "meningioma":
        g = int(grade[-1])
        r = _lesion_size(rng, *{1: (0.085, 0.1), 2: (0.11, 0.13), 3: (0.14, 0.17)}[g])
        t = _convexity_angle(rng, view)
        lu, lv = _edge_point(cu, cv, a, b, t, inset=r * 0.45)
        margin = {1: "smooth", 2: "lobulated", 3: "spiculated"}[g]
        if g == 3:
            ops.append(Op(_mass(rng, lu, lv, r * 1.6, "lobulated"), "edema", clip="intracranial"))
        ops.append(Op(_mass(rng, lu, lv, r, margin), "enhancing", lesion=True, clip="intracranial"))
    else:  # pituitary adenoma, at the midline sella, expanding upwards
        su, sv = plan.details["sella"]
        r = _lesion_size(rng, 0.07, 0.1)
        lu, lv = su, sv - r * 0.5
        ops.append(Op(_mass(rng, lu, lv, r, "smooth"), "enhancing", lesion=True))
    plan.lesion_center = (lu, lv)
    plan.details["size"] = 2 * r


def _hemorrhage(rng, plan, view, brain, subtype):
    cu, cv, a, b = brain
    ops = plan.ops
    if subtype == "epidural":
        t = _convexity_angle(rng, view)
        thick = _lesion_size(rng, 0.1, 0.13)
        lu, lv = _edge_point(cu, cv, a, b, t, inset=0.01)
        tang = math.atan2(b * math.cos(t), -a * math.sin(t))
        ops.append(Op(E(lu, lv, rng.uniform(0.24, 0.3), thick, tang), "blood", lesion=True,
                      clip="intracranial"))
        size = thick
        lu, lv = _edge_point(cu, cv, a, b, t, inset=thick * 0.5)
    elif subtype == "subdural":
        t = _convexity_angle(rng, view)
        thick = _lesion_size(rng, 0.08, 0.11)
        inner = E(cu - thick * math.cos(t), cv - thick * math.sin(t), a * 0.98, b * 0.98)
        ops.append(Op(("d", E(cu, cv, a, b), inner), "blood", lesion=True, clip="intracranial"))
        size = thick
        lu, lv = _edge_point(cu, cv, a, b, t, inset=thick * 0.5)
    else:  # intraparenchymal: round clot with a hypodense edema rim
        lu, lv = _inside(rng, cu, cv, a * 0.8, b * 0.8, (0.15, 0.55))
        r = _lesion_size(rng, 0.08, 0.13)
        ops += [Op(_mass(rng, lu, lv, r * 1.45, "smooth"), "edema", clip="brain"),
                Op(_mass(rng, lu, lv, r, "lobulated"), "blood", lesion=True, clip="brain")]
        size = 2 * r
    plan.lesion_center = (lu, lv)
    plan.details["size"] = size


@_register("MR", "head")
def _mr_head(rng, view, finding, subtype, grade):
    return _head(rng, view, "MR", finding, subtype, grade)


@_register("CT", "head")
def _ct_head(rng, view, finding, subtype, grade):
    return _head(rng, view, "CT", finding, subtype, grade)


@_register("MR", "knee")
def _mr_knee(rng, view, finding, subtype, grade):
    ops: list[Op] = []
    present = {"femur", "tibia", "meniscus"}
    d: dict = {}
    acl_tear = finding == "acl tear"
    if view == "sagittal":
        lat = 0.0 if acl_tear else rng.uniform(-0.8, 0.8)
        ops += [Op(E(0.04, 0, 0.6, 1.4), "fat"),
                Op(E(-0.1, 0, 0.46, 1.35), "muscle", mottle=0.02),
                Op(E(0.38, 0.08, 0.045, 0.24, -0.15), "ligament"),            # patellar tendon
                Op(E(-0.05, -0.62, 0.2, 0.5), "bone", "femur"),
                Op(E(-0.05, -0.62, 0.15, 0.47), "marrow", "femur", mottle=0.03),
                Op(E(-0.04, -0.13, 0.335, 0.235), "cartilage"),
                Op(E(-0.04, -0.13, 0.3, 0.2), "bone", "femur"),
                Op(E(-0.04, -0.13, 0.265, 0.165), "marrow", "femur", mottle=0.03),
                Op(E(0, 0.205, 0.37, 0.12), "cartilage"),
                Op(E(0, 0.24, 0.34, 0.12), "bone", "tibia"),
                Op(E(0, 0.64, 0.19, 0.45), "bone", "tibia"),
                Op(E(0, 0.25, 0.3, 0.09), "marrow", "tibia", mottle=0.03),
                Op(E(0, 0.64, 0.15, 0.43), "marrow", "tibia", mottle=0.03)]
        menisci = [(0.24, 0.095, 0.11, 0.048, "anterior horn"),
                   (-0.26, 0.095, 0.12, 0.052, "posterior horn")]
        if abs(lat) < 0.6:
            ops += [Op(E(0.42, -0.25, 0.085, 0.17, 0.2), "bone", "patella"),
                    Op(E(0.42, -0.25, 0.055, 0.14, 0.2), "marrow", "patella")]
            present.add("patella")
        acl = (0.02, -0.02, 0.2, 0.035, 0.88)
        show_acl = abs(lat) < 0.3
        effusion = E(0.28, -0.5, 0.07, 0.14, -0.2)
    else:  # coronal: two condyles, symmetric, fibula head on the lateral side
        ops += [Op(E(0, 0, 0.74, 1.4), "fat"),
                Op(E(0, 0, 0.63, 1.35), "muscle", mottle=0.02),
                Op(E(0, -0.66, 0.22, 0.5), "bone", "femur"),
                Op(E(0, -0.66, 0.17, 0.47), "marrow", "femur", mottle=0.03)]
        for s in (-1, 1):
            ops += [Op(E(s * 0.18, -0.1, 0.2, 0.185), "cartilage"),
                    Op(E(s * 0.18, -0.12, 0.18, 0.16), "bone", "femur"),
                    Op(E(s * 0.18, -0.12, 0.145, 0.125), "marrow", "femur", mottle=0.03)]
        ops += [Op(E(0, -0.02, 0.05, 0.09), "fat"),                            # notch
                Op(E(0, 0.195, 0.42, 0.11), "cartilage"),
                Op(E(0, 0.23, 0.4, 0.11), "bone", "tibia"),
                Op(E(0, 0.64, 0.22, 0.45), "bone", "tibia"),
                Op(E(0, 0.24, 0.36, 0.08), "marrow", "tibia", mottle=0.03),
                Op(E(0, 0.64, 0.17, 0.43), "marrow", "tibia", mottle=0.03),
                Op(E(0.44, 0.4, 0.07, 0.08), "bone"),                          # fibula head
                Op(E(-0.46, 0.05, 0.02, 0.22), "ligament"),                    # MCL
                Op(E(0.46, 0.05, 0.02, 0.2), "ligament")]                      # LCL
        menisci = [(-0.33, 0.09, 0.11, 0.048, "medial meniscus"),
                   (0.33, 0.09, 0.11, 0.048, "lateral meniscus")]
        acl = (0.03, -0.01, 0.04, 0.13, 0.35)
        show_acl = True
        effusion = E(0, -0.4, 0.1, 0.05)
    torn = int(rng.integers(2)) if finding == "meniscus tear" else -1
    for i, (mu, mv, ma, mb, where) in enumerate(menisci):
        if i == torn:
            ma, mb = ma * 1.2, mb * 1.35
        ops.append(Op(E(mu, mv, ma, mb), "meniscus", "meniscus"))
    if show_acl and not acl_tear:
        ops.append(Op(E(*acl), "ligament"))
    if finding == "meniscus tear":
        mu, mv, ma, mb, where = menisci[torn]
        ma, mb = ma * 1.2, mb * 1.35
        tilt = rng.uniform(0.15, 0.4) * (1 if rng.random() < 0.5 else -1)
        cyst_u = mu + math.copysign(ma * 0.9, mu)
        ops += [Op(E(mu, mv, ma * 0.85, 0.03, tilt), "fluid", lesion=True, edge=0.7),
                Op(E(cyst_u, mv, 0.06, 0.05), "fluid", lesion=True)]
        plan = Plan(ops, present, lesion_center=(mu, mv))
        plan.details.update(size=1.7 * ma, where=where)
        return plan
    if acl_tear:
        au, av, aa, ab, ath = acl
        du, dv = math.cos(ath) * aa * 0.75, math.sin(ath) * aa * 0.75
        ops += [Op(E(au - du, av - dv, aa * 0.3, ab, ath), "ligament"),      # femoral stump
                Op(E(au + du, av + dv, aa * 0.3, ab, ath), "ligament"),      # tibial stump
                Op(_mass(rng, au, av, _lesion_size(rng, 0.09, 0.12), "lobulated"), "fluid",
                   lesion=True),
                Op(effusion, "fluid")]
        plan = Plan(ops, present, lesion_center=(au, av))
        plan.details.update(size=aa * 0.9)
        return plan
    return Plan(ops, present, details=d)


def _spine_column(ops, u, v, a, b):
    """Sagittal/coronal spine: a disc-coloured column with vertebral bodies as stripes."""
    ops += [Op(E(u, v, a, b), "disc", "spine"),
            Op(("s", u, v, a, b, 2 * math.pi / 0.2, 0.0, -0.45), "vertebra", "spine")]


def _bowel(rng, ops, n, box):
    u0, u1, v0, v1 = box
    for _ in range(n):
        u, v, r = rng.uniform(u0, u1), rng.uniform(v0, v1), rng.uniform(0.045, 0.07)
        ops.append(Op(E(u, v, r, r * rng.uniform(0.7, 1.0)), "bowel", mottle=0.03))
        if rng.random() < 0.7:
            ops.append(Op(E(u, v, r * 0.45, r * 0.4), "gas"))


def _kidney(ops, u, v, a, b, th):
    ops += [Op(E(u, v, a, b, th), "kidney", "kidneys"),
            Op(E(u, v, a * 0.5, b * 0.55, th), "medulla", "kidneys")]


def _abdomen(rng, view, modality, finding) -> Plan:
    ops: list[Op] = []
    present: set[str] = set()
    need_liver = finding == "liver tumor"
    liver = None
    if view == "axial":
        zmax = 0.75 if modality == "MR" else 1.0
        z = rng.uniform(0.0, 0.45) if need_liver else rng.uniform(0.0, zmax)
        ops += [Op(E(0, 0.02, 0.86, 0.62), "fat"),
                Op(("d", E(0, 0.02, 0.8, 0.57), E(0, 0.02, 0.75, 0.52)), "muscle"),
                Op(E(-0.17, 0.45, 0.14, 0.09), "muscle"), Op(E(0.17, 0.45, 0.14, 0.09), "muscle"),
                Op(E(0, 0.33, 0.11, 0.1), "bone", "spine"),
                Op(E(0, 0.33, 0.085, 0.075), "marrow", "spine", mottle=0.03),
                Op(E(0, 0.47, 0.045, 0.07), "bone", "spine"),
                Op(E(0.06, 0.17, 0.055, 0.055), "aorta"),
                Op(E(-0.1, 0.16, 0.06, 0.045), "soft")]
        present.add("spine")
        if z < 0.62:
            s = 1 - 0.55 * (z / 0.62) ** 1.5
            liver = (-0.36 + 0.08 * (1 - s), -0.05, 0.37 * s, 0.4 * s, 0.2)
            ops.append(Op(E(*liver), "liver", "liver", mottle=0.015))
            present.add("liver")
        if z < 0.42:
            s = 1 - 0.4 * z / 0.42
            ops.append(Op(E(0.5, 0.14, 0.15 * s, 0.22 * s, -0.5), "spleen", "spleen"))
            present.add("spleen")
        if z < 0.38:
            ops += [Op(E(0.22, -0.22, 0.22, 0.15, -0.3), "stomach", "stomach"),
                    Op(E(0.22, -0.2, 0.17, 0.1, -0.3), "chyme", "stomach"),
                    Op(E(0.2, -0.3, 0.12, 0.04, -0.3), "gas", "stomach")]
            present.add("stomach")
        if 0.3 < z < 0.78:
            s = 0.6 + 0.4 * (1 - abs(z - 0.54) / 0.24)
            _kidney(ops, -0.3, 0.24, 0.1 * s, 0.14 * s, 0.4)
            _kidney(ops, 0.3, 0.24, 0.1 * s, 0.14 * s, -0.4)
            present.add("kidneys")
        if z > 0.35:
            _bowel(rng, ops, int(rng.integers(3, 6)), (-0.4, 0.45, -0.4, 0.05))
        if z > 0.75:
            ops += [Op(E(-0.52, 0.1, 0.22, 0.07, -0.6), "bone"), Op(E(0.52, 0.1, 0.22, 0.07, 0.6), "bone")]
        if z > 0.8:
            ops.append(Op(E(0, -0.2, 0.2, 0.16), "urine", "bladder"))
            present.add("bladder")
        node = (0.06 + (0.15 if rng.random() < 0.5 else -0.17), 0.12, "para-aortic")
    elif view == "coronal":
        dep = rng.uniform(0.0, 0.7) if need_liver else rng.uniform(0.0, 1.0)
        ops += [Op(E(0, 0.1, 0.78, 1.25), "fat"),
                Op(("d", E(0, 0.1, 0.72, 1.2), E(0, 0.1, 0.67, 1.16)), "muscle"),
                Op(E(-0.35, -0.98, 0.28, 0.3), "lung"), Op(E(0.35, -0.98, 0.28, 0.3), "lung"),
                Op(E(-0.5, 0.66, 0.2, 0.08, 0.5), "bone"), Op(E(0.5, 0.66, 0.2, 0.08, -0.5), "bone")]
        if dep < 0.6:
            _bowel(rng, ops, int(rng.integers(3, 6)), (-0.35, 0.35, 0.0, 0.5))
        if dep < 0.75:
            liver = (-0.33, -0.45, 0.36, 0.3, 0.15)
            ops.append(Op(E(*liver), "liver", "liver", mottle=0.015))
            present.add("liver")
        if dep > 0.4:
            ops.append(Op(E(0.45, -0.45, 0.14, 0.2, -0.4), "spleen", "spleen"))
            present.add("spleen")
        if dep < 0.5:
            ops += [Op(E(0.2, -0.42, 0.2, 0.16), "stomach", "stomach"),
                    Op(E(0.2, -0.4, 0.15, 0.11), "chyme", "stomach")]
            present.add("stomach")
        if dep > 0.45:
            _kidney(ops, -0.3, 0.02, 0.11, 0.19, -0.2)
            _kidney(ops, 0.3, 0.02, 0.11, 0.19, 0.2)
            present.add("kidneys")
        if dep > 0.5:
            ops += [Op(E(-0.17, 0.45, 0.09, 0.35, 0.2), "muscle"), Op(E(0.17, 0.45, 0.09, 0.35, -0.2), "muscle")]
        if dep > 0.7:
            _spine_column(ops, 0.0, 0.15, 0.1, 1.2)
            present.add("spine")
        if dep < 0.55:
            ops.append(Op(E(0, 0.78, 0.2, 0.15), "urine", "bladder"))
            present.add("bladder")
        node = (0.13 if rng.random() < 0.5 else -0.13, rng.uniform(0.05, 0.35), "para-aortic")
    else:  # sagittal: anterior to the viewer's right
        lat = rng.uniform(-1.0, -0.1) if need_liver else rng.uniform(-1.0, 1.0)
        ops += [Op(E(0.05, 0.1, 0.55, 1.25), "fat"),
                Op(("d", E(0.05, 0.1, 0.5, 1.2), E(0.05, 0.1, 0.45, 1.16)), "muscle"),
                Op(E(-0.05, -1.05, 0.35, 0.25), "lung")]
        if abs(lat) < 0.6:
            _bowel(rng, ops, int(rng.integers(3, 6)), (-0.05, 0.35, -0.1, 0.5))
        if lat < -0.05:
            liver = (0.0, -0.55, 0.38, 0.3, -0.2)
            ops.append(Op(E(*liver), "liver", "liver", mottle=0.015))
            present.add("liver")
        if lat > 0.5:
            ops.append(Op(E(-0.15, -0.5, 0.16, 0.22), "spleen", "spleen"))
            present.add("spleen")
        if 0.05 < lat < 0.6:
            ops += [Op(E(0.2, -0.45, 0.16, 0.2), "stomach", "stomach"),
                    Op(E(0.2, -0.43, 0.12, 0.15), "chyme", "stomach")]
            present.add("stomach")
        if 0.3 < abs(lat) < 0.8:
            _kidney(ops, -0.2, -0.05, 0.1, 0.18, 0.0)
            present.add("kidneys")
        if abs(lat - 0.1) < 0.25:
            ops.append(Op(E(-0.12, 0.1, 0.05, 1.2), "aorta"))
        if abs(lat) < 0.3:
            _spine_column(ops, -0.3, 0.1, 0.1, 1.3)
            present.add("spine")
        if abs(lat) < 0.4:
            ops.append(Op(E(0.2, 0.8, 0.17, 0.15), "urine", "bladder"))
            present.add("bladder")
        node = (-0.05, rng.uniform(-0.1, 0.4), "retroperitoneal")
    if modality == "MR":   # the MR abdomen vocabulary is liver, spleen, kidneys
        present &= {"liver", "spleen", "kidneys"}
    plan = Plan(ops, present)
    if finding == "liver tumor":
        lu, lv = _inside(rng, liver[0], liver[1], liver[2] * 0.8, liver[3] * 0.8, (0.0, 0.5))
        r = _lesion_size(rng, 0.06, 0.12)
        ops.append(Op(_mass(rng, lu, lv, r, "lobulated"), "hypo", lesion=True, clip="liver"))
        plan.lesion_center = (lu, lv)
        plan.details["size"] = 2 * r
    elif finding == "enlarged lymph node":
        r = _lesion_size(rng, 0.06, 0.085)
        ops.append(Op(_mass(rng, node[0], node[1], r, "smooth"), "node", lesion=True))
        plan.lesion_center = node[:2]
        plan.details.update(size=2 * r, where=node[2])
    return plan


@_register("MR", "abdomen")
def _mr_abdomen(rng, view, finding, subtype, grade):
    return _abdomen(rng, view, "MR", finding)


@_register("CT", "abdomen")
def _ct_abdomen(rng, view, finding, subtype, grade):
    return _abdomen(rng, view, "CT", finding)


@_register("CT", "chest")
def _ct_chest(rng, view, finding, subtype, grade):
    ops: list[Op] = []
    present = {"lungs"}
    if view == "axial":
        z = rng.uniform(0.0, 1.0)
        w = 0.8 + 0.2 * math.sin(math.pi * z)
        lungs = [(-0.4, 0.0, 0.32 * w, 0.44 * w, 0.1), (0.4, 0.0, 0.32 * w, 0.44 * w, -0.1)]
        ops += [Op(E(0, 0.02, 0.88, 0.6), "fat"),
                Op(("d", E(0, 0.02, 0.83, 0.56), E(0, 0.02, 0.78, 0.52)), "muscle"),
                Op(E(-0.55, 0.38, 0.2, 0.04, 0.5), "bone"), Op(E(0.55, 0.38, 0.2, 0.04, -0.5), "bone")]
        ops += [Op(E(*lg), "lung", "lungs", mottle=0.03) for lg in lungs]
        ops += [Op(E(0, 0.38, 0.1, 0.09), "bone", "spine"),
                Op(E(0, 0.38, 0.075, 0.065), "marrow", "spine", mottle=0.03),
                Op(E(0, 0.5, 0.04, 0.06), "bone", "spine"),
                Op(E(0, -0.5, 0.08, 0.03), "bone")]
        present.add("spine")
        if z > 0.4:
            h = 0.6 + 0.4 * min(1.0, (z - 0.4) / 0.3)
            ops.append(Op(E(0.1, -0.05, 0.27 * h, 0.23 * h, -0.4), "heart", "heart"))
            present.add("heart")
        if z < 0.35:
            ops.append(Op(E(0.03, -0.06, 0.16, 0.055, 0.3), "aorta", "aorta"))
        else:
            if z < 0.6:
                ops.append(Op(E(-0.03, -0.2, 0.065, 0.065), "aorta", "aorta"))
            ops.append(Op(E(0.12, 0.27, 0.06, 0.06), "aorta", "aorta"))
        present.add("aorta")
        for t in np.linspace(0.3, 2 * math.pi - 0.3, 8):
            ops.append(Op(E(0.84 * math.cos(t) * 0.93, 0.02 + 0.56 * math.sin(t) * 0.93, 0.03, 0.03), "bone"))
        nodes = [(-0.2, 0.0, "hilar"), (0.2, 0.02, "hilar"), (0.0, 0.12, "subcarinal")]
    elif view == "coronal":
        dep = rng.uniform(0.0, 1.0)
        lungs = [(-0.38, -0.12, 0.3, 0.6, 0.0), (0.38, -0.12, 0.3, 0.6, 0.0)]
        ops += [Op(E(0, 0.2, 0.9, 1.3), "fat"),
                Op(("d", E(0, 0.2, 0.85, 1.26), E(0, 0.2, 0.8, 1.22)), "muscle"),
                Op(E(-0.35, 0.78, 0.36, 0.26), "liver"), Op(E(0.35, 0.8, 0.26, 0.2), "soft")]
        ops += [Op(E(*lg), "lung", "lungs", mottle=0.03) for lg in lungs]
        if dep < 0.6:
            ops.append(Op(E(0.1, 0.3, 0.28, 0.24), "heart", "heart"))
            present.add("heart")
        if 0.3 < dep < 0.8:
            ops.append(Op(("d", E(0.03, -0.35, 0.12, 0.1), E(0.03, -0.33, 0.06, 0.05)), "aorta", "aorta"))
            if dep > 0.5:
                ops.append(Op(E(0.1, 0.1, 0.05, 0.4), "aorta", "aorta"))
            present.add("aorta")
        if 0.3 < dep < 0.7:
            ops.append(Op(E(0, -0.75, 0.04, 0.3), "gas"))
        if dep > 0.65:
            _spine_column(ops, 0.0, 0.1, 0.09, 1.3)
            present.add("spine")
        nodes = [(-0.15, -0.1, "hilar"), (0.15, -0.1, "hilar"), (0.0, -0.05, "mediastinal")]
    else:  # sagittal
        lat = rng.uniform(-0.9, 0.9)
        lung = (0.0, -0.1, 0.42, 0.62, 0.0)
        lungs = [lung]
        ops += [Op(E(0.05, 0.15, 0.6, 1.3), "fat"),
                Op(("d", E(0.05, 0.15, 0.55, 1.26), E(0.05, 0.15, 0.5, 1.22)), "muscle"),
                Op(E(0.05, 0.98, 0.45, 0.26), "liver"),
                Op(E(*lung), "lung", "lungs", mottle=0.03),
                Op(E(0.5, 0.0, 0.04, 0.35), "bone")]
        if abs(lat) < 0.55:
            hs = 1 - abs(lat) / 1.1
            ops.append(Op(E(0.2, 0.25, 0.25 * hs, 0.27 * hs), "heart", "heart"))
            present.add("heart")
        if abs(lat) < 0.3:
            ops += [Op(("d", E(0.0, -0.35, 0.15, 0.12), E(0.0, -0.33, 0.09, 0.06)), "aorta", "aorta"),
                    Op(E(-0.2, 0.2, 0.05, 0.45), "aorta", "aorta")]
            present.add("aorta")
        if abs(lat) < 0.25:
            _spine_column(ops, -0.45, 0.1, 0.1, 1.3)
            present.add("spine")
        nodes = [(0.0, -0.05, "hilar"), (0.05, -0.2, "mediastinal")]
    plan = Plan(ops, present)
    if finding == "covid-19 pneumonia":
        n = int(rng.integers(2, 6))
        sizes = sorted(_lesion_size(rng, 0.11, 0.18, size=n), reverse=True)
        for i, r in enumerate(sizes):
            lu_, lv_, la, lb, _ = lungs[i % len(lungs)] if i < 2 else lungs[int(rng.integers(len(lungs)))]
            pu, pv = _edge_point(lu_, lv_, la, lb, rng.uniform(0, 2 * math.pi), inset=r * 0.95)
            ops.append(Op(E(pu, pv, r, r * rng.uniform(0.7, 1.0), rng.uniform(0, 3)), "ggo",
                          lesion=True, satellite=i > 0, clip="lungs", mottle=0.06, edge=1.6))
            if i == 0:
                plan.lesion_center = (pu, pv)
        plan.details.update(size=2 * sizes[0], count=n)
    elif finding == "lung adenocarcinoma":
        lu_, lv_, la, lb, _ = lungs[int(rng.integers(len(lungs)))]
        cu, cv = _inside(rng, lu_, lv_, la, lb, (0.2, 0.55))
        if subtype == "adenocarcinoma in situ":
            r = _lesion_size(rng, 0.07, 0.09)
            ops.append(Op(_mass(rng, cu, cv, r, "smooth"), "ggo", lesion=True, edge=1.4))
            margin = "smooth"
        elif subtype == "minimally invasive adenocarcinoma":
            r = _lesion_size(rng, 0.09, 0.11)
            ops += [Op(_mass(rng, cu, cv, r, "smooth"), "ggo", lesion=True, edge=1.4),
                    Op(_mass(rng, cu, cv, r * 0.4, "smooth"), "nodule")]
            margin = "smooth"
        else:
            g = int(grade[-1])
            r = _lesion_size(rng, *{1: (0.075, 0.095), 2: (0.1, 0.125), 3: (0.13, 0.16)}[g])
            margin = {1: "smooth", 2: "lobulated", 3: "spiculated"}[g]
            ops.append(Op(_mass(rng, cu, cv, r, margin), "nodule", lesion=True))
        plan.lesion_center = (cu, cv)
        plan.details.update(size=2 * r, margin=margin)
    elif finding == "enlarged lymph node":
        nu, nv, where = nodes[int(rng.integers(len(nodes)))]
        r = _lesion_size(rng, 0.055, 0.08)
        ops.append(Op(_mass(rng, nu, nv, r, "smooth"), "node", lesion=True))
        plan.lesion_center = (nu, nv)
        plan.details.update(size=2 * r, where=where)
    return plan


@_register("DR", "chest")
def _dr_chest(rng, view, finding, subtype, grade):
    ops: list[Op] = []
    rib_freq = 2 * math.pi / 0.17
    if view == "frontal":
        lungs = [(-0.4, -0.08, _jit(rng, 0.3), _jit(rng, 0.56), 0.05),
                 (0.4, -0.08, _jit(rng, 0.3), _jit(rng, 0.56), -0.05)]
        ops += [Op(E(0, 0.3, 1.02, 1.35), "dr_body", edge=2.5),
                Op(E(0, -0.95, 0.28, 0.3), "dr_body", edge=2.0)]
        ops += [Op(E(*lg), "dr_lung", "lungs", mottle=0.035, edge=1.8) for lg in lungs]
        ops += [Op(E(0, -0.25, 0.13, 0.55), "dr_medi", edge=1.8),
                Op(E(0, -0.62, 0.04, 0.25), "dr_trachea", edge=1.5),
                Op(E(0.1, 0.25, _jit(rng, 0.3), _jit(rng, 0.24), -0.2), "dr_heart", "heart", edge=1.8),
                Op(("s", 0.0, 0.0, 0.07, 1.3, 2 * math.pi / 0.16, 0.0, -0.4), "bone", add=0.12)]
        for (lu_, lv_, la, lb, _), s in zip(lungs, (-1, 1)):
            ops.append(Op(("s", lu_, lv_, la * 1.15, lb * 1.05, rib_freq, 0.6, 0.5), "bone",
                          "ribs", add=0.2))
            ops.append(Op(E(s * 0.33, -0.67, 0.3, 0.035, -s * 0.2), "bone", "clavicles", add=0.45))
        present = {"lungs", "heart", "ribs", "clavicles"}
    else:  # lateral, anterior to the viewer's right
        lungs = [(0.0, -0.05, _jit(rng, 0.5), _jit(rng, 0.58), 0.0)]
        ops += [Op(E(0.0, 0.25, 0.82, 1.4), "dr_body", edge=2.5),
                Op(E(*lungs[0]), "dr_lung", "lungs", mottle=0.035, edge=1.8),
                Op(E(0.22, 0.28, 0.3, 0.28), "dr_heart", "heart", edge=1.8),
                Op(("s", -0.55, 0.1, 0.09, 1.3, 2 * math.pi / 0.16, 0.0, -0.4), "bone", "spine",
                   add=0.35),
                Op(E(0.6, -0.05, 0.035, 0.4), "bone", add=0.3),
                Op(("s", 0.0, -0.05, 0.55, 0.6, rib_freq, -0.3, 0.6), "bone", add=0.08)]
        present = {"lungs", "heart", "spine"}
    plan = Plan(ops, present)
    if finding == "pneumonia":
        lu_, lv_, la, lb, _ = lungs[int(rng.integers(len(lungs)))]
        cu, cv = _inside(rng, lu_, lv_ + lb * 0.15, la * 0.8, lb * 0.7, (0.0, 0.6))
        r = _lesion_size(rng, 0.13, 0.2)
        ops.append(Op(E(cu, cv, r, r * rng.uniform(0.7, 1.0), rng.uniform(0, 3)), "dr_consol",
                      lesion=True, clip="lungs", mottle=0.05, edge=2.0))
        plan.lesion_center = (cu, cv)
        plan.details["size"] = 2 * r
    return plan


# --------------------------------------------------------------------------------------------
# Placement: flips + translation so that the target organ lands in a chosen quadrant
# --------------------------------------------------------------------------------------------

_MARGIN_FRAC = 0.18      # centroid at least this far (normalized) from the midlines
_MAX_SHIFT = 0.34
_MAX_SHIFT_V = 0.42


def _axis(rng, c: float, sign: int, flip_p: float, T: float) -> tuple[int, float]:
    """Flip and shift along one axis so that the centroid c lands on side `sign`, with margin.
    Flips happen with probability flip_p when not needed, and always when a shift can't reach."""
    m = _MARGIN_FRAC
    if abs(c) < m:
        f = -1 if rng.random() < flip_p else 1
    elif (c > 0) == (sign > 0):
        f = 1
    else:
        reach = abs(c) + m <= T
        f = -1 if (not reach or rng.random() < flip_p) else 1
    pc = f * c
    lo, hi = m, max(m + 0.05, min(abs(pc) + T, 0.62)) if pc * sign > 0 else m + 0.15
    p = sign * rng.uniform(lo, hi)
    return f, float(np.clip(p - pc, -T, T))


def _organ_centroid(plan: Plan, organ: str) -> tuple[float, float]:
    su = sv = sw = 0.0
    for op in plan.ops:
        if op.organ == organ:
            u, v, w = _centre_weight(op.shape)
            su, sv, sw = su + u * w, sv + v * w, sw + w
    return su / sw, sv / sw


def _place(rng, plan: Plan, target: str, quadrant: str):
    cu, cv = _organ_centroid(plan, target)
    sv = -1 if quadrant.startswith("upper") else 1
    su = -1 if quadrant.endswith("left") else 1
    # left-right mirroring is common in archives; upside-down images only when a shift can't do
    fx, tx = _axis(rng, cu, su, 0.5, _MAX_SHIFT)
    fy, ty = _axis(rng, cv, sv, 0.0, _MAX_SHIFT_V)
    if plan.lesion_center is not None:   # keep the lesion inside the field
        lu, lv = plan.lesion_center
        px, py = fx * lu + tx, fy * lv + ty
        tx -= max(0.0, abs(px) - 0.8) * math.copysign(1, px)
        ty -= max(0.0, abs(py) - 0.8) * math.copysign(1, py)
    return fx, fy, tx, ty


# --------------------------------------------------------------------------------------------
# Modality physics
# --------------------------------------------------------------------------------------------

_INTERP: dict[tuple[int, int], np.ndarray] = {}


def _interp_matrix(size: int, n: int) -> np.ndarray:
    key = (size, n)
    if key not in _INTERP:
        pos = (np.arange(size) + 0.5) / size * (n - 1)
        i0 = np.clip(np.floor(pos).astype(int), 0, n - 2)
        w = pos - i0
        A = np.zeros((size, n), dtype=np.float32)
        A[np.arange(size), i0] = 1 - w
        A[np.arange(size), i0 + 1] = w
        _INTERP[key] = A
    return _INTERP[key]


def _texture(rng, n: int = 12) -> np.ndarray:
    return rng.standard_normal((n, n), dtype=np.float32) * 1.6


def _upsample(small: np.ndarray, size: int) -> np.ndarray:
    A = _interp_matrix(size, small.shape[0])
    return A @ small @ A.T


_NOISE: dict[int, np.ndarray] = {}


def _noise(rng, size: int, n: int) -> np.ndarray:
    """n unit-Gaussian [size, size] fields: random crops (with random sign) of a fixed bank.
    Drawing 4k Gaussians per image would cost more than the whole drawing; the bank is
    generated once per size from a constant seed, so cases stay pure functions of their inputs."""
    bank = _NOISE.get(size)
    if bank is None:
        bank = _NOISE[size] = np.random.default_rng(20240607).standard_normal(
            (4, 4 * size, 4 * size), dtype=np.float32)
    r, c = rng.integers(0, 3 * size, size=2)
    k = int(rng.integers(4))
    fields = bank[:, r:r + size, c:c + size]
    idx = [(k + j) % 4 for j in range(n)]
    return fields[idx]


def _finish(img: np.ndarray, modality: str, xs: np.ndarray, rng) -> np.ndarray:
    S = img.shape[0]
    if modality == "CT":
        img += _noise(rng, S, 1)[0] * 0.012
    elif modality == "MR":
        bx, by, bq = rng.uniform(-0.3, 0.3, size=3)
        q = xs * xs * (-0.15 * abs(bq))
        img *= (1.0 + bx * xs + q)[None, :]
        img *= (1.0 + by * xs + q)[:, None]
        n = _noise(rng, S, 2)
        img += n[0] * 0.045
        np.multiply(img, img, out=img)
        img += (n[1] * 0.045) ** 2
        np.sqrt(img, out=img)
    else:  # DR: vertical gradient, slight blur of the projection, fine grain
        g = rng.uniform(0.08, 0.16)
        img += (g * xs)[:, None]
        img[1:-1] = (img[1:-1] * 2 + img[:-2] + img[2:]) * 0.25
        img[:, 1:-1] = (img[:, 1:-1] * 2 + img[:, :-2] + img[:, 2:]) * 0.25
        img += _noise(rng, S, 1)[0] * 0.01
    img *= 255.0
    img += 0.5
    np.maximum(img, 0.0, out=img)
    np.minimum(img, 255.0, out=img)
    return img.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------

_MOD_PHRASE = {
    "CT": ("a CT scan", "a CT image", "a computed tomography scan", "a CT slice",
           "a computed tomography image"),
    "MR": ("an MRI image", "an MRI scan", "an MR image", "a magnetic resonance image",
           "an MRI slice"),
    "DR": ("an X-ray radiograph", "a radiograph", "a digital X-ray image", "a plain radiograph",
           "an X-ray image"),
}
_MOD_SHORT = {"CT": ("CT", "CT scan", "computed tomography"),
              "MR": ("MRI", "MR image", "MRI scan"),
              "DR": ("X-ray", "radiograph")}
#: Reports say "top left" as often as "upper left"; a model that saw one wording only would meet the
#: other first in the zero-shot prompts (evals/prompts/localization.yaml uses both).
REGION_WORDS = {"upper left": ("upper left", "top left"), "upper right": ("upper right", "top right"),
                "lower left": ("lower left", "bottom left"), "lower right": ("lower right", "bottom right")}
_PART = {("MR", "head"): ("brain", "head"), ("CT", "head"): ("head", "brain"),
         ("CT", "chest"): ("chest", "thorax"), ("DR", "chest"): ("chest",),
         ("MR", "abdomen"): ("abdomen",), ("CT", "abdomen"): ("abdomen",),
         ("MR", "knee"): ("knee",)}
_PLURAL = {"lungs", "kidneys", "ribs", "clavicles", "ventricles"}
#: Pertinent negatives, phrased the way reports state them ("no pneumonia"): a normal study names
#: the findings its combo looks for as absent, and an abnormal one may name the others. Generic
#: "no abnormality" teaches nothing about what absence of *this* finding looks like.
_NEGATED_PHRASE = {  # the bare phrases of each finding, as a list item ("no X or Y") ...
    "tumor": ("tumor", "brain tumor"),
    "hemorrhage": ("hemorrhage", "intracranial hemorrhage"),
    "acl tear": ("ACL tear",),
    "meniscus tear": ("meniscus tear",),
    "covid-19 pneumonia": ("COVID-19 pneumonia", "ground-glass opacities"),
    "lung adenocarcinoma": ("lung adenocarcinoma", "lung nodule", "lung mass"),
    "enlarged lymph node": ("enlarged lymph node", "lymphadenopathy"),
    "liver tumor": ("liver tumor", "liver lesion"),
    "pneumonia": ("pneumonia", "consolidation"),
}
#: ... and stated as present, with their articles. The same phrases both ways, and the article rule of
#: the counterfactuals: a phrase that only ever appeared negated, or an affirmation worded otherwise,
#: would tell a counterfactual that affirms it from every real caption.
_FINDING_PHRASE = {f: tuple(map(with_article, ps)) for f, ps in _NEGATED_PHRASE.items()}


#: Report frames of the abnormality captions, shared by normal and abnormal studies. Why shared: with
#: frames of their own ("normal ...: no X" only for normal studies, "X on ..." only for abnormal ones),
#: a counterfactual ("no X" <-> "X") was told from the true caption by its frame alone, given any image
#: of the body part, and the text tower learned that instead of the finding.
_FINDING_FRAMES = (
    "{m} of the {part} showing {x}",
    "{v} {m} of the {part} with {x}",
    "{part} {m}: {x}",
    "{x} on {v} {m} of the {part}",
    "{v} {m} of the {part}, {x} seen",
)


def _an(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


_COMBO_FINDINGS = {(c.modality, c.anatomy): c.findings for c in COMBOS}


def _negatives(rng, findings) -> str:
    """ "X", "X or Y", ... naming `findings` in a random order, or "" when there are none."""
    names = [_pick(rng, _NEGATED_PHRASE[f]) for f in findings]
    if len(names) < 2:
        return "".join(names)
    rng.shuffle(names)
    return ", ".join(names[:-1]) + " or " + names[-1]


def _captions(rng, case: dict, details: dict, fov: float) -> dict[str, str]:
    mod, anat, view = case["modality"], case["anatomy"], case["view"]
    m = _pick(rng, _MOD_SHORT[mod])
    part = _pick(rng, _PART[(mod, anat)])
    v = "frontal" if view == "frontal" and rng.random() < 0.7 else ("PA" if view == "frontal" else view)
    caps = {"modality": _pick(rng, _MOD_PHRASE[mod])}
    organs = list(case["organs"])
    rng.shuffle(organs)
    ol = _join(["the " + o for o in organs])
    caps["anatomy"] = _pick(rng, (
        f"{v} {m} of the {part} showing {ol}",
        f"{m} of the {part}, {v} view, with {ol} visible",
        f"{_an(v)} {part} {m} showing {ol}",
        f"{v} {part} {m}: {ol}",
    ))
    org, reg = case["target_organ"], _pick(rng, REGION_WORDS[case["target_region"]])
    be = "are" if org in _PLURAL else "is"
    caps["localization"] = _pick(rng, (
        f"{v} {m} of the {part}: the {org} {be} in the {reg} of the image",
        f"{m} of the {part} with the {org} in the {reg}",
        f"the {org} {be} in the {reg} quadrant of this {v} {m} image",
        f"{v} {part} {m}, {org} at the {reg}",
    ))
    finding = case["finding"]
    combo_findings = _COMBO_FINDINGS[(mod, anat)]
    frame = _pick(rng, _FINDING_FRAMES)
    if finding == "none":
        caps["abnormality"] = frame.format(m=m, part=part, v=v, x="no " + (_negatives(rng, combo_findings)
                                                                        or "abnormality"))
        return caps
    caps["abnormality"] = frame.format(m=m, part=part, v=v, x=_pick(rng, _FINDING_PHRASE[finding]))
    others = _negatives(rng, [f for f in combo_findings if f != finding])
    if others and rng.random() < 0.5 and frame.endswith("{x}"):  # "...: X; no Y" reads as "...: no X or Y"
        caps["abnormality"] += f"; no {others}"
    caps["grading"] = _grading_caption(rng, case, details, fov, m, part, v)
    return caps


def _grading_caption(rng, case, details, fov, m, part, v) -> str:
    finding, sub, grade = case["finding"], case["subtype"], case["grade"]
    mm = max(1, int(round(details.get("size", 0.0) * fov / 2)))
    if sub == "glioma":
        det = _pick(rng, (f"glioma, {grade}, {mm} mm", f"{grade} glioma, {mm} mm"))
    elif sub == "meningioma":
        det = f"meningioma, WHO {grade}, {mm} mm"
    elif sub == "pituitary adenoma":
        kind = "macroadenoma" if mm >= 10 else "microadenoma"
        det = f"pituitary adenoma ({kind}), {mm} mm"
    elif finding == "hemorrhage":
        det = f"{sub} hemorrhage, {mm} mm" + ("" if sub == "intraparenchymal" else " thick")
    elif finding == "lung adenocarcinoma":
        density = {"adenocarcinoma in situ": "pure ground-glass",
                   "minimally invasive adenocarcinoma": "part-solid"}.get(sub, "solid")
        g = f", {grade}" if grade else ""
        det = f"{sub}{g}, {mm} mm {density} nodule with {details['margin']} margins"
    elif finding == "covid-19 pneumonia":
        det = (f"COVID-19 pneumonia with {details['count']} peripheral ground-glass opacities, "
               f"largest {mm} mm")
    elif finding == "enlarged lymph node":
        det = f"enlarged {details['where']} lymph node, {mm} mm short axis"
    elif finding == "liver tumor":
        det = f"hypodense liver tumor, {mm} mm"
    elif finding == "acl tear":
        det = f"ACL tear with a {mm} mm fluid-filled gap"
    elif finding == "meniscus tear":
        det = f"meniscus tear of the {details['where']}, {mm} mm"
    else:  # pneumonia
        det = f"pneumonia with a {mm} mm consolidation"
    reg = _pick(rng, REGION_WORDS[case["finding_region"]])
    return _pick(rng, (
        f"{m} of the {part}: {det}, at the {reg}",
        f"{v} {part} {m} showing {det} in the {reg}",
        f"{det} ({reg}) on {m} of the {part}",
    ))


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PhantomCase:
    image: np.ndarray            # uint8 [size, size], grayscale
    modality: str                # "CT" | "MR" | "DR"
    anatomy: str                 # "head" | "chest" | "abdomen" | "knee"
    view: str                    # "axial" | "sagittal" | "coronal" | "frontal" | "lateral"
    organs: tuple[str, ...]      # visible organs, sorted
    target_organ: str
    target_region: str           # one of phases.REGIONS
    finding: str                 # "none" or a finding name
    finding_region: str          # "" when finding == "none"
    subtype: str                 # "" when none
    grade: str                   # "" when none
    captions: dict[str, str]     # phase -> caption; "grading" only for abnormal cases


def _draw_finding(rng, combo: Combo, view: str, finding: str | None = None) -> tuple[str, str, str]:
    """(finding, subtype, grade); `finding` given (a cohort case) fixes the finding, not its subtype."""
    if finding is None:
        if not combo.findings or rng.random() < 0.5:
            return "none", "", ""
        finding = _pick(rng, combo.findings)
    subtypes = SUBTYPES.get(finding, ())
    if finding == "tumor" and view == "axial":
        subtypes = tuple(s for s in subtypes if s != "pituitary adenoma")
    subtype = _pick(rng, subtypes) if subtypes else ""
    grades = GRADES.get(subtype, ())
    grade = _pick(rng, grades) if grades else ""
    return finding, subtype, grade


def _centroid(mask: np.ndarray) -> tuple[float, float, float]:
    w = float(mask.sum())
    if w <= 0:
        return 0.0, 0.0, 0.0
    idx = np.arange(mask.shape[0], dtype=np.float32)
    row = float(mask.sum(axis=1) @ idx) / w
    col = float(mask.sum(axis=0) @ idx) / w
    return row + 0.5, col + 0.5, w


def mask_region(mask: np.ndarray) -> str:
    """REGIONS quadrant of a mask's centroid (pixel centres at i + 0.5)."""
    row, col, _ = _centroid(mask)
    return region_of(row, col, mask.shape[0], mask.shape[1])


def render_case(seed: int, index: int, size: int = 64,
                cohort: str | None = None) -> tuple[PhantomCase, dict[str, np.ndarray]]:
    """Generate a case and return it with its soft masks: one per visible organ, plus "lesion"
    and "lesions" for abnormal cases. `cohort` (a COHORTS name) draws the case from that cohort.

    Masks are float32 [size, size] in [0, 1]; ``target_region == mask_region(masks[target])``
    and, for abnormal cases, ``finding_region`` is the quadrant of the main lesion component.
    """
    # One generator; draw order scene -> captions -> noise keeps the scene and its captions
    # independent of `size` (only the noise depends on it).
    rng = np.random.default_rng([int(seed), int(index)])
    scene_rng = noise_rng = text_rng = rng
    if cohort is None:
        combo, forced = COMBOS[int(scene_rng.integers(len(COMBOS)))], None
    else:
        modality, anatomy, forced = COHORTS[cohort]
        combo = next(c for c in COMBOS if (c.modality, c.anatomy) == (modality, anatomy))
    view = _pick(scene_rng, combo.views)
    finding, subtype, grade = _draw_finding(scene_rng, combo, view, forced)
    plan = _BUILDERS[(combo.modality, combo.anatomy)](scene_rng, view, finding, subtype, grade)
    # organs outside the combo's vocabulary (e.g. the spine on MR abdomen) are drawn, never labelled
    present = sorted(plan.present & set(combo.organs))
    target = _pick(scene_rng, present)
    quadrant = _pick(scene_rng, REGIONS)
    fx, fy, tx, ty = _place(scene_rng, plan, target, quadrant)

    tex = _texture(scene_rng)   # low-frequency, size-independent draw
    canvas = _Canvas(size, fx, fy, tx, ty, combo.modality, tex)
    for op in plan.ops:
        canvas.draw(op)
    min_area = max(4.0, 0.002 * size * size)
    areas = {o: float(canvas.organs[o].sum()) for o in present if o in canvas.organs}
    visible = tuple(sorted(o for o, a in areas.items() if a >= min_area))
    if target not in visible:
        target = _pick(scene_rng, visible) if visible else max(areas, key=areas.get)
    target_region = mask_region(canvas.organs[target])
    finding_region = mask_region(canvas.main_lesion) if finding != "none" else ""
    fields = dict(modality=combo.modality, anatomy=combo.anatomy, view=view,
                  organs=visible or (target,), target_organ=target, target_region=target_region,
                  finding=finding, finding_region=finding_region, subtype=subtype, grade=grade)
    captions = _captions(text_rng, fields, plan.details, combo.fov_mm)
    image = _finish(canvas.img, combo.modality, canvas.xs, noise_rng)
    case = PhantomCase(image=image, captions=captions, **fields)
    masks = {o: canvas.organs[o] for o in fields["organs"]}
    if finding != "none":
        masks["lesion"] = canvas.main_lesion      # the lesion that finding_region describes
        masks["lesions"] = canvas.lesion          # all lesion components (e.g. every GGO patch)
    return case, masks


def generate_case(seed: int, index: int, size: int = 64, cohort: str | None = None) -> PhantomCase:
    """One phantom case, a pure function of (seed, index, size, cohort)."""
    return render_case(seed, index, size, cohort)[0]


# --------------------------------------------------------------------------------------------
# Dataset writer
# --------------------------------------------------------------------------------------------

_META = ("modality", "anatomy", "view", "organs", "target_organ", "target_region", "finding",
         "finding_region", "subtype", "grade")


def _schema(split: str):
    import pyarrow as pa
    cols = [("image_id", pa.string()), ("image", pa.binary())]
    if split == "train":
        cols += [("caption", pa.string()), ("phase", pa.string()), ("phase_index", pa.int8())]
    cols += [(k, pa.list_(pa.string()) if k == "organs" else pa.string()) for k in _META]
    cols += [("source", pa.string()), ("synthetic", pa.bool_())]
    if split == "eval":
        cols += [(f"caption_{p}", pa.string()) for p in PHASES]
    return pa.schema(cols)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _split_cases(split: str, n: int, n_cohort: int) -> list[tuple[int, str, str | None]]:
    """(generator index, image_id, cohort) of a split: `n` general cases, then `n_cohort` cohort cases
    taking the COHORTS in turn."""
    offset = 0 if split == "train" else EVAL_INDEX_OFFSET
    names = list(COHORTS)
    return ([(offset + i, f"phantom-{split}-{i:06d}", None) for i in range(n)]
            + [(COHORT_INDEX_OFFSET + offset + j, f"phantom-{split}-cohort-{j:06d}", names[j % len(names)])
               for j in range(n_cohort)])


def _write_split(out: Path, split: str, n: int, seed: int, size: int, rows_per_shard: int,
                 bar, n_cohort: int = 0) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq
    schema = _schema(split)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*.parquet"):
        old.unlink()
    rows: dict[str, list] = {name: [] for name in schema.names}
    stats = {k: Counter() for k in ("by_phase", "by_modality", "by_anatomy", "by_view", "by_finding", "by_cohort")}
    n_rows, shard, files = 0, 0, []

    def flush():
        nonlocal shard, rows
        if not rows["image_id"]:
            return
        name = f"part-{shard:05d}.parquet"
        pq.write_table(pa.table(rows, schema=schema), out / name)
        files.append(name)
        shard += 1
        rows = {name_: [] for name_ in schema.names}

    for index, image_id, cohort in _split_cases(split, n, n_cohort):
        case = generate_case(seed, index, size, cohort)
        base = {"image_id": image_id, "image": _png(case.image),
                **{k: (list(case.organs) if k == "organs" else getattr(case, k)) for k in _META},
                "source": "phantom" if cohort is None else f"phantom/{cohort}", "synthetic": True}
        phases = [p for p in PHASES if p in case.captions]
        k = len(phases) if split == "train" else 1
        if rows["image_id"] and len(rows["image_id"]) + k > rows_per_shard:
            flush()
        if split == "train":
            for p in phases:
                for key, val in base.items():
                    rows[key].append(val)
                rows["caption"].append(case.captions[p])
                rows["phase"].append(p)
                rows["phase_index"].append(PHASE_INDEX[p])
        else:
            for key, val in base.items():
                rows[key].append(val)
            for p in PHASES:
                rows[f"caption_{p}"].append(case.captions.get(p))
        n_rows += k
        stats["by_phase"].update(phases)
        stats["by_modality"][case.modality] += 1
        stats["by_anatomy"][case.anatomy] += 1
        stats["by_view"][case.view] += 1
        stats["by_finding"][case.finding] += 1
        stats["by_cohort"][cohort or "general"] += 1
        if bar is not None:
            bar.update(1)
    flush()
    return {"images": n, "cohort_images": n_cohort, "rows": n_rows, "files": files,
            **{k: dict(sorted(v.items())) for k, v in stats.items()}}


def write_phantom_dataset(out_dir, n_train_images: int = 2000, n_eval_images: int = 600,
                          seed: int = 0, size: int = 64, rows_per_shard: int = 4096,
                          progress: bool = True, cohort_fraction: float = 0.0) -> dict:
    """Write train (one row per image-caption pair) and eval (one row per image) parquet shards
    and ``data_card.json``; return the card. Identical inputs give byte-identical files.
    `cohort_fraction`: each split also gets round(fraction x its size) disease-cohort cases (COHORTS)."""
    from tqdm.auto import tqdm
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sizes = {"train": n_train_images, "eval": n_eval_images}
    extra = {split: round(cohort_fraction * n) for split, n in sizes.items()}
    bar = tqdm(total=sum(sizes.values()) + sum(extra.values()), desc="phantom", unit="img", disable=not progress)
    try:
        splits = {split: _write_split(out / split, split, n, seed, size, rows_per_shard, bar, extra[split])
                  for split, n in sizes.items()}
    finally:
        bar.close()
    card = {
        "synthetic": True,
        "generator": "radisim.curriculum.phantom",
        "seed": seed,
        "size": size,
        "eval_index_offset": EVAL_INDEX_OFFSET,
        "cohort_fraction": cohort_fraction,
        "cohorts": {name: dict(zip(("modality", "anatomy", "finding"), v)) for name, v in COHORTS.items()},
        "splits": splits,
        "catalog": catalog(),
        "note": "SYNTHETIC phantom data, not patient images",
    }
    (out / "data_card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card
