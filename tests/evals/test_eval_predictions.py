"""Per-sample predictions and paired comparisons: two models through `compare_models` on real-format
replicas of four datasets (binary, single-label, multi-label, localization, and MRNet per exam); every
logged metric is recomputed from the predictions files with scikit-learn, and the paired differences
are checked against the two runs."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sklearn import metrics as skm

import real_replicas as rr

SUBTASKS = ["br35h", "kaggle_brain_tumor_subtype", "totalseg_ct_organs", "ct_view", "totalseg", "mrnet_acl"]


@pytest.fixture(scope="module")
def comparison(ray_session, tiny_checkpoint, tmp_path_factory):
    import os

    from radisim.evals.compare import compare_models
    from radisim.evals.suite import ModelRef
    from radisim.jobs.evaluate import seeded_init_checkpoint
    from radisim.platform.tracking import Tracker

    tmp = tmp_path_factory.mktemp("predictions")
    cwd = os.getcwd()
    os.chdir(tmp)  # the sqlite store pins its artifact root under the working directory
    try:
        uri = f"sqlite:///{tmp / 'm.db'}"
        refs = [ModelRef("radisim-tiny", checkpoint=str(tiny_checkpoint), label="tiny-a"),
                ModelRef("radisim-tiny", checkpoint=seeded_init_checkpoint("radisim-tiny", 1, str(tmp / "cache")), label="tiny-b")]
        roots = {"br35h": rr.br35h(tmp / "br35h"), "kaggle_brain_tumor": rr.kaggle_brain_tumor(tmp / "kaggle"),
                 "totalseg": rr.totalseg(tmp / "totalseg"), "mrnet": rr.mrnet(tmp / "mrnet")}
        result = compare_models(refs, Tracker("predictions-test", uri), "pairs", source="real", subtasks=SUBTASKS,
                                roots=roots, cache_dir=tmp / "cache", n_bootstrap=200, driver_max_images=10_000,
                                reference="tiny-a")
    finally:
        os.chdir(cwd)
    return result, uri, tmp


def _sklearn_metrics(kind: str, y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    """The suite's metric definitions (metrics.py docstring), written directly with scikit-learn."""
    if kind == "multi-label":
        has_pos = y.sum(0) > 0
        varied = has_pos & (y.sum(0) < len(y))
        return {"map": float(np.mean([skm.average_precision_score(y[:, k], s[:, k]) for k in np.flatnonzero(has_pos)])),
                "auc": float(np.mean([skm.roc_auc_score(y[:, k], s[:, k]) for k in np.flatnonzero(varied)]))}
    if kind == "binary":
        pred, auc = (s[:, 1] > 0.5).astype(int), skm.roc_auc_score(y, s[:, 1])
    else:
        pred = s.argmax(1)
        classes = [k for k in range(s.shape[1]) if 0 < (y == k).sum() < len(y)]
        auc = np.mean([skm.roc_auc_score(y == k, s[:, k]) for k in classes])
    return {"auc": float(auc), "accuracy": skm.accuracy_score(y, pred),
            "balanced_accuracy": skm.balanced_accuracy_score(y, pred), "macro_f1": skm.f1_score(y, pred, average="macro")}


@pytest.mark.slow
def test_every_logged_metric_is_recomputed_from_the_predictions(comparison):
    from mlflow.tracking import MlflowClient

    from radisim.evals.predictions import load_run_predictions
    from radisim.evals.tasks import get_subtask

    result, uri, _ = comparison
    client = MlflowClient(uri)
    for label, run_id in result.model_run_ids.items():
        logged = client.get_run(run_id).data.metrics
        frames = load_run_predictions(uri, run_id)
        assert sorted(frames) == sorted(SUBTASKS)
        for sid, df in frames.items():
            task = get_subtask(sid)
            scores = df[[f"score_{c}" for c in task.classes]].to_numpy()
            if task.kind == "multi-label":
                y = df[[f"label_{c}" for c in task.classes]].to_numpy()
            else:
                y = df["label"].to_numpy()
                assert set(df.columns) >= {"image_id", "case_id", "label"}
            if task.kind == "binary":
                np.testing.assert_allclose(scores.sum(1), 1.0)  # score_<negative> = 1 - score_<positive>
            for name, value in _sklearn_metrics(task.kind, y, scores).items():
                assert logged[task.key(name)] == pytest.approx(value, abs=1e-9), (label, sid, name)
            assert logged[task.key("n_cases")] == df["case_id"].nunique()
            assert logged[task.key("n_scored")] == len(df)
    # MRNet rows are exams (3 planes x 3 slices each combined), the totalseg rows slices of 2 volumes
    acl = load_run_predictions(uri, result.model_run_ids["tiny-a"])["mrnet_acl"]
    assert sorted(acl["image_id"]) == ["valid/1130", "valid/1131", "valid/1132"]
    assert client.get_run(result.model_run_ids["tiny-a"]).data.metrics["stage4/mrnet_acl/n_images"] == 27
    loc = load_run_predictions(uri, result.model_run_ids["tiny-a"])["totalseg"]
    assert set(loc["case_id"]) == {"s0001", "s0002"} and "query" in loc.columns


@pytest.mark.slow
def test_paired_differences_against_the_reference_are_logged(comparison):
    from mlflow.tracking import MlflowClient

    result, uri, _ = comparison
    client = MlflowClient(uri)
    a = client.get_run(result.model_run_ids["tiny-a"]).data.metrics
    b = client.get_run(result.model_run_ids["tiny-b"]).data.metrics
    assert not any(k.endswith("_delta") for k in a)  # the reference is not paired with itself
    assert client.get_run(result.parent_run_id).data.tags["reference"] == "tiny-a"
    for sid in SUBTASKS:
        key = next(r.subtask for r in result.results[0].subtasks.values() if r.subtask.id == sid).key
        for name in ("auc",):
            d = b[key(f"{name}_delta")]
            assert d == pytest.approx(b[key(name)] - a[key(name)])
            assert b[key(f"{name}_delta_ci_low")] <= d <= b[key(f"{name}_delta_ci_high")]
    for stage in (2, 3, 4, 5):
        d = b[f"stage{stage}/score_delta"]
        assert d == pytest.approx(b[f"stage{stage}/score"] - a[f"stage{stage}/score"])
        assert b[f"stage{stage}/score_delta_ci_low"] <= d <= b[f"stage{stage}/score_delta_ci_high"]
    assert "report/paired_differences.txt" in result.artifacts


@pytest.mark.slow
def test_runs_scored_on_different_images_are_not_paired(comparison):
    from radisim.evals.suite import PairingError, paired_differences

    result, _, _ = comparison
    a, b = result.results
    assert all(v == 0 for k, v in paired_differences(a, a).items() if k.endswith("_delta"))
    sub = b.subtasks["br35h"]
    shifted = replace(b, subtasks={**b.subtasks, "br35h": replace(sub, image_ids=np.roll(sub.image_ids, 1))})
    with pytest.raises(PairingError, match="br35h was scored on different images"):
        paired_differences(shifted, a)
    other_cases = replace(b, subtasks={**b.subtasks, "mrnet_acl": replace(b.subtasks["mrnet_acl"],
                                                                           case_ids=np.asarray(["x", "y", "z"], dtype=object))})
    with pytest.raises(PairingError, match="different cases"):
        paired_differences(other_cases, a)
    with pytest.raises(PairingError, match="bootstrap"):
        paired_differences(replace(b, seed=1), a)
