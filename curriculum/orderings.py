"""Orderings: the arms of a curriculum ablation, as permutations of a spec's phase contents.

Contract of an ordering (register with `@register_ordering(name)`):

    arrange(phases: list[PhaseSpec], seed: int, moves: str) -> list[PhaseSpec]

It returns the same number of phases with the same total budget (the multiset of phase step counts
is kept), so every arm costs exactly the same. `moves` says what travels with a phase's content:

- `content_and_settings` (default): a phase moves whole -- its data tags with its steps, LR,
  schedule, loss, freeze, counterfactuals (`hard_negatives`) and replay share. Its replay *source*
  moves too: what it replays (`replay_last` phases, or all earlier ones) is resolved into the tags
  those phases held in the written order (`replay_from`), and only those already taught at the new position
  are replayed (none taught yet: no replay). The phase that lands first has nothing earlier to replay
  (its replay share becomes 0).
- `content`: only name and data tags move; each position keeps its settings (the position-bound
  variant: in `anti_curriculum` grading then gets modality's 20 steps with the image tower frozen).
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .spec import PhaseSpec

Arrange = Callable[[list["PhaseSpec"], int, str], list["PhaseSpec"]]
MOVES = ("content_and_settings", "content")
_ORDERINGS: dict[str, Arrange] = {}


def register_ordering(name: str) -> Callable[[Arrange], Arrange]:
    def deco(fn: Arrange) -> Arrange:
        _ORDERINGS[name] = fn
        return fn

    return deco


def ordering_names() -> list[str]:
    return list(_ORDERINGS)


def arrange(name: str, phases: list["PhaseSpec"], seed: int, moves: str = "content_and_settings") -> list["PhaseSpec"]:
    try:
        fn = _ORDERINGS[name]
    except KeyError:
        raise ValueError(f"unknown ordering {name!r}; registered: {ordering_names()}") from None
    if moves not in MOVES:
        raise ValueError(f"ordering_moves: {moves!r} is not one of {MOVES}")
    return fn(phases, seed, moves)


def _replay_sources(phases: list["PhaseSpec"]) -> list["PhaseSpec"]:
    """Each replaying phase's source made explicit: the tags of the `replay_last` phases (or of every
    phase) before it in the written order."""
    out = []
    for i, p in enumerate(phases):
        if p.replay > 0 and p.replay_from is None:
            n = p.replay_last or i
            tags = list(dict.fromkeys(t for q in phases[max(0, i - n):i] for t in q.data))
            p = p.model_copy(update={"replay_from": tags, "replay_last": 0})
        out.append(p)
    return out


def _permute(phases: list["PhaseSpec"], perm: list[int], moves: str) -> list["PhaseSpec"]:
    """Position i teaches what phase perm[i] taught; with `content_and_settings` it also gets its settings."""
    if moves == "content":
        return [p.model_copy(update={"name": phases[j].name, "data": list(phases[j].data)})
                for p, j in zip(phases, perm)]
    resolved = _replay_sources(phases)
    out = [resolved[j].model_copy() for j in perm]
    out[0] = out[0].model_copy(update={"replay": 0.0, "replay_from": None, "replay_last": 0})
    return out


@register_ordering("curriculum")
@register_ordering("custom")
def curriculum(phases, seed, moves):
    """Coarse to fine, as written in the spec."""
    return list(phases)


@register_ordering("anti_curriculum")
def anti_curriculum(phases, seed, moves):
    """Fine to coarse."""
    return _permute(phases, list(range(len(phases)))[::-1], moves)


@register_ordering("random_order")
def random_order(phases, seed, moves):
    """A seeded permutation that is neither the curriculum nor its reverse (when one exists)."""
    n = len(phases)
    identity, reverse = list(range(n)), list(range(n))[::-1]
    rng = random.Random(seed)
    perm = identity[:]
    for _ in range(100):
        rng.shuffle(perm)
        if n < 3 or perm not in (identity, reverse):
            break
    return _permute(phases, perm, moves)


@register_ordering("shuffled")
def shuffled(phases, seed, moves):
    """No curriculum: every position trains on the shuffled union of all phases' data. No content
    differs between positions, so each keeps its settings under either `moves`; nothing is replayed."""
    union = list(dict.fromkeys(t for p in phases for t in p.data))
    return [p.model_copy(update={"name": f"mixed-{i + 1}", "data": union, "replay": 0.0, "replay_last": 0,
                                 "replay_from": None})
            for i, p in enumerate(phases)]
