"""Metrics of the zero-shot subtasks, with seeded bootstrap 95% confidence intervals.

Inputs per kind (n examples, K classes):
  single-label / localization   y_true (n,) int class index, scores (n, K) class probabilities
  binary                        y_true (n,) in {0, 1},       scores (n,) P(positive)
  multi-label                   y_true (n, K) in {0, 1},     scores (n, K) P(label present)

Point values come from scikit-learn. Definitions where sklearn leaves a choice:
  auc (single-label)  macro one-vs-rest AUC over the classes that have positives and negatives
                      (= sklearn's `multi_class="ovr", average="macro"` when every class occurs)
  auc (multi-label)   macro AUC over labels that have positives and negatives
  map                 macro average precision over labels with at least one positive
  macro_f1            sklearn's macro F1 (over the classes in y_true or y_pred)
  accuracy (binary)   threshold 0.5 on P(positive)

The bootstrap resamples CASES (patient / exam / volume: `cases`, one id per example) with replacement
(`n_bootstrap` times, default 1,000 as CheXzero): a drawn case brings all of its images, so the slices
of one patient, which are not independent, widen the interval as they should (a cluster bootstrap;
without `cases` every example is its own case). All metrics of a subtask use the same resamples, and
two models scored on the same examples with the same seed draw the same resamples (paired). It is vectorised: a resample is a row of
multiplicities W (n_bootstrap, n), and every metric is written as weighted counts, so 1,000 resamples
cost a few matrix products instead of 1,000 sklearn calls (tests check it against sklearn on explicit
resamples). A resample where a metric is undefined (a class missing) is dropped for that metric; the
CI is the 2.5/97.5 percentile of the rest, widened to contain the point value if it does not (only
seen with degenerate resample distributions).
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn import metrics as skm

from .tasks import METRICS_BY_KIND

CI_LEVEL = 0.95


# ------------------------------------------------------------------------------------------- point values
def _ovr_auc(y: np.ndarray, scores: np.ndarray) -> float:
    onehot = np.eye(scores.shape[1], dtype=int)[y] if y.ndim == 1 else y
    aucs = [skm.roc_auc_score(onehot[:, k], scores[:, k]) for k in range(scores.shape[1]) if 0 < onehot[:, k].sum() < len(onehot)]
    return float(np.mean(aucs)) if aucs else float("nan")


def point_metrics(kind: str, y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Every metric of `kind` (see `METRICS_BY_KIND`) on the full set, via scikit-learn."""
    y_true, scores = np.asarray(y_true), np.asarray(scores, dtype=np.float64)
    out: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "y_pred contains classes not in y_true"
        if kind == "multi-label":
            has_pos = y_true.sum(0) > 0
            out["map"] = (
                float(skm.average_precision_score(y_true[:, has_pos], scores[:, has_pos], average="macro"))
                if has_pos.any() else float("nan")
            )
            out["auc"] = _ovr_auc(y_true, scores)
            return out
        if kind == "binary":
            pred = (scores > 0.5).astype(int)
            out["auc"] = float(skm.roc_auc_score(y_true, scores)) if 0 < y_true.sum() < len(y_true) else float("nan")
        else:
            pred = scores.argmax(1)
            out["auc"] = _ovr_auc(y_true, scores)
        out["accuracy"] = float(skm.accuracy_score(y_true, pred))
        out["balanced_accuracy"] = float(skm.balanced_accuracy_score(y_true, pred))
        out["macro_f1"] = float(skm.f1_score(y_true, pred, average="macro"))
    return {m: out[m] for m in METRICS_BY_KIND[kind]}


# ------------------------------------------------------------------------------ weighted (vectorised) forms
def case_index(cases: np.ndarray | None, n: int) -> tuple[np.ndarray, int]:
    """(n,) index of each example's case (cases in sorted id order) and the number of cases."""
    if cases is None:
        return np.arange(n), n
    cases = np.asarray(cases)
    if len(cases) != n:
        raise ValueError(f"{len(cases)} case ids for {n} examples")
    ids, index = np.unique(cases.astype(str), return_inverse=True)
    return index.reshape(-1), len(ids)


def resample_weights(n: int, n_bootstrap: int, seed: int | np.random.SeedSequence,
                     cases: np.ndarray | None = None) -> np.ndarray:
    """(n_bootstrap, n) multiplicities of each example in each resample. Each resample draws as many
    cases as there are, with replacement; an example's weight is the number of times its case was
    drawn. Without `cases` each example is a case (rows then sum to n)."""
    index, g = case_index(cases, n)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, g, size=(n_bootstrap, g))
    rows = np.repeat(np.arange(n_bootstrap), g)
    per_case = np.bincount(rows * g + idx.ravel(), minlength=n_bootstrap * g).reshape(n_bootstrap, g)
    return per_case[:, index].astype(np.float64)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan rows -> nan (metric undefined)
        return np.nanmean(x, axis=axis)


def _tied_groups(values: np.ndarray, descending: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sort order of `values` and the start index of each run of equal values in that order."""
    order = np.argsort(-values if descending else values, kind="mergesort")
    v = values[order]
    starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
    return order, starts


def weighted_auc(W: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """ROC AUC of scores `s` for binary `y` under each row of weights W; nan where a class has no weight.

    AUC = P(s_pos > s_neg) + P(s_pos == s_neg) / 2 over weighted pairs (equal to sklearn's with ties).
    """
    order, starts = _tied_groups(s, descending=False)
    Ws, ys = W[:, order], y[order].astype(np.float64)
    pos = np.add.reduceat(Ws * ys, starts, axis=1)
    neg = np.add.reduceat(Ws * (1.0 - ys), starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    num = (pos * (neg_below + 0.5 * neg)).sum(1)
    return _safe_div(num, pos.sum(1) * neg.sum(1))


def weighted_average_precision(W: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """sklearn's average precision (sum over thresholds of recall step x precision) under weights W."""
    order, starts = _tied_groups(s, descending=True)
    Ws, ys = W[:, order], y[order].astype(np.float64)
    pos = np.add.reduceat(Ws * ys, starts, axis=1)
    tp = np.cumsum(pos, axis=1)
    seen = np.cumsum(np.add.reduceat(Ws, starts, axis=1), axis=1)
    precision = np.nan_to_num(_safe_div(tp, seen))
    return _safe_div((pos * precision).sum(1), tp[:, -1])


def _label_metrics(W: np.ndarray, y: np.ndarray, pred: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """accuracy, balanced accuracy and macro F1 of hard predictions under weights W."""
    eye = np.eye(k)
    true_oh, pred_oh = eye[y], eye[pred]
    correct = (y == pred).astype(np.float64)
    n_true, n_pred = W @ true_oh, W @ pred_oh
    tp = W @ (true_oh * correct[:, None])
    recall = _safe_div(tp, n_true)
    f1 = _safe_div(2 * tp, n_true + n_pred)  # nan for classes neither true nor predicted: not averaged
    return {
        "accuracy": _safe_div(W @ correct, W.sum(1)),
        "balanced_accuracy": nanmean(recall, axis=1),
        "macro_f1": nanmean(f1, axis=1),
    }


def _ovr_weighted_auc(W: np.ndarray, onehot: np.ndarray, scores: np.ndarray) -> np.ndarray:
    per_class = np.stack([weighted_auc(W, onehot[:, k], scores[:, k]) for k in range(scores.shape[1])], axis=1)
    return nanmean(per_class, axis=1)


def weighted_metrics(kind: str, W: np.ndarray, y_true: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of `kind` for each row of weights W (shape (B, n)) -> {metric: (B,) values}."""
    y_true, scores = np.asarray(y_true), np.asarray(scores, dtype=np.float64)
    if kind == "multi-label":
        K = scores.shape[1]
        ap = np.stack([weighted_average_precision(W, y_true[:, k], scores[:, k]) for k in range(K)], axis=1)
        return {"map": nanmean(ap, axis=1), "auc": _ovr_weighted_auc(W, y_true, scores)}
    if kind == "binary":
        y = y_true.astype(int)
        out = _label_metrics(W, y, (scores > 0.5).astype(int), 2)
        out["auc"] = weighted_auc(W, y, scores)
    else:
        y = y_true.astype(int)
        K = scores.shape[1]
        out = _label_metrics(W, y, scores.argmax(1), K)
        out["auc"] = _ovr_weighted_auc(W, np.eye(K)[y], scores)
    return {m: out[m] for m in METRICS_BY_KIND[kind]}


# ------------------------------------------------------------------------------------------- bootstrap
def bootstrap_metrics(
    kind: str, y_true: np.ndarray, scores: np.ndarray, n_bootstrap: int = 1000, seed: int | np.random.SeedSequence = 0,
    cases: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """{metric: (n_bootstrap,) values} on seeded case resamples; nan where undefined for that resample."""
    W = resample_weights(len(y_true), n_bootstrap, seed, cases)
    return weighted_metrics(kind, W, y_true, scores)


def percentile_ci(value: float, resamples: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of `resamples` (nan ones dropped), widened to contain `value`;
    (value, value) when nothing is left."""
    values = resamples[np.isfinite(resamples)]
    if not len(values) or not np.isfinite(value):
        return value, value
    tail = 100 * (1 - CI_LEVEL) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(min(low, value)), float(max(high, value))


def evaluate_resampled(
    kind: str, y_true: np.ndarray, scores: np.ndarray, n_bootstrap: int = 1000, seed: int | np.random.SeedSequence = 0,
    cases: np.ndarray | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """`evaluate`'s flat dict and the (n_bootstrap,) resample values behind each CI. Two models scored
    on the same examples (and cases) with the same seed share their resamples, so their values pair up."""
    point = point_metrics(kind, y_true, scores)
    boots = bootstrap_metrics(kind, y_true, scores, n_bootstrap, seed, cases) if n_bootstrap > 0 else {}
    out: dict[str, float] = {}
    for name, value in point.items():
        low, high = percentile_ci(value, boots.get(name, np.array([])))
        out[name], out[f"{name}_ci_low"], out[f"{name}_ci_high"] = value, low, high
    return out, boots


def evaluate(
    kind: str, y_true: np.ndarray, scores: np.ndarray, n_bootstrap: int = 1000, seed: int | np.random.SeedSequence = 0,
    cases: np.ndarray | None = None,
) -> dict[str, float]:
    """Flat dict {metric, metric_ci_low, metric_ci_high} for every metric of `kind`."""
    return evaluate_resampled(kind, y_true, scores, n_bootstrap, seed, cases)[0]


# ----------------------------------------------------------------------------------------------- chance
def chance_levels(kind: str, y_true: np.ndarray, n_classes: int) -> dict[str, float]:
    """What each metric of `kind` scores by chance on these labels (a scorer that ignores the image):
      auc                          0.5
      accuracy, balanced_accuracy  1/k (uniform guessing over the k classes; binary k = 2)
      macro_f1                     mean over the classes present of 2 p/k / (p + 1/k), p = the class's
                                   prevalence: the F1 of uniform guessing (precision p, recall 1/k)
      map                          mean prevalence over the labels with a positive (random scores' AP)
    """
    y = np.asarray(y_true)
    out = {"auc": 0.5}
    if kind == "multi-label":
        prevalence = y.mean(0)
        present = prevalence[prevalence > 0]
        out["map"] = float(present.mean()) if len(present) else float("nan")
        return {m: out[m] for m in METRICS_BY_KIND[kind]}
    k = 2 if kind == "binary" else n_classes
    prevalence = np.bincount(y.astype(int), minlength=k) / max(len(y), 1)
    present = prevalence[prevalence > 0]
    out["accuracy"] = out["balanced_accuracy"] = 1.0 / k
    out["macro_f1"] = float(np.mean(2 * present / k / (present + 1.0 / k))) if len(present) else float("nan")
    return {m: out[m] for m in METRICS_BY_KIND[kind]}


def chance_normalised(value: float | np.ndarray, chance: float) -> float | np.ndarray:
    """(m - chance) / (1 - chance): 0 = chance, 1 = perfect, below 0 = worse than chance."""
    return (value - chance) / (1.0 - chance) if chance < 1 else value * np.nan
