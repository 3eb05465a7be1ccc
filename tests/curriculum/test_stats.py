"""Paired statistics of ablation arms, against scipy's and hand-computed answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from radisim.curriculum import stats


def test_paired_t_matches_scipy_ttest_rel():
    ref = np.array([0.81, 0.79, 0.84, 0.80, 0.83])
    arm = np.array([0.78, 0.78, 0.80, 0.79, 0.79])
    mean, low, high, p = stats.paired_t(ref - arm)
    expected = sps.ttest_rel(ref, arm)
    assert p == pytest.approx(expected.pvalue, rel=1e-12)
    ci = expected.confidence_interval(0.95)
    assert (low, high) == (pytest.approx(ci.low, rel=1e-10), pytest.approx(ci.high, rel=1e-10))
    assert mean == pytest.approx(0.026)


def test_holm_known_answer():
    # m = 4: sorted p 0.01, 0.02, 0.03, 0.5 -> 0.04, 0.06, 0.06 (monotone), 0.5
    assert stats.holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    assert stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1


def _scores(diff_by_arm, seeds=(10, 11, 12, 13, 14), noise=0.004):
    rng = np.random.default_rng(0)
    out = {"curriculum": {}}
    for s in seeds:
        base = 0.7 + 0.02 * rng.standard_normal()
        out["curriculum"][s] = {"stage1": base, "mean": base}
        for arm, d in diff_by_arm.items():
            v = base - d + noise * rng.standard_normal()
            out.setdefault(arm, {})[s] = {"stage1": v, "mean": v}
    return out


def test_verdicts_in_both_directions_and_best_arm_only_where_separable():
    scores = _scores({"shuffled": 0.10, "anti_curriculum": -0.10, "random_order": 0.0})
    diffs = stats.compare(scores)
    by = {(d.arm, d.stage): d for d in diffs}
    assert by[("shuffled", "stage1")].verdict == "beats"
    assert by[("anti_curriculum", "stage1")].verdict == "below"
    assert by[("random_order", "stage1")].verdict == "not separable"
    assert len(diffs) == 6 and all(d.p_holm >= d.p_value for d in diffs)
    assert stats.best_arm(diffs, "stage1") == "anti_curriculum"  # the only arm above the curriculum
    lines = stats.verdict_lines(diffs)
    assert "beats shuffled" in lines[0] and "is below anti_curriculum" in lines[0]
    assert "is not separable from random_order" in lines[0]
    # the curriculum is best only where it beats every arm
    assert stats.best_arm(stats.compare(_scores({"shuffled": 0.1, "random_order": 0.1})), "mean") == "curriculum"
    assert stats.best_arm(stats.compare(_scores({"shuffled": 0.1, "random_order": 0.0})), "mean") is None


def test_holm_turns_a_lone_marginal_difference_into_not_separable():
    # seed differences with p ~ 0.03 alone; with 10 comparisons Holm lifts it above 0.05
    d = np.array([0.01, 0.02, 0.015, 0.03, 0.005])
    p = sps.ttest_1samp(d, 0).pvalue
    assert 0.01 < p < 0.05
    base = {s: {"stage1": 0.5} for s in range(5)}
    scores = {"curriculum": {s: {"stage1": 0.5 + d[s]} for s in range(5)}}
    for k in range(10):
        scores[f"arm{k}"] = base
    diffs = stats.compare(scores)
    assert all(x.verdict == "not separable" for x in diffs) and diffs[0].p_holm == pytest.approx(min(1, 10 * p))


def test_hierarchical_bootstrap_resamples_seeds_then_images():
    # no image noise: the bootstrap is the seed bootstrap of the mean; its interval sits inside the data's range
    reps = np.repeat(np.array([[0.1], [0.2], [0.3]]), 200, axis=1)
    low, high = stats.hierarchical_bootstrap(reps, n_boot=4000, seed=1)
    assert 0.1 <= low < 0.2 < high <= 0.3
    # image noise widens it beyond the seeds-only interval
    noisy = reps + np.random.default_rng(0).normal(0, 0.2, reps.shape)
    nlow, nhigh = stats.hierarchical_bootstrap(noisy, n_boot=4000, seed=1)
    assert nhigh - nlow > high - low
    with pytest.raises(ValueError):
        stats.hierarchical_bootstrap(reps[:1])


def test_paired_replicates_share_the_image_resamples():
    y = np.array([0, 1] * 50)
    a = y + np.random.default_rng(0).normal(0, 0.5, 100)
    acc = lambda yy, s: float(np.mean((s > 0.5) == yy))
    same = stats.paired_replicates(acc, y, a, a, n_boot=50)
    assert np.all(same == 0)  # identical predictions: every paired replicate is exactly 0
    diff = stats.paired_replicates(acc, y, a, np.zeros(100), n_boot=200)
    assert diff.mean() == pytest.approx(acc(y, a) - acc(y, np.zeros(100)), abs=0.03)


def test_compare_uses_replicates_for_the_bootstrap_interval_and_writes_csv_fields(tmp_path):
    scores = _scores({"shuffled": 0.1})
    reps = {arm: {s: {k: np.full(20, v) + np.linspace(-0.01, 0.01, 20) for k, v in st.items()}
                  for s, st in by.items()} for arm, by in scores.items()}
    d = stats.compare(scores, replicates=reps)[0]
    assert not math.isnan(d.boot_ci_low) and d.boot_ci_low < d.mean_diff < d.boot_ci_high
    assert list(d.row()) == stats.CSV_FIELDS
    assert stats.forest_plot(stats.compare(scores, replicates=reps), tmp_path / "f.png").stat().st_size > 1000
