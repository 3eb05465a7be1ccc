"""Pacing functions: how much of the difficulty-ordered data a phase may draw from.

Contract of a pacing function (register with `@register_pacing(name)`):

    g(t: float, start: float, growth: float) -> float in [start, 1], non-decreasing in t, g(1) = 1

`t` is the curriculum's progress at the end of a phase (phase i of n: t = (i + 1) / n). The ordered
pool is the phases' data tags in curriculum order; phase i may draw from the first g(t) share of its
rows. The phase's own tags are always drawn in full; beyond them the pool prefix is filled with
earlier tags first, then with later ones (so fast pacing previews harder data early, as in Hacohen &
Weinshall 2019, "On the power of curriculum learning"; Wu et al. 2021, "When do curricula work?").

Two special paces do not use g: `step` (hard switch: the phase's own tags plus its `replay` share of
earlier ones, or of the last `replay_last` phases' ones) and `cumulative` (own tags plus every earlier
tag in full).
"""
from __future__ import annotations

import math
from typing import Callable

PacingFn = Callable[[float, float, float], float]
_PACING: dict[str, PacingFn | None] = {"step": None, "cumulative": None}


def register_pacing(name: str) -> Callable[[PacingFn], PacingFn]:
    def deco(fn: PacingFn) -> PacingFn:
        _PACING[name] = fn
        return fn

    return deco


def pacing_names() -> list[str]:
    return list(_PACING)


def pacing_fn(name: str) -> PacingFn | None:
    try:
        return _PACING[name]
    except KeyError:
        raise ValueError(f"unknown pacing {name!r}; registered: {pacing_names()}") from None


@register_pacing("linear")
def linear(t: float, start: float, growth: float) -> float:
    return min(1.0, start + (1 - start) * t)


@register_pacing("root")
def root(t: float, start: float, growth: float) -> float:
    """Fast early, slow late: sqrt interpolation between start^2 and 1 (Platanios et al. 2019)."""
    return min(1.0, math.sqrt(start**2 + (1 - start**2) * t))


@register_pacing("exponential")
def exponential(t: float, start: float, growth: float) -> float:
    """Slow early, fast late: start * growth^(k t), with k chosen so that g(1) = 1."""
    if start >= 1:
        return 1.0
    k = math.log(1 / start) / math.log(growth)
    return min(1.0, start * growth ** (k * t))


def phase_mix(order: list[list[str]], index: int, counts: dict[str, int], pacing: str, start: float,
              growth: float, replay: float, replay_last: int = 0) -> dict[str, float]:
    """Keep-probability per data tag for phase `index`, given every phase's tags in order.

    1.0 = every row of that tag is in the phase's stream; 0 < p < 1 = a seeded p-share of them.
    `replay_last` = n > 0: the `step` pace replays only the tags of the n phases just before this one.
    """
    own = list(dict.fromkeys(order[index]))
    mix = {tag: 1.0 for tag in own}
    earlier = [t for p in order[:index] for t in p if t not in mix]
    earlier = list(dict.fromkeys(earlier))
    later = list(dict.fromkeys(t for p in order[index + 1:] for t in p if t not in mix and t not in earlier))
    n_own = sum(counts.get(t, 0) for t in own)
    if pacing == "step":
        if replay_last:
            recent = {t for p in order[max(0, index - replay_last):index] for t in p}
            earlier = [t for t in earlier if t in recent]
        n_earlier = sum(counts.get(t, 0) for t in earlier)
        if replay > 0 and n_earlier:
            p = min(1.0, replay / (1 - replay) * n_own / n_earlier)
            mix.update({t: p for t in earlier})
        return mix
    if pacing == "cumulative":
        mix.update({t: 1.0 for t in earlier})
        return mix
    g = pacing_fn(pacing)(min(1.0, (index + 1) / len(order)), start, growth)
    pool = list(dict.fromkeys(t for p in order for t in p))
    budget = g * sum(counts.get(t, 0) for t in pool) - n_own
    for group in (earlier, later):
        size = sum(counts.get(t, 0) for t in group)
        if budget <= 0 or size == 0:
            continue
        p = min(1.0, budget / size)
        mix.update({t: p for t in group})
        budget -= p * size
    return mix
