"""Short inline curricula for the end-to-end tests, as `--set` overrides. Each phase fit costs ~25 s of
Ray Train start-up on 2 cores, so a test that checks what every phase does alike trains two phases."""
from __future__ import annotations


def one_phase(name: str = "modality", steps: int = 4, curriculum: str = "one_phase") -> str:
    """`curriculum=...`: one phase of `steps` optimizer steps after one warm-up step."""
    return f"curriculum={{name: {curriculum}, phases: [{{name: {name}, steps: {steps}, warmup_steps: 1}}]}}"


def two_phases(first: str = "modality", second: str = "anatomy", steps: int = 4, replay: float | None = 0.2,
               name: str = "two_phase") -> str:
    """`curriculum=...`: `first`, then `second` with a `replay` share of `first`'s rows (None: the spec's
    default), `steps` optimizer steps each after one warm-up step."""
    replayed = "" if replay is None else f", replay: {replay}"
    return (f"curriculum={{name: {name}, phases: [{{name: {first}, steps: {steps}, warmup_steps: 1}}, "
            f"{{name: {second}, steps: {steps}, warmup_steps: 1{replayed}}}]}}")
