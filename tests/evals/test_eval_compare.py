"""Two models in one comparison: sibling MLflow runs under a parent that holds the report artifacts."""
from __future__ import annotations

import csv

import pytest

import real_replicas as rr


@pytest.mark.slow
def test_two_models_are_sibling_runs_under_one_comparison(ray_session, tiny_checkpoint, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from radisim.evals.compare import compare_models
    from radisim.evals.suite import ModelRef
    from radisim.jobs.evaluate import seeded_init_checkpoint
    from radisim.platform.tracking import Tracker

    monkeypatch.chdir(tmp_path)  # the sqlite store pins its artifact root under the working directory
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    other = seeded_init_checkpoint("radisim-tiny", 1, str(tmp_path / "cache"))
    assert seeded_init_checkpoint("radisim-tiny", 1, str(tmp_path / "cache")) == other  # saved once
    refs = [ModelRef("radisim-tiny", checkpoint=str(tiny_checkpoint), label="tiny-a"),
            ModelRef("radisim-tiny", checkpoint=other, label="tiny-b")]
    roots = {"br35h": rr.br35h(tmp_path / "br35h")}  # one small pool: 2 embedding passes
    comparison = compare_models(refs, Tracker("compare-test", uri), "baselines", source="real", params={"source": "real"},
                                subtasks=["br35h"], roots=roots,
                                cache_dir=tmp_path / "cache", n_bootstrap=20)
    client = MlflowClient(uri)
    parent = client.get_run(comparison.parent_run_id)
    assert parent.data.tags["kind"] == "comparison" and parent.info.status == "FINISHED"
    assert parent.data.tags["models"] == "tiny-a, tiny-b"
    children = [client.get_run(i) for i in comparison.model_run_ids.values()]
    assert [c.data.tags["model"] for c in children] == ["tiny-a", "tiny-b"]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert children[0].data.tags["model.fingerprint"] != children[1].data.tags["model.fingerprint"]
    assert all("stage4/br35h/auc_ci_high" in c.data.metrics and "stage4/score" in c.data.metrics for c in children)
    paths = set(comparison.artifacts)
    assert {"report/comparison.csv", "report/radar.png", "report/tiny-a/roc_stage4_br35h.png",
            "report/tiny-b/roc_stage4_br35h.png"} <= paths
    local = client.download_artifacts(parent.info.run_id, "report/comparison.csv", str(tmp_path / "dl"))
    rows = list(csv.DictReader(open(local)))
    assert [r["model"] for r in rows] == ["tiny-a", "tiny-b"] and "stage4/score" in rows[0]
