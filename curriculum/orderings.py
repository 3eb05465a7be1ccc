"""Orderings: the arms of a curriculum ablation, as permutations of a spec's phase contents.

Contract of an ordering (register with `@register_ordering(name)`):

    arrange(phases: list[PhaseSpec], seed: int) -> list[PhaseSpec]

It returns the same number of phases with the same per-position budget (steps, LR, schedule, loss,
replay, replay_last, freeze, hard_negatives) and rearranged *content* (name and data tags), so every
arm costs exactly the same.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .spec import PhaseSpec

Arrange = Callable[[list["PhaseSpec"], int], list["PhaseSpec"]]
_ORDERINGS: dict[str, Arrange] = {}


def register_ordering(name: str) -> Callable[[Arrange], Arrange]:
    def deco(fn: Arrange) -> Arrange:
        _ORDERINGS[name] = fn
        return fn

    return deco


def ordering_names() -> list[str]:
    return list(_ORDERINGS)


def arrange(name: str, phases: list["PhaseSpec"], seed: int) -> list["PhaseSpec"]:
    try:
        fn = _ORDERINGS[name]
    except KeyError:
        raise ValueError(f"unknown ordering {name!r}; registered: {ordering_names()}") from None
    return fn(phases, seed)


def _permute(phases: list["PhaseSpec"], perm: list[int]) -> list["PhaseSpec"]:
    """Position i keeps its budget and schedule, and teaches what phase perm[i] taught."""
    return [p.model_copy(update={"name": phases[j].name, "data": list(phases[j].data)}) for p, j in zip(phases, perm)]


@register_ordering("curriculum")
@register_ordering("custom")
def curriculum(phases, seed):
    """Coarse to fine, as written in the spec."""
    return list(phases)


@register_ordering("anti_curriculum")
def anti_curriculum(phases, seed):
    """Fine to coarse."""
    return _permute(phases, list(range(len(phases)))[::-1])


@register_ordering("random_order")
def random_order(phases, seed):
    """A seeded permutation that is neither the curriculum nor its reverse (when one exists)."""
    n = len(phases)
    identity, reverse = list(range(n)), list(range(n))[::-1]
    rng = random.Random(seed)
    perm = identity[:]
    for _ in range(100):
        rng.shuffle(perm)
        if n < 3 or perm not in (identity, reverse):
            break
    return _permute(phases, perm)


@register_ordering("shuffled")
def shuffled(phases, seed):
    """No curriculum: every position trains on the shuffled union of all phases' data."""
    union = list(dict.fromkeys(t for p in phases for t in p.data))
    return [p.model_copy(update={"name": f"mixed-{i + 1}", "data": union, "replay": 0.0, "replay_last": 0})
            for i, p in enumerate(phases)]
