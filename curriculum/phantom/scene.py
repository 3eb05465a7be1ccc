"""Scene description: shapes, drawing ops and plans, the lesion helpers, and the registry of scene
builders (one per (modality, anatomy)).

Coordinates are anatomical: u to the viewer's right, v downwards, both in [-1, 1] before placement.
Shapes are tuples, so a plan is plain data that placement can read (centroids) and the canvas paints:

    ("e", cu, cv, a, b, theta)                   ellipse
    ("d", A, B)                                  A minus B (B evaluated on A's window)
    ("m", cu, cv, r, amp, k, phi, spiky)         polar-modulated mass
    ("s", cu, cv, a, b, freq, curv, duty)        stripes (ribs, vertebrae) inside an ellipse

A builder's contract: ``builder(rng, view, finding, subtype, grade) -> Plan``; it draws from `rng`
only, so a case stays a pure function of its seed and index.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


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
    """(u, v, weight) of a shape, for an organ's area-weighted centroid."""
    kind = shape[0]
    if kind == "e" or kind == "s":
        return shape[1], shape[2], shape[3] * shape[4]
    if kind == "d":
        return _centre_weight(shape[1])
    if kind == "m":
        return shape[1], shape[2], shape[3] ** 2
    raise ValueError(kind)


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


# -- lesion helpers ------------------------------------------------------------------------

_MARGIN = {  # margin -> (amplitude, lobes range, spiky)
    "smooth": (0.04, (2, 3), False),
    "lobulated": (0.2, (3, 5), False),
    "spiculated": (0.32, (7, 10), True),
}

#: Lesion radii are drawn from the ranges in the builders times this. Lesions are teaching-file
#: conspicuous: at 64 px a finding must cover enough pixels for a small model to learn it within the
#: demo's few hundred steps (at 1.0 lesions covered 16-78 px and stage-4/5 scores stayed at chance).
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


# -- builder registry ------------------------------------------------------------------------

Builder = Callable[[np.random.Generator, str, str, str, str], Plan]
_BUILDERS: dict[tuple[str, str], Builder] = {}


def _register(modality: str, anatomy: str):
    def deco(fn: Builder) -> Builder:
        _BUILDERS[(modality, anatomy)] = fn
        return fn
    return deco


def build_plan(rng, modality: str, anatomy: str, view: str, finding: str, subtype: str, grade: str) -> Plan:
    """The registered builder's plan for (modality, anatomy); builders register on import of
    `radisim.curriculum.phantom.anatomies`."""
    return _BUILDERS[(modality, anatomy)](rng, view, finding, subtype, grade)
