"""Placement: flips and a translation of the field so that the target organ's centroid lands in a
chosen quadrant with a margin from the midlines, and the lesion stays inside the field; and the
quadrant of a mask, which is how every label's region is read back from the pixels."""
from __future__ import annotations

import math

import numpy as np

from radisim.curriculum.phases import region_of

from .scene import Plan, _centre_weight

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
    """(fx, fy, tx, ty): flips (+-1) and shifts that put `target` in `quadrant`."""
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
