"""`radisim evaluate` end to end: --list, --smoke twice (the second from the embedding cache) into a
real MLflow store, and the errors a user meets offline or without data (exit 2, no traceback)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest

from radisim.evals.tasks import subtasks


def evaluate(*args: str, cwd, env=None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "radisim.jobs.evaluate", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def test_list_json_has_the_24_subtasks(tmp_path):
    proc = evaluate("--list", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 24 and len({r["id"] for r in rows}) == 24
    assert {r["stage"] for r in rows} == {1, 2, 3, 4, 5}
    assert {m for r in rows for m in r["modalities"]} == {"CT", "MR", "DR"}
    assert all({"id", "stage", "modality", "modalities", "dataset", "metric"} <= set(r) for r in rows)
    table = evaluate("--list", cwd=tmp_path).stdout
    assert all(r["id"] in table for r in rows)


def test_offline_pretrained_weights_exit_2_naming_the_download(tmp_path):
    proc = evaluate("--model", "ViT-B-16:openai", "--smoke", cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"}, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "cannot load model ViT-B-16:openai" in proc.stderr and "Download them once" in proc.stderr
    assert "huggingface" in proc.stderr  # where to put them


def test_real_source_without_roots_exits_2(tmp_path):
    proc = evaluate("--source", "real", cwd=tmp_path)
    assert proc.returncode == 2 and "--root DATASET=PATH" in proc.stderr and "Traceback" not in proc.stderr
    proc = evaluate("--source", "real", "--root", f"br35h={tmp_path / 'nowhere'}", "--model", "radisim-tiny", cwd=tmp_path)
    assert proc.returncode == 2 and "--root br35h=" in proc.stderr and "no such file" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_unknown_reference_exits_2(tmp_path):
    proc = evaluate("--model", "radisim-tiny", "--reference", "nobody", "--smoke", cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and "--reference 'nobody': not one of the models" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("evaluate-smoke")
    uri = f"sqlite:///{work / 'm.db'}"
    runs = []
    for _ in range(2):
        t = time.perf_counter()
        proc = evaluate("--smoke", "--set", "tracking.experiment=eval-smoke", cwd=work, env={"MLFLOW_TRACKING_URI": uri})
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        runs.append((proc.stdout, time.perf_counter() - t))
    return work, uri, runs


def model_runs(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("eval-smoke")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    return client, [r for r in runs if r.data.tags.get("kind") == "model"], [r for r in runs if r.data.tags.get("kind") == "comparison"]


@pytest.mark.slow
def test_smoke_logs_every_subtask_metric_with_cis_and_stage_scores(smoke_runs):
    _, uri, runs = smoke_runs
    client, models, parents = model_runs(uri)
    assert len(models) == 2 and len(parents) == 2
    run = models[0]
    assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert run.data.tags["model"] == "radisim-tiny (random init, seed 0)" and run.data.tags["synthetic"] == "true"
    m = run.data.metrics
    for task in subtasks():
        for name in task.metrics:
            key = task.key(name)
            assert math.isfinite(m[key]) and m[f"{key}_ci_low"] <= m[key] <= m[f"{key}_ci_high"], key
    for stage in range(1, 6):
        assert math.isfinite(m[f"stage{stage}/score"])
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id, "report")}
    assert {"report/comparison.csv", "report/radar.png", "report/stage_scores.txt"} <= artifacts
    model_dir = next(a.path for a in client.list_artifacts(parents[0].info.run_id, "report") if a.is_dir)
    files = {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(parents[0].info.run_id, model_dir)}
    assert "roc_stage4_br35h.png" in files and "confusion_stage5_kaggle_brain_tumor_subtype.png" in files
    stdout = runs[0][0]
    assert "mlflow ui --backend-store-uri" in stdout and uri in stdout
    predictions = {a.path for a in client.list_artifacts(run.info.run_id, "predictions")}
    assert predictions == {f"predictions/{t.id}.parquet" for t in subtasks()}
    assert "br35h " in stdout and "5/5" in stdout  # per-subtask counts and the stage coverage are printed


@pytest.mark.slow
def test_rerun_takes_every_pool_from_the_cache(smoke_runs):
    _, uri, runs = smoke_runs
    _, (cold, warm), _ = model_runs(uri)
    assert cold.data.metrics["eval/cache_hit_pools"] == 0
    assert warm.data.metrics["eval/cache_hit_pools"] == warm.data.metrics["eval/pools"] >= 1
    assert "1/1 image pools from the cache" in runs[1][0]
    assert {k: v for k, v in warm.data.metrics.items() if k.startswith("stage")} == \
        {k: v for k, v in cold.data.metrics.items() if k.startswith("stage")}
    c, w = cold.data.metrics, warm.data.metrics
    print(f"\n[evaluate --smoke] cold: job {runs[0][1]:.1f} s, suite {c['eval/total_s']:.1f} s (embed {c['eval/embed_s']:.1f} s); "
          f"cached: job {runs[1][1]:.1f} s, suite {w['eval/total_s']:.1f} s (embed {w['eval/embed_s']:.2f} s); "
          f"embeddings saved {c['eval/embed_s'] - w['eval/embed_s']:.1f} s")
