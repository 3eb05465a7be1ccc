"""Pieces shared by several body regions."""
from __future__ import annotations

import math

from ..scene import E, Op


def _spine_column(ops, u, v, a, b):
    """Sagittal/coronal spine: a disc-coloured column with vertebral bodies as stripes."""
    ops += [Op(E(u, v, a, b), "disc", "spine"),
            Op(("s", u, v, a, b, 2 * math.pi / 0.2, 0.0, -0.45), "vertebra", "spine")]
