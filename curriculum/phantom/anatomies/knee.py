"""MR knee, sagittal and coronal: femur, tibia, patella, menisci, ACL; ACL and meniscus tears."""
from __future__ import annotations

import math
from typing import NamedTuple

from ..scene import E, Op, Plan, _lesion_size, _mass, _register


class _Joint(NamedTuple):
    """What the lesions need from the normal anatomy of a view."""
    menisci: list[tuple]     # (u, v, a, b, where) per meniscus
    acl: tuple               # the ligament's ellipse (u, v, a, b, theta)
    show_acl: bool           # whether the slice holds the ACL
    effusion: tuple          # the joint effusion's shape


def _sagittal(rng, ops: list[Op], present: set[str], acl_tear: bool) -> _Joint:
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
    return _Joint(menisci, (0.02, -0.02, 0.2, 0.035, 0.88), abs(lat) < 0.3, E(0.28, -0.5, 0.07, 0.14, -0.2))


def _coronal(rng, ops: list[Op], present: set[str], acl_tear: bool) -> _Joint:
    """Two condyles, symmetric, the fibula head on the lateral side."""
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
    return _Joint(menisci, (0.03, -0.01, 0.04, 0.13, 0.35), True, E(0, -0.4, 0.1, 0.05))


def _meniscus_tear(rng, ops, present, meniscus) -> Plan:
    """A swollen meniscus with a fluid cleft and a parameniscal cyst."""
    mu, mv, ma, mb, where = meniscus
    ma, mb = ma * 1.2, mb * 1.35
    tilt = rng.uniform(0.15, 0.4) * (1 if rng.random() < 0.5 else -1)
    cyst_u = mu + math.copysign(ma * 0.9, mu)
    ops += [Op(E(mu, mv, ma * 0.85, 0.03, tilt), "fluid", lesion=True, edge=0.7),
            Op(E(cyst_u, mv, 0.06, 0.05), "fluid", lesion=True)]
    plan = Plan(ops, present, lesion_center=(mu, mv))
    plan.details.update(size=1.7 * ma, where=where)
    return plan


def _acl_tear(rng, ops, present, acl, effusion) -> Plan:
    """Two stumps with fluid in the gap, and a joint effusion."""
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


@_register("MR", "knee")
def _mr_knee(rng, view, finding, subtype, grade):
    ops: list[Op] = []
    present = {"femur", "tibia", "meniscus"}
    acl_tear = finding == "acl tear"
    joint = (_sagittal if view == "sagittal" else _coronal)(rng, ops, present, acl_tear)
    torn = int(rng.integers(2)) if finding == "meniscus tear" else -1
    for i, (mu, mv, ma, mb, where) in enumerate(joint.menisci):
        if i == torn:
            ma, mb = ma * 1.2, mb * 1.35
        ops.append(Op(E(mu, mv, ma, mb), "meniscus", "meniscus"))
    if joint.show_acl and not acl_tear:
        ops.append(Op(E(*joint.acl), "ligament"))
    if finding == "meniscus tear":
        return _meniscus_tear(rng, ops, present, joint.menisci[torn])
    if acl_tear:
        return _acl_tear(rng, ops, present, joint.acl, joint.effusion)
    return Plan(ops, present, details={})
