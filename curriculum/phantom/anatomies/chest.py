"""Chest: CT in three views (lungs, heart, aorta, spine; COVID-19 pneumonia, lung adenocarcinoma by
subtype and grade, enlarged lymph nodes) and DR frontal and lateral projections (pneumonia)."""
from __future__ import annotations

import math

import numpy as np

from ..scene import E, Op, Plan, _edge_point, _inside, _jit, _lesion_size, _mass, _register
from .common import _spine_column


def _ct_axial(rng, ops, present):
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
    return lungs, [(-0.2, 0.0, "hilar"), (0.2, 0.02, "hilar"), (0.0, 0.12, "subcarinal")]


def _ct_coronal(rng, ops, present):
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
    return lungs, [(-0.15, -0.1, "hilar"), (0.15, -0.1, "hilar"), (0.0, -0.05, "mediastinal")]


def _ct_sagittal(rng, ops, present):
    lat = rng.uniform(-0.9, 0.9)
    lung = (0.0, -0.1, 0.42, 0.62, 0.0)
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
    return [lung], [(0.0, -0.05, "hilar"), (0.05, -0.2, "mediastinal")]


#: view -> builder of the normal anatomy; each returns (lung ellipses, lymph node sites).
_CT_VIEWS = {"axial": _ct_axial, "coronal": _ct_coronal, "sagittal": _ct_sagittal}


def _covid(rng, plan, lungs, nodes, subtype, grade):
    """2-5 peripheral ground-glass patches; the largest is the finding, the rest satellites."""
    n = int(rng.integers(2, 6))
    sizes = sorted(_lesion_size(rng, 0.11, 0.18, size=n), reverse=True)
    for i, r in enumerate(sizes):
        lu_, lv_, la, lb, _ = lungs[i % len(lungs)] if i < 2 else lungs[int(rng.integers(len(lungs)))]
        pu, pv = _edge_point(lu_, lv_, la, lb, rng.uniform(0, 2 * math.pi), inset=r * 0.95)
        plan.ops.append(Op(E(pu, pv, r, r * rng.uniform(0.7, 1.0), rng.uniform(0, 3)), "ggo",
                           lesion=True, satellite=i > 0, clip="lungs", mottle=0.06, edge=1.6))
        if i == 0:
            plan.lesion_center = (pu, pv)
    plan.details.update(size=2 * sizes[0], count=n)


def _adenocarcinoma(rng, plan, lungs, nodes, subtype, grade):
    """AIS: pure ground glass; MIA: part-solid; invasive: solid, larger and less smooth by grade."""
    ops = plan.ops
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


def _lymph_node(rng, plan, lungs, nodes, subtype, grade):
    nu, nv, where = nodes[int(rng.integers(len(nodes)))]
    r = _lesion_size(rng, 0.055, 0.08)
    plan.ops.append(Op(_mass(rng, nu, nv, r, "smooth"), "node", lesion=True))
    plan.lesion_center = (nu, nv)
    plan.details.update(size=2 * r, where=where)


_CT_FINDINGS = {"covid-19 pneumonia": _covid, "lung adenocarcinoma": _adenocarcinoma,
                "enlarged lymph node": _lymph_node}


@_register("CT", "chest")
def _ct_chest(rng, view, finding, subtype, grade):
    ops: list[Op] = []
    present = {"lungs"}
    lungs, nodes = _CT_VIEWS[view](rng, ops, present)
    plan = Plan(ops, present)
    if finding in _CT_FINDINGS:
        _CT_FINDINGS[finding](rng, plan, lungs, nodes, subtype, grade)
    return plan


_RIB_FREQ = 2 * math.pi / 0.17


def _dr_frontal(rng, ops):
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
        ops.append(Op(("s", lu_, lv_, la * 1.15, lb * 1.05, _RIB_FREQ, 0.6, 0.5), "bone",
                      "ribs", add=0.2))
        ops.append(Op(E(s * 0.33, -0.67, 0.3, 0.035, -s * 0.2), "bone", "clavicles", add=0.45))
    return lungs, {"lungs", "heart", "ribs", "clavicles"}


def _dr_lateral(rng, ops):
    """Anterior to the viewer's right."""
    lungs = [(0.0, -0.05, _jit(rng, 0.5), _jit(rng, 0.58), 0.0)]
    ops += [Op(E(0.0, 0.25, 0.82, 1.4), "dr_body", edge=2.5),
            Op(E(*lungs[0]), "dr_lung", "lungs", mottle=0.035, edge=1.8),
            Op(E(0.22, 0.28, 0.3, 0.28), "dr_heart", "heart", edge=1.8),
            Op(("s", -0.55, 0.1, 0.09, 1.3, 2 * math.pi / 0.16, 0.0, -0.4), "bone", "spine",
               add=0.35),
            Op(E(0.6, -0.05, 0.035, 0.4), "bone", add=0.3),
            Op(("s", 0.0, -0.05, 0.55, 0.6, _RIB_FREQ, -0.3, 0.6), "bone", add=0.08)]
    return lungs, {"lungs", "heart", "spine"}


@_register("DR", "chest")
def _dr_chest(rng, view, finding, subtype, grade):
    ops: list[Op] = []
    lungs, present = (_dr_frontal if view == "frontal" else _dr_lateral)(rng, ops)
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
