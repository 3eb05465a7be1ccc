"""Pacing functions: how much of the difficulty-ordered data a phase may draw from.

Contract of a pacing function (register with `@register_pacing(name)`):

    g(t: float, p: PacingParams) -> float in (0, 1], non-decreasing in t

`t` is the fraction of the curriculum's total optimizer steps run before the phase starts (a phase's
stream is built once, so its pool is fixed for the phase: the first phase draws exactly g(0), the
`start` fraction). `p` carries the parameters, each doing what its name says:

- `start` (Wu et al. 2021: b; Hacohen & Weinshall 2019: starting_percent; Platanios et al. 2019:
  c0) -- the share of the pool at t = 0;
- `saturation` (Wu et al.: a; Platanios et al.: T as a fraction of training) -- the t at which the
  whole pool is available;
- `growth` (Hacohen & Weinshall: inc) and `step_length` (their step_length, as a fraction of the
  total steps) -- the `fixed_exponential` staircase: the share is multiplied by `growth` every
  `step_length` of training.

The pool is the phases' data tags in the arm's order (the difficulty order); the share g(t) is a
prefix of it: the phase's own tags in full, the earlier (easier) tags up to the budget, then the later
tags one after the other in their order (the next tag is complete before the one after it starts).

Two phase-level paces do not use g and are not data-fraction pacings: `step` (the hard switch of a
phased curriculum: the phase's own tags plus its `replay` share of earlier ones) and `cumulative`
(own tags plus every earlier tag in full). Only `step` uses a phase's `replay`; the spec rejects a
replay share under any other pace rather than ignore it.
"""
from __future__ import annotations

import math
from typing import Callable, Protocol


class PacingParams(Protocol):
    start: float
    saturation: float
    growth: float
    step_length: float


PacingFn = Callable[[float, PacingParams], float]
#: Paces decided per phase, not by a share of the pool.
PHASE_PACES = ("step", "cumulative")
_PACING: dict[str, PacingFn | None] = {name: None for name in PHASE_PACES}


def register_pacing(name: str) -> Callable[[PacingFn], PacingFn]:
    def deco(fn: PacingFn) -> PacingFn:
        _PACING[name] = fn
        return fn

    return deco


def pacing_names() -> list[str]:
    return list(_PACING)


def uses_replay(name: str) -> bool:
    """Whether a pace reads a phase's `replay` share (only the hard `step` switch does)."""
    return name == "step"


def pacing_fn(name: str) -> PacingFn | None:
    try:
        return _PACING[name]
    except KeyError:
        raise ValueError(f"unknown pacing {name!r}; registered: {pacing_names()}") from None


def _x(t: float, p: PacingParams) -> float:
    """Progress towards saturation, t / a in Wu et al.'s notation (t already a fraction of T)."""
    return t / p.saturation


def _wu(p: PacingParams, shape: float) -> float:
    """Wu et al. 2021 (Table 2): N b + N (1 - b) shape(t / aT), capped at N; here N = 1."""
    return min(1.0, p.start + (1 - p.start) * shape)


@register_pacing("linear")
def linear(t: float, p: PacingParams) -> float:
    return _wu(p, _x(t, p))


@register_pacing("quadratic")
def quadratic(t: float, p: PacingParams) -> float:
    return _wu(p, _x(t, p) ** 2)


@register_pacing("root")
def root(t: float, p: PacingParams) -> float:
    return _wu(p, _x(t, p) ** 0.5)


@register_pacing("exponential")
def exponential(t: float, p: PacingParams) -> float:
    """Wu et al.: (exp(10 t / aT) - 1) / (e^10 - 1)."""
    return _wu(p, math.expm1(10 * min(_x(t, p), 1.0)) / math.expm1(10))


@register_pacing("logarithmic")
def logarithmic(t: float, p: PacingParams) -> float:
    """Wu et al.: 1 + 0.1 log(t / aT + e^-10), which is 0 at t = 0 and ~1 at t = aT."""
    return _wu(p, max(0.0, 1 + 0.1 * math.log(_x(t, p) + math.exp(-10))))


@register_pacing("staircase")
def staircase(t: float, p: PacingParams) -> float:
    """Wu et al.'s `step` family (renamed: `step` is the phase switch here): floor(t / aT)."""
    return _wu(p, math.floor(_x(t, p) + 1e-12))


@register_pacing("competence_root")
def competence_root(t: float, p: PacingParams) -> float:
    """Platanios et al. 2019, square-root competence: min(1, sqrt(t (1 - c0^2) / T + c0^2))."""
    return min(1.0, math.sqrt(_x(t, p) * (1 - p.start**2) + p.start**2))


@register_pacing("fixed_exponential")
def fixed_exponential(t: float, p: PacingParams) -> float:
    """Hacohen & Weinshall 2019, fixed exponential pacing: min(1, start * growth^floor(t / step_length))."""
    return min(1.0, p.start * p.growth ** math.floor(t / p.step_length + 1e-12))


def _unique(tags) -> list[str]:
    return list(dict.fromkeys(tags))


def _step_mix(order: list[list[str]], index: int, counts: dict[str, int], replay: float,
              replay_from: list[str] | None, replay_last: int) -> dict[str, float]:
    own = _unique(order[index])
    mix = {tag: 1.0 for tag in own}
    earlier = _unique(t for p in order[:index] for t in p if t not in mix)
    if replay_from is not None:
        earlier = [t for t in earlier if t in replay_from]
    elif replay_last:
        recent = {t for p in order[max(0, index - replay_last):index] for t in p}
        earlier = [t for t in earlier if t in recent]
    n_own = sum(counts.get(t, 0) for t in own)
    n_earlier = sum(counts.get(t, 0) for t in earlier)
    if replay > 0 and n_earlier:
        p = min(1.0, replay / (1 - replay) * n_own / n_earlier)
        mix.update({t: p for t in earlier})
    return mix


def _paced_mix(order: list[list[str]], index: int, counts: dict[str, int], share: float) -> dict[str, float]:
    own = _unique(order[index])
    mix = {tag: 1.0 for tag in own}
    earlier = _unique(t for p in order[:index] for t in p if t not in mix)
    later = [t for t in _unique(t for p in order[index + 1:] for t in p) if t not in mix and t not in earlier]
    pool = _unique(t for p in order for t in p)
    budget = share * sum(counts.get(t, 0) for t in pool) - sum(counts.get(t, 0) for t in own)
    n_earlier = sum(counts.get(t, 0) for t in earlier)
    if budget > 0 and n_earlier:  # the easier tags all precede the phase's own in the pool
        p = min(1.0, budget / n_earlier)
        mix.update({t: p for t in earlier})
        budget -= p * n_earlier
    for tag in later:  # harder tags enter in their order: one complete before the next starts
        size = counts.get(tag, 0)
        if budget <= 0 or size == 0:
            continue
        mix[tag] = min(1.0, budget / size)
        budget -= mix[tag] * size
    return mix


def phase_mix(order: list[list[str]], index: int, counts: dict[str, int], pacing: str, t: float,
              params: PacingParams, replay: float = 0.0, replay_last: int = 0,
              replay_from: list[str] | None = None) -> dict[str, float]:
    """Keep-probability per data tag for phase `index`, given every phase's tags in order.

    1.0 = every row of that tag is in the phase's stream; 0 < p < 1 = a seeded p-share of them.
    `step` pace: `replay_from` (tags) or `replay_last` = n (the n phases just before) restrict which
    earlier tags are replayed. `t`: the fraction of total optimizer steps run before this phase.
    """
    if pacing == "step":
        return _step_mix(order, index, counts, replay, replay_from, replay_last)
    if pacing == "cumulative":
        return {**{t_: 1.0 for p in order[:index] for t_ in p}, **{t_: 1.0 for t_ in order[index]}}
    return _paced_mix(order, index, counts, pacing_fn(pacing)(min(max(t, 0.0), 1.0), params))
