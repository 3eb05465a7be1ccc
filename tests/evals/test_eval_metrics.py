import numpy as np
import pytest
from sklearn import metrics as skm

from radisim.evals import metrics as M


def test_point_metrics_hand_computed_binary():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.6, 0.4, 0.9])  # pairs (pos > neg): 0.4>0.1, 0.9>0.1, 0.9>0.6 -> 3/4
    m = M.point_metrics("binary", y, s)
    assert m["auc"] == pytest.approx(0.75)
    # preds at 0.5: [0, 1, 0, 1] -> 2/4 right; recall 1/2 per class; F1 per class 1/2
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx(0.5)


def test_point_metrics_hand_computed_single_label_and_multilabel():
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.2, 0.3], [0.1, 0.1, 0.8]])
    m = M.point_metrics("single-label", y, p)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)  # class 0: P 1/2 R 1; class 2: P 1 R 1/2
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    Y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    S = np.array([[0.9, 0.2], [0.3, 0.8], [0.6, 0.1], [0.4, 0.5]])
    # label 0: ranks 0.9 (pos), 0.6 (pos) on top -> AP 1; label 1: 0.8 pos, 0.5 neg, 0.2 neg, 0.1 pos -> (1 + 2/4)/2
    assert M.point_metrics("multi-label", Y, S)["map"] == pytest.approx((1 + 0.75) / 2)


@pytest.mark.parametrize("kind", ["single-label", "binary", "multi-label"])
def test_vectorised_bootstrap_equals_sklearn_on_explicit_resamples(kind):
    rng = np.random.default_rng(1)
    n = 80
    if kind == "single-label":
        y, s = rng.integers(0, 4, n), rng.dirichlet(np.ones(4), n).round(2)  # rounding makes ties
    elif kind == "binary":
        y, s = rng.integers(0, 2, n), rng.random(n).round(1)
    else:
        y, s = rng.integers(0, 2, (n, 5)), rng.random((n, 5)).round(1)
    W = M.resample_weights(n, 20, seed=7)
    fast = M.weighted_metrics(kind, W, y, s)
    idx = np.random.default_rng(7).integers(0, n, (20, n))  # the resamples W counts
    for b in range(20):
        slow = M.point_metrics(kind, y[idx[b]], s[idx[b]])
        for name, value in slow.items():
            assert fast[name][b] == pytest.approx(value, abs=1e-12), (name, b)


def test_bootstrap_ci_contains_point_is_seeded_and_narrows_with_more_data():
    rng = np.random.default_rng(0)

    def data(n):
        y = rng.integers(0, 2, n)
        return y, np.clip(0.3 * y + rng.normal(0.35, 0.25, n), 0, 1)

    y, s = data(100)
    a = M.evaluate("binary", y, s, n_bootstrap=1000, seed=3)
    assert a == M.evaluate("binary", y, s, n_bootstrap=1000, seed=3)
    assert a != M.evaluate("binary", y, s, n_bootstrap=1000, seed=4)
    for name in ("auc", "accuracy", "balanced_accuracy", "macro_f1"):
        assert a[f"{name}_ci_low"] <= a[name] <= a[f"{name}_ci_high"]
        assert a[f"{name}_ci_low"] < a[f"{name}_ci_high"]
    y_big, s_big = data(2000)
    b = M.evaluate("binary", y_big, s_big, n_bootstrap=1000, seed=3)
    assert b["auc_ci_high"] - b["auc_ci_low"] < 0.5 * (a["auc_ci_high"] - a["auc_ci_low"])


def test_resamples_missing_a_class_are_dropped_not_crashed():
    y = np.array([0, 0, 0, 0, 0, 0, 0, 1])  # 1 positive: ~1/3 of resamples have none
    s = np.linspace(0, 1, 8)
    boots = M.bootstrap_metrics("binary", y, s, n_bootstrap=500, seed=0)
    assert np.isnan(boots["auc"]).any() and np.isfinite(boots["auc"]).any()
    out = M.evaluate("binary", y, s, n_bootstrap=500, seed=0)
    assert out["auc"] == 1.0 and out["auc_ci_low"] == out["auc_ci_high"] == 1.0
    # multi-class with a rare class, multi-label with a rare label
    y3 = np.array([0, 0, 1, 1, 2])
    out3 = M.evaluate("single-label", y3, np.eye(3)[[0, 1, 1, 1, 2]] * 0.8 + 0.1, n_bootstrap=300, seed=0)
    assert all(np.isfinite(v) for v in out3.values())
    Y = np.array([[1, 0], [0, 0], [1, 0], [0, 1]])
    outm = M.evaluate("multi-label", Y, np.random.default_rng(0).random((4, 2)), n_bootstrap=300, seed=0)
    assert all(np.isfinite(v) for v in outm.values())


def test_bootstrap_is_fast_enough_for_1000_resamples():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 600)
    p = rng.dirichlet(np.ones(4), 600)
    out = M.evaluate("single-label", y, p, n_bootstrap=1000, seed=0)  # ~50 ms; sklearn loop: seconds
    assert set(out) == {f"{m}{s}" for m in M.METRICS_BY_KIND["single-label"] for s in ("", "_ci_low", "_ci_high")}


@pytest.mark.parametrize("kind", ["binary", "single-label", "multi-label"])
def test_cluster_bootstrap_of_identical_copies_equals_one_image_per_case(kind):
    """Four identical copies of every case's image: resampling cases gives exactly the interval of one
    image per case, while resampling images (the old protocol) gives a narrower, overconfident one."""
    rng = np.random.default_rng(0)
    m, k = 40, 4
    if kind == "binary":
        y, s = rng.integers(0, 2, m), rng.random(m)
    elif kind == "single-label":
        y, s = rng.integers(0, 3, m), rng.dirichlet(np.ones(3), m)
    else:
        y, s = rng.integers(0, 2, (m, 3)), rng.random((m, 3))
    cases = np.array([f"case{i:03d}" for i in range(m)])
    y_rep, s_rep, cases_rep = np.repeat(y, k, axis=0), np.repeat(s, k, axis=0), np.repeat(cases, k)
    one = M.evaluate(kind, y, s, n_bootstrap=1000, seed=5, cases=cases)
    copies = M.evaluate(kind, y_rep, s_rep, n_bootstrap=1000, seed=5, cases=cases_rep)
    assert copies == pytest.approx(one, abs=1e-12)
    images = M.evaluate(kind, y_rep, s_rep, n_bootstrap=1000, seed=5)  # every copy its own "case"
    primary = M.METRICS_BY_KIND[kind][0]
    width = lambda r: r[f"{primary}_ci_high"] - r[f"{primary}_ci_low"]  # noqa: E731
    assert width(images) < 0.7 * width(copies)  # ~1/sqrt(4) of it


def test_case_weights_move_whole_cases():
    cases = np.array(["b", "a", "b", "c", "a", "b"])
    W = M.resample_weights(6, 50, seed=1, cases=cases)
    for same in ([1, 4], [0, 2, 5]):  # images of one case always carry the same multiplicity
        assert (W[:, same] == W[:, same[:1]]).all()
    # per resample, 3 cases are drawn: the multiplicities of the cases a, b, c sum to 3
    assert (W[:, 1] + W[:, 0] + W[:, 3] == 3).all()
    assert np.array_equal(M.resample_weights(6, 50, seed=1), M.resample_weights(6, 50, seed=1, cases=np.arange(6)))


def test_chance_levels_and_normalisation():
    y3 = np.array([0, 0, 1, 2])  # prevalences 1/2, 1/4, 1/4
    chance = M.chance_levels("single-label", y3, 3)
    assert chance["auc"] == 0.5 and chance["accuracy"] == chance["balanced_accuracy"] == pytest.approx(1 / 3)
    f1 = lambda p: 2 * p / 3 / (p + 1 / 3)  # noqa: E731  precision p, recall 1/3
    assert chance["macro_f1"] == pytest.approx((f1(0.5) + 2 * f1(0.25)) / 3)
    # the F1 chance level is what uniform random guessing scores on average
    rng = np.random.default_rng(0)
    y_big = rng.choice(3, 20000, p=[0.5, 0.25, 0.25])
    guessed = skm.f1_score(y_big, rng.integers(0, 3, 20000), average="macro")
    assert guessed == pytest.approx(M.chance_levels("single-label", y_big, 3)["macro_f1"], abs=0.01)
    Y = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]])  # label 1 never present: not averaged
    assert M.chance_levels("multi-label", Y, 3)["map"] == pytest.approx((0.5 + 0.25) / 2)
    assert M.chance_levels("binary", np.array([0, 1, 1]), 2)["accuracy"] == 0.5
    assert M.chance_normalised(0.75, 0.5) == 0.5 and M.chance_normalised(0.25, 0.25) == 0.0
    assert M.chance_normalised(1.0, 1 / 3) == pytest.approx(1.0) and M.chance_normalised(0.2, 0.5) < 0
