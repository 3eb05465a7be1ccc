"""`radisim train --smoke` end to end: real Ray, real open_clip, real MLflow store in a temp dir."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from radisim.curriculum.spec import load_spec

PHASES = ["modality", "anatomy", "localization", "abnormality", "grading"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("train-smoke")
    uri = f"sqlite:///{work / 'tracking.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "radisim.jobs.train", "--smoke", "--set", "train.num_workers=2",
                           "--set", "tracking.experiment=smoke"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return work, uri, proc.stdout + proc.stderr


@pytest.mark.slow
def test_run_tree_and_metrics(smoke_run):
    from mlflow.tracking import MlflowClient

    _, uri, _ = smoke_run
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["phase"] for r in children) == sorted(PHASES)
    hard_negatives = {p.name: p.hard_negatives for p in load_spec("radisim_cl").phases}
    assert 0 < sum(v > 0 for v in hard_negatives.values()) < len(PHASES)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert parent.data.tags["mlflow.source.git.commit"]
    assert parent.data.params["model.name"] == "radisim-tiny"
    untrained = {stage: next(h.value for h in client.get_metric_history(parent.info.run_id, f"stage{stage}/score")
                             if h.step == 0) for stage in range(1, 6)}
    for run in [parent, *children]:
        m = run.data.metrics
        for stage in range(1, 6):
            assert math.isfinite(m[f"stage{stage}/score"]), (run.info.run_name, stage)
            assert any(k.startswith(f"stage{stage}/") and k.endswith("_ci_low") for k in m)
    for child in children:
        m = child.data.metrics
        for stage in range(1, 6):  # each phase's gain over the untrained model, paired CI around it
            low, gain, high = (m[f"stage{stage}/gain{end}"] for end in ("_ci_low", "", "_ci_high"))
            assert low <= gain <= high and gain == pytest.approx(m[f"stage{stage}/score"] - untrained[stage])
        for key in ("train/loss", "train/lr", "train/samples_per_s", "train/data_wait_frac"):
            assert math.isfinite(m[key]) and m[key] >= 0, key
        # what each evaluation cost, its parts within its total
        assert 0 < m["eval/embed_s"] + m["eval/score_s"] <= m["eval/total_s"]
        history = client.get_metric_history(child.info.run_id, "train/loss")
        assert [h.step for h in history] == [2, 4]  # --smoke: 4 steps, log every 2
        # the bundled spec's counterfactual captions reached the loss, on both DDP ranks' batches
        if hard_negatives[child.data.tags["phase"]]:
            part = m["train/counterfactual_loss"]
            assert 0 < part < m["train/loss"], (child.data.tags["phase"], part)
            assert 0 <= m["train/counterfactual_acc"] <= 1 and 0 <= m["train/counterfactual_blind_acc"] <= 1
        else:
            assert not {"train/counterfactual_loss", "train/counterfactual_acc"} & set(m)
    # the parent shows the stage score after each phase, with the untrained model at step 0
    history = client.get_metric_history(parent.info.run_id, "stage1/score")
    assert sorted(h.step for h in history) == [0, 1, 2, 3, 4, 5]
    assert [h.step for h in client.get_metric_history(parent.info.run_id, "stage1/gain")] == [1, 2, 3, 4, 5]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/stage_scores_radar.png", "report/stage_scores.csv"} <= artifacts


@pytest.mark.slow
def test_prints_tables_and_ui_command(smoke_run):
    _, uri, out = smoke_run
    assert "untrained" in out and "p5-grading" in out
    assert "p5-grading - untrained, paired case-bootstrap 95% CI over the held-out cases" in out
    assert "mlflow ui --backend-store-uri" not in out or uri in out
    assert f"in {uri}" in out
    # the worker's own progress lines, not Ray Train's INFO lines (train.ray_log_level=WARNING)
    assert "[grading] step 4/4" in out and "Reporting training result" not in out
    # Ray 2.60's own default ingest options warn in every fit (runner.data_config builds them instead)
    assert "RayDeprecationWarning" not in out
