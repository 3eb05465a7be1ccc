"""Modality physics applied to a painted canvas: tissue texture, noise, and each modality's finish.

CT: black air with low noise. MR: a smooth bias field and a Rician noise floor. DR: a projection
with a vertical gradient, a slight blur and fine grain. The output is uint8 in [0, 255].
"""
from __future__ import annotations

import numpy as np

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
    """A low-frequency n x n texture, drawn independently of the image size."""
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


def _finish_ct(img: np.ndarray, xs: np.ndarray, rng) -> None:
    img += _noise(rng, img.shape[0], 1)[0] * 0.012


def _finish_mr(img: np.ndarray, xs: np.ndarray, rng) -> None:
    bx, by, bq = rng.uniform(-0.3, 0.3, size=3)
    q = xs * xs * (-0.15 * abs(bq))
    img *= (1.0 + bx * xs + q)[None, :]
    img *= (1.0 + by * xs + q)[:, None]
    n = _noise(rng, img.shape[0], 2)
    img += n[0] * 0.045
    np.multiply(img, img, out=img)
    img += (n[1] * 0.045) ** 2
    np.sqrt(img, out=img)


def _finish_dr(img: np.ndarray, xs: np.ndarray, rng) -> None:
    """Vertical gradient, slight blur of the projection, fine grain."""
    g = rng.uniform(0.08, 0.16)
    img += (g * xs)[:, None]
    img[1:-1] = (img[1:-1] * 2 + img[:-2] + img[2:]) * 0.25
    img[:, 1:-1] = (img[:, 1:-1] * 2 + img[:, :-2] + img[:, 2:]) * 0.25
    img += _noise(rng, img.shape[0], 1)[0] * 0.01


_FINISH = {"CT": _finish_ct, "MR": _finish_mr, "DR": _finish_dr}


def _finish(img: np.ndarray, modality: str, xs: np.ndarray, rng) -> np.ndarray:
    """Apply the modality's physics to the float canvas `img` (in place) and quantise to uint8."""
    _FINISH[modality](img, xs, rng)
    img *= 255.0
    img += 0.5
    np.maximum(img, 0.0, out=img)
    np.minimum(img, 255.0, out=img)
    return img.astype(np.uint8)
