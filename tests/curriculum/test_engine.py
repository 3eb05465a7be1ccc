"""Curriculum engine: orderings keep budgets, pacing functions and phase mixes, LR schedules."""
from __future__ import annotations

import pytest

from radisim.curriculum.orderings import arrange, ordering_names
from types import SimpleNamespace

from radisim.curriculum.pacing import pacing_names, phase_mix
from radisim.curriculum.phases import PHASES
from radisim.curriculum.spec import CurriculumSpec, load_spec
from radisim.platform.train.schedule import lr_factor

COUNTS = {p: 1000 for p in PHASES}
ORDER = [[p] for p in PHASES]
PACE = SimpleNamespace(start=0.2, saturation=1.0, growth=2.0, step_length=0.2)


def test_orderings_keep_the_budget_and_the_position_bound_variant_keeps_each_positions():
    spec = load_spec("radisim_cl")
    for name in ("curriculum", "anti_curriculum", "random_order", "shuffled"):
        bound = arrange(name, spec.phases, 3, "content")
        assert [(p.steps, p.lr, p.warmup_steps, p.replay if name != "shuffled" else 0.0) for p in bound] == \
               [(p.steps, p.lr, p.warmup_steps, p.replay if name != "shuffled" else 0.0) for p in spec.phases]
        moved = arrange(name, spec.phases, 3)
        assert sorted(p.steps for p in moved) == sorted(p.steps for p in spec.phases)
    assert [p.name for p in arrange("anti_curriculum", spec.phases, 0)] == list(PHASES)[::-1]
    shuffled = arrange("shuffled", spec.phases, 0)
    assert all(sorted(p.data) == sorted(PHASES) for p in shuffled)
    with pytest.raises(ValueError, match="ordering_moves"):
        arrange("curriculum", spec.phases, 0, "everything")


@pytest.mark.parametrize("seed", range(6))
def test_random_order_is_a_seeded_proper_permutation(seed):
    spec = load_spec("radisim_cl")
    names = [p.name for p in arrange("random_order", spec.phases, seed)]
    assert sorted(names) == sorted(PHASES)
    assert names not in (list(PHASES), list(PHASES)[::-1])
    assert names == [p.name for p in arrange("random_order", spec.phases, seed)]


def test_registered_paces():
    assert {"step", "cumulative", "linear", "quadratic", "root", "exponential", "logarithmic", "staircase",
            "competence_root", "fixed_exponential"} <= set(pacing_names())


def test_step_mix_gives_the_replay_share():
    mix = phase_mix(ORDER, 2, COUNTS, "step", 0.0, PACE, replay=0.2)
    assert mix["localization"] == 1.0 and set(mix) == {"modality", "anatomy", "localization"}
    replay_rows = sum(mix[t] * COUNTS[t] for t in ("modality", "anatomy"))
    assert replay_rows / (replay_rows + 1000) == pytest.approx(0.2)
    assert phase_mix(ORDER, 0, COUNTS, "step", 0.0, PACE, replay=0.0) == {"modality": 1.0}


def test_replay_last_and_replay_from_restrict_the_replayed_tags():
    mix = phase_mix(ORDER, 3, COUNTS, "step", 0.0, PACE, replay=0.2, replay_last=1)
    assert set(mix) == {"localization", "abnormality"} and mix["abnormality"] == 1.0
    assert mix["localization"] * COUNTS["localization"] / (mix["localization"] * COUNTS["localization"] + 1000) \
        == pytest.approx(0.2)
    assert set(phase_mix(ORDER, 4, COUNTS, "step", 0.0, PACE, replay=0.2, replay_last=2)) == {"localization",
                                                                                             "abnormality", "grading"}
    # more than there are earlier phases: all of them
    assert phase_mix(ORDER, 2, COUNTS, "step", 0.0, PACE, replay=0.2, replay_last=9) == \
        phase_mix(ORDER, 2, COUNTS, "step", 0.0, PACE, replay=0.2)
    # replay_from: only the named tags that are already taught
    assert set(phase_mix(ORDER, 2, COUNTS, "step", 0.0, PACE, replay=0.2, replay_from=["anatomy", "grading"])) == \
        {"anatomy", "localization"}


def test_cumulative_and_paced_mixes():
    assert phase_mix(ORDER, 3, COUNTS, "cumulative", 0.0, PACE) == {p: 1.0 for p in PHASES[:4]}
    # linear, start 0.2, saturation 1, at t = 0.4: 0.52 of 5,000 rows: own 1,000 + all earlier 1,000,
    # then 600 of the later rows in order: abnormality 0.6, grading nothing yet
    mix = phase_mix(ORDER, 1, COUNTS, "linear", 0.4, PACE)
    assert sum(mix[t] * COUNTS[t] for t in mix) == pytest.approx(0.52 * 5000)
    assert mix == {"anatomy": 1.0, "modality": 1.0, "localization": pytest.approx(0.6)}
    assert all(v == 1.0 for v in phase_mix(ORDER, 4, COUNTS, "root", 1.0, PACE).values())


def test_spec_validation_errors():
    with pytest.raises(ValueError, match="unknown ordering"):
        CurriculumSpec.model_validate({"name": "x", "ordering": "backwards", "phases": [{"name": "modality", "steps": 1}]})
    with pytest.raises(ValueError, match="unknown pacing"):
        CurriculumSpec.model_validate({"name": "x", "pacing": {"name": "zigzag"}, "phases": [{"name": "modality", "steps": 1}]})
    with pytest.raises(ValueError, match="freezing both"):
        CurriculumSpec.model_validate({"name": "x", "phases": [{"name": "modality", "steps": 1, "freeze": ["visual", "text"]}]})
    with pytest.raises(ValueError, match=r"phases\.0\.hard_negatives"):
        CurriculumSpec.model_validate({"name": "x", "phases": [{"name": "modality", "steps": 1, "hard_negatives": 9}]})
    with pytest.raises(ValueError, match=r"phases\.1\s[\s\S]*replay_last/replay_from: set `replay`"):
        CurriculumSpec.model_validate({"name": "x", "phases": [{"name": "modality", "steps": 1},
                                                               {"name": "anatomy", "steps": 1, "replay_last": 1}]})


def test_lr_schedules():
    assert lr_factor(0, 100, 10, "cosine", 0.0) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(55, 100, 10, "linear", 0.0) == pytest.approx(0.5)
    assert lr_factor(70, 100, 0, "constant", 0.0) == 1.0
