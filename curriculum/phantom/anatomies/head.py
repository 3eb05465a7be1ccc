"""MR and CT head: skull, brain, ventricles, pituitary in three views; brain tumours (MR) and
intracranial haemorrhages (CT)."""
from __future__ import annotations

import math

from ..scene import E, Op, Plan, _edge_point, _inside, _jit, _lesion_size, _mass, _register


def _axial(rng, ops: list[Op], present: set[str], d: dict, want_pit: bool) -> tuple:
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
    return (cu, cv, a, b)


def _sagittal(rng, ops: list[Op], present: set[str], d: dict, want_pit: bool) -> tuple:
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
    d["sella"] = (0.12, 0.2)
    return (cu, cv, a, b)


def _coronal(rng, ops: list[Op], present: set[str], d: dict, want_pit: bool) -> tuple:
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
    d["sella"] = (0.0, 0.28)
    return (cu, cv, a, b)


#: view -> builder of the normal anatomy; each appends its ops and returns the brain ellipse.
_VIEWS = {"axial": _axial, "sagittal": _sagittal, "coronal": _coronal}


def _head(rng, view, modality, finding, subtype, grade) -> Plan:
    ops: list[Op] = []
    present = {"brain"}
    d = {}
    # a pituitary adenoma needs the sella in the slice: sagittal at the midline, coronal through it
    brain = _VIEWS[view](rng, ops, present, d, subtype == "pituitary adenoma")
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


def _glioma(rng, ops, brain, grade):
    cu, cv, a, b = brain
    lu, lv = _inside(rng, cu, cv, a * 0.8, b * 0.8, (0.15, 0.5))
    if grade == "low grade":
        r = _lesion_size(rng, 0.1, 0.13)
        ops.append(Op(_mass(rng, lu, lv, r, "smooth"), "lgg", lesion=True, clip="brain"))
    else:
        r = _lesion_size(rng, 0.13, 0.17)
        ops += [Op(_mass(rng, lu, lv, r * 1.5, "lobulated"), "edema", clip="brain"),
                Op(_mass(rng, lu, lv, r, "lobulated"), "enhancing", lesion=True, clip="brain"),
                Op(_mass(rng, lu, lv, r * 0.55, "smooth"), "necrosis")]
    return lu, lv, r


def _meningioma(rng, ops, view, brain, grade):
    """Extra-axial, on the convexity; size and margin grow with the WHO grade, grade 3 with edema."""
    cu, cv, a, b = brain
    g = int(grade[-1])
    r = _lesion_size(rng, *{1: (0.085, 0.1), 2: (0.11, 0.13), 3: (0.14, 0.17)}[g])
    t = _convexity_angle(rng, view)
    lu, lv = _edge_point(cu, cv, a, b, t, inset=r * 0.45)
    margin = {1: "smooth", 2: "lobulated", 3: "spiculated"}[g]
    if g == 3:
        ops.append(Op(_mass(rng, lu, lv, r * 1.6, "lobulated"), "edema", clip="intracranial"))
    ops.append(Op(_mass(rng, lu, lv, r, margin), "enhancing", lesion=True, clip="intracranial"))
    return lu, lv, r


def _brain_tumor(rng, plan, view, brain, subtype, grade):
    ops = plan.ops
    if subtype == "glioma":
        lu, lv, r = _glioma(rng, ops, brain, grade)
    elif subtype == "meningioma":
        lu, lv, r = _meningioma(rng, ops, view, brain, grade)
    else:  # pituitary adenoma, at the midline sella, expanding upwards
        su, sv = plan.details["sella"]
        r = _lesion_size(rng, 0.07, 0.1)
        lu, lv = su, sv - r * 0.5
        ops.append(Op(_mass(rng, lu, lv, r, "smooth"), "enhancing", lesion=True))
    plan.lesion_center = (lu, lv)
    plan.details["size"] = 2 * r


def _epidural(rng, ops, view, brain):
    """Lens-shaped collection at the convexity; its size is the thickness."""
    cu, cv, a, b = brain
    t = _convexity_angle(rng, view)
    thick = _lesion_size(rng, 0.1, 0.13)
    lu, lv = _edge_point(cu, cv, a, b, t, inset=0.01)
    tang = math.atan2(b * math.cos(t), -a * math.sin(t))
    ops.append(Op(E(lu, lv, rng.uniform(0.24, 0.3), thick, tang), "blood", lesion=True,
                  clip="intracranial"))
    return (*_edge_point(cu, cv, a, b, t, inset=thick * 0.5), thick)


def _subdural(rng, ops, view, brain):
    """Crescent along the inner table; its size is the thickness."""
    cu, cv, a, b = brain
    t = _convexity_angle(rng, view)
    thick = _lesion_size(rng, 0.08, 0.11)
    inner = E(cu - thick * math.cos(t), cv - thick * math.sin(t), a * 0.98, b * 0.98)
    ops.append(Op(("d", E(cu, cv, a, b), inner), "blood", lesion=True, clip="intracranial"))
    return (*_edge_point(cu, cv, a, b, t, inset=thick * 0.5), thick)


def _intraparenchymal(rng, ops, view, brain):
    """Round clot with a hypodense edema rim; its size is the diameter."""
    cu, cv, a, b = brain
    lu, lv = _inside(rng, cu, cv, a * 0.8, b * 0.8, (0.15, 0.55))
    r = _lesion_size(rng, 0.08, 0.13)
    ops += [Op(_mass(rng, lu, lv, r * 1.45, "smooth"), "edema", clip="brain"),
            Op(_mass(rng, lu, lv, r, "lobulated"), "blood", lesion=True, clip="brain")]
    return lu, lv, 2 * r


_HEMORRHAGES = {"epidural": _epidural, "subdural": _subdural}


def _hemorrhage(rng, plan, view, brain, subtype):
    lu, lv, size = _HEMORRHAGES.get(subtype, _intraparenchymal)(rng, plan.ops, view, brain)
    plan.lesion_center = (lu, lv)
    plan.details["size"] = size


@_register("MR", "head")
def _mr_head(rng, view, finding, subtype, grade):
    return _head(rng, view, "MR", finding, subtype, grade)


@_register("CT", "head")
def _ct_head(rng, view, finding, subtype, grade):
    return _head(rng, view, "CT", finding, subtype, grade)
