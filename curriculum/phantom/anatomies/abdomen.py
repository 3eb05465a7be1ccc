"""MR and CT abdomen in three views (MR: axial and coronal): liver, spleen, kidneys, stomach, bowel,
spine, bladder; liver tumours and enlarged lymph nodes (CT)."""
from __future__ import annotations

from ..scene import E, Op, Plan, _inside, _lesion_size, _mass, _register
from .common import _spine_column


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


def _axial_upper(ops, present, z):
    """The organs of an axial slice at height z in [0, 1] (0: the dome of the liver); returns the
    liver's ellipse or None."""
    liver = None
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
    return liver


def _axial(rng, ops, present, modality, need_liver):
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
    liver = _axial_upper(ops, present, z)
    if z > 0.35:
        _bowel(rng, ops, int(rng.integers(3, 6)), (-0.4, 0.45, -0.4, 0.05))
    if z > 0.75:
        ops += [Op(E(-0.52, 0.1, 0.22, 0.07, -0.6), "bone"), Op(E(0.52, 0.1, 0.22, 0.07, 0.6), "bone")]
    if z > 0.8:
        ops.append(Op(E(0, -0.2, 0.2, 0.16), "urine", "bladder"))
        present.add("bladder")
    node = (0.06 + (0.15 if rng.random() < 0.5 else -0.17), 0.12, "para-aortic")
    return liver, node


def _coronal(rng, ops, present, modality, need_liver):
    liver = None
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
    return liver, node


def _sagittal(rng, ops, present, modality, need_liver):
    """Anterior to the viewer's right; `lat` < 0 is the patient's right (the liver's side)."""
    liver = None
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
    return liver, node


#: view -> builder of the normal anatomy; each returns (liver ellipse or None, lymph node site).
_VIEWS = {"axial": _axial, "coronal": _coronal, "sagittal": _sagittal}


def _abdomen(rng, view, modality, finding) -> Plan:
    ops: list[Op] = []
    present: set[str] = set()
    liver, node = _VIEWS[view](rng, ops, present, modality, finding == "liver tumor")
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
