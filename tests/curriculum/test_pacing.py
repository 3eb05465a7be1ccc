"""Pacing functions against the closed forms of Hacohen & Weinshall 2019, Wu et al. 2021 and
Platanios et al. 2019; the pool fills in difficulty order; replay is used or rejected."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from radisim.curriculum import pacing
from radisim.curriculum.spec import CurriculumSpec


def P(**kw):
    return SimpleNamespace(**{"start": 0.1, "saturation": 0.8, "growth": 2.0, "step_length": 0.2, **kw})


@pytest.mark.parametrize("t", [0.0, 0.1, 0.37, 0.5, 0.8, 0.95, 1.0])
def test_wu_families_closed_forms(t):
    a, b = 0.8, 0.1  # Wu et al.: a = fraction of training to reach the full set, b = starting fraction
    p = P(start=b, saturation=a)
    x = t / a
    want = {"linear": b + (1 - b) * x, "quadratic": b + (1 - b) * x ** 2, "root": b + (1 - b) * x ** 0.5,
            "exponential": b + (1 - b) / (math.e ** 10 - 1) * (math.exp(10 * x) - 1),
            "logarithmic": b + (1 - b) * (1 + 0.1 * math.log(x + math.e ** -10)),
            "staircase": b + (1 - b) * math.floor(x)}
    for name, value in want.items():
        assert pacing.pacing_fn(name)(t, p) == pytest.approx(min(1.0, max(b, value)), abs=1e-9), name


def test_every_pace_starts_at_start_and_saturates_at_saturation():
    p = P(start=0.25, saturation=0.6)
    for name in ("linear", "quadratic", "root", "exponential", "logarithmic", "competence_root"):
        g = pacing.pacing_fn(name)
        assert g(0.0, p) == pytest.approx(0.25), name
        assert g(0.6, p) == pytest.approx(1.0, abs=1e-4) and g(0.9, p) == 1.0, name
        values = [g(i / 50, p) for i in range(51)]
        assert values == sorted(values), name


def test_platanios_root_competence():
    # c(t) = min(1, sqrt(t (1 - c0^2) / T + c0^2)), T = saturation (a fraction of training)
    p = P(start=0.01, saturation=0.5)
    for t in (0.0, 0.1, 0.25, 0.49):
        assert pacing.competence_root(t, p) == pytest.approx(math.sqrt(t * (1 - 0.01 ** 2) / 0.5 + 0.01 ** 2))


def test_hacohen_weinshall_fixed_exponential_growth_does_what_it_says():
    # g(i) = min(starting_percent * inc^floor(i / step_length), 1)
    p2, p3 = P(start=0.1, growth=2.0, step_length=0.25), P(start=0.1, growth=3.0, step_length=0.25)
    assert [pacing.fixed_exponential(t, p2) for t in (0, 0.24, 0.25, 0.5, 0.75, 1.0)] == \
        pytest.approx([0.1, 0.1, 0.2, 0.4, 0.8, 1.0])
    assert pacing.fixed_exponential(0.5, p3) == pytest.approx(0.9)  # a larger growth grows faster
    assert pacing.fixed_exponential(0.5, P(start=0.1, growth=2.0, step_length=0.5)) == pytest.approx(0.2)


def test_pool_fills_later_tags_in_difficulty_order():
    order = [["modality"], ["anatomy"], ["localization"], ["abnormality"], ["grading"]]
    counts = {t[0]: 100 for t in order}
    # share 0.5 of 500 rows at phase 0: own 100, then anatomy complete, then half of localization;
    # nothing of abnormality or grading (a uniform preview would give each later tag 0.375)
    assert pacing._paced_mix(order, 0, counts, 0.5) == {"modality": 1.0, "anatomy": 1.0, "localization": 0.5}
    assert pacing._paced_mix(order, 0, counts, 0.35) == {"modality": 1.0, "anatomy": pytest.approx(0.75)}
    # earlier (easier) tags come before later ones
    mix = pacing._paced_mix(order, 2, counts, 0.5)
    assert mix == {"localization": 1.0, "modality": 0.75, "anatomy": 0.75}  # later tags only once earlier are full
    assert pacing._paced_mix(order, 2, counts, 0.7) == {"localization": 1.0, "modality": 1.0, "anatomy": 1.0,
                                                       "abnormality": pytest.approx(0.5)}


def _spec(pacing_name, replay=0.0, **pace):
    return {"name": "x", "pacing": {"name": pacing_name, **pace},
            "phases": [{"name": "modality", "steps": 10}, {"name": "anatomy", "steps": 30, "replay": replay},
                       {"name": "grading", "steps": 60}]}


def test_t_is_the_fraction_of_optimizer_steps_run():
    spec = CurriculumSpec.model_validate(_spec("linear", start=0.2, saturation=1.0))
    assert [spec.progress(i) for i in range(3)] == pytest.approx([0.0, 0.1, 0.4])
    counts = {"modality": 100, "anatomy": 100, "grading": 100}
    # phase 1 (anatomy) starts at t = 0.1: share 0.2 + 0.8 * 0.1 = 0.28 of 300 = 84 rows < own 100
    assert spec.mix(1, counts) == {"anatomy": 1.0}
    # phase 2 at t = 0.4: share 0.52 -> 156 rows, own 100, earlier 56 of 200
    assert spec.mix(2, counts) == {"grading": 1.0, "modality": pytest.approx(0.28), "anatomy": pytest.approx(0.28)}


def test_replay_is_used_by_step_and_rejected_elsewhere():
    counts = {"modality": 100, "anatomy": 100, "grading": 100}
    step = CurriculumSpec.model_validate(_spec("step", replay=0.5))
    assert step.mix(1, counts) == {"anatomy": 1.0, "modality": 1.0}
    for name in ("linear", "cumulative", "fixed_exponential"):
        with pytest.raises(ValueError, match="only the `step` pace uses"):
            CurriculumSpec.model_validate(_spec(name, replay=0.3))
