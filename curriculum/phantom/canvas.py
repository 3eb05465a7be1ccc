"""The canvas: a pixel grid under a flip + translation that paints a plan's ops with each modality's
tissue intensities and records the soft masks of organs and lesions.

Drawing is vectorised numpy on small windows of separable 1-D coordinates: an unrotated ellipse is
one broadcast add, so generation stays cheap on one core (docs/phantom.md gives the rate).
Masks are float32 in [0, 1] with a ~1 px soft edge centred on the shape's boundary.
"""
from __future__ import annotations

import math

import numpy as np

from .physics import _upsample
from .scene import E, Op

#: Intensity in [0, 1] of each tissue per modality, columns (CT, MR, DR).
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
        """Row and column slices that hold a shape of radius R at (cu, cv), or None off the field."""
        R = R + 2.5 * 2 / self.S
        c0, c1 = self._span(self.fx, self.tx, cu, R)
        r0, r1 = self._span(self.fy, self.ty, cv, R)
        if c0 >= c1 or r0 >= r1:
            return None
        return (slice(r0, r1), slice(c0, c1))

    # -- shapes: each returns (window, soft mask on it) or (None, None) off the field ------------
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

    def _ellipse(self, sh, edge):
        _, cu, cv, a, b, th = sh
        win = self.window(cu, cv, max(a, b))
        if win is None:
            return None, None
        return win, self._ellipse_on(win, cu, cv, a, b, th, edge)

    def _difference(self, sh, edge):
        win, m = self.shape(sh[1], edge)
        if win is None:
            return None, None
        _, cu, cv, a, b, th = sh[2]
        return win, m * (1.0 - self._ellipse_on(win, cu, cv, a, b, th, edge))

    def _mass(self, sh, edge):
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

    def _stripes(self, sh, edge):
        _, cu, cv, a, b, freq, curv, duty = sh
        win, m = self.shape(E(cu, cv, a, b), edge)
        if win is None:
            return None, None
        du = self.U[win[1]] - cu
        dv = self.V[win[0]]
        phase = dv[:, None] - curv * (du * du)[None, :]
        stripes = _clip01((np.cos(phase * freq) - duty) * 3.0)
        return win, m * stripes

    _SHAPES = {"e": _ellipse, "d": _difference, "m": _mass, "s": _stripes}

    def shape(self, sh, edge=1.0):
        kind = sh[0]
        if kind not in self._SHAPES:
            raise ValueError(kind)
        return self._SHAPES[kind](self, sh, edge)

    # -- painting --------------------------------------------------------------------------
    def draw(self, op: Op):
        """Paint `op` (or overlay it additively) and record its organ and lesion masks."""
        win, m = self.shape(op.shape, op.edge)
        if win is None:
            return
        if op.clip is not None:
            mask = self.organs.get(op.clip)
            if mask is None:
                return
            m = m * mask[win]
        self._paint(op, win, m)
        if op.organ is not None:
            om = self.organs.get(op.organ)
            if om is None:
                om = self.organs[op.organ] = np.zeros((self.S, self.S), dtype=np.float32)
            np.maximum(om[win], m, out=om[win])
        if op.lesion:
            np.maximum(self.lesion[win], m, out=self.lesion[win])
            if not op.satellite:
                np.maximum(self.main_lesion[win], m, out=self.main_lesion[win])

    def _paint(self, op: Op, win, m):
        img = self.img[win]
        if op.add is not None:
            img += m * op.add
            return
        val = _TISSUE[op.tissue][self.col]
        if op.mottle:
            delta = self.tex[win] * op.mottle
            delta += val
            delta -= img
        else:
            delta = val - img
        delta *= m
        img += delta
