"""Per-phase learning-rate schedules: linear warm-up, then cosine / linear decay or constant."""
from __future__ import annotations

import math


def lr_factor(step: int, total: int, warmup: int, kind: str, min_ratio: float) -> float:
    """Multiplier of the phase's peak LR at optimizer step `step` (0-based) of `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    if kind == "cosine":
        decay = 0.5 * (1 + math.cos(math.pi * progress))
    elif kind == "linear":
        decay = 1 - progress
    else:
        raise ValueError(f"unknown schedule {kind!r}")
    return min_ratio + (1 - min_ratio) * decay
