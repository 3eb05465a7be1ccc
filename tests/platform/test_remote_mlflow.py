"""A smoke curriculum run logging to a remote `mlflow server` (sqlite backend, served artifacts) over
HTTP, read back through the server's REST API, and the MLflow UI rendering those runs and their
stage scores in headless Chromium (screenshots kept in tests/artifacts/)."""
from __future__ import annotations

import json
import math
import re
import urllib.parse
import urllib.request

import pytest

from services import EXPERIMENT, ROOT, TWO_PHASE_NAMES, chromium, render

ARTIFACTS = ROOT / "tests" / "artifacts"


def api(uri: str, endpoint: str, body: dict | None = None, **query) -> dict:
    url = f"{uri}/api/2.0/mlflow/{endpoint}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def runs_by_rest(uri: str) -> tuple[str, list[dict]]:
    exp = api(uri, "experiments/get-by-name", experiment_name=EXPERIMENT)["experiment"]
    runs = api(uri, "runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 100})["runs"]
    return exp["experiment_id"], runs


def tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def metrics(run: dict) -> dict:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


@pytest.mark.slow
def test_run_tree_and_stage_scores_over_rest(cloud_run):
    _, runs = runs_by_rest(cloud_run["uri"])
    parents = [r for r in runs if "mlflow.parentRunId" not in tags(r)]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if tags(r).get("mlflow.parentRunId") == parent["info"]["run_id"]]
    assert sorted(tags(r)["phase"] for r in children) == sorted(TWO_PHASE_NAMES)
    assert all(r["info"]["status"] == "FINISHED" for r in runs)
    for run in (parent, *children):
        m = metrics(run)
        for stage in range(1, 6):
            # chance-normalised (0 = chance, 1 = perfect, below 0 worse than chance); the raw mean in [0, 1]
            assert math.isfinite(m[f"stage{stage}/score"]) and -1 <= m[f"stage{stage}/score"] <= 1
            assert 0 <= m[f"stage{stage}/score_raw"] <= 1
    assert {p["key"]: p["value"] for p in parent["data"]["params"]}["model.name"] == "radisim-tiny"
    # artifacts went through the server (--serve-artifacts), not to a path on the client
    assert parent["info"]["artifact_uri"].startswith("mlflow-artifacts:")
    listed = api(cloud_run["uri"], "artifacts/list", run_id=parent["info"]["run_id"], path="report")
    assert {"report/stage_scores_radar.png", "report/stage_scores.csv"} <= {f["path"] for f in listed["files"]}
    assert f"in {cloud_run['uri']}" in cloud_run["out"]


@pytest.mark.slow
def test_tracker_outage_mid_run_loses_no_metric(cloud_run):
    """conftest.py's run lost its tracking server for OUTAGE_S from phase 1's first logged step: training
    went on, and every step's metrics of both phases reached the server once it was back."""
    _, runs = runs_by_rest(cloud_run["uri"])
    assert cloud_run["alive_through_outage"], "the job died with the tracker"
    for run in runs:
        if "phase" not in tags(run):
            continue
        history = api(cloud_run["uri"], "metrics/get-history", run_id=run["info"]["run_id"], metric_key="train/step")
        steps = sorted(int(m["step"]) for m in history["metrics"])
        assert steps == [1, 2, 3, 4], (tags(run)["phase"], steps)  # --smoke: 4 steps, train.log_every=1


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="chromium not installed (make test installs it)")
def test_ui_renders_runs_and_stage_score_comparison(cloud_run, tmp_path):
    uri = cloud_run["uri"]
    exp_id, runs = runs_by_rest(uri)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    parent = next(r for r in runs if "mlflow.parentRunId" not in tags(r))

    page = render(f"{uri}/#/experiments/{exp_id}/runs", tmp_path / "chrome-runs",
                  screenshot=ARTIFACTS / "mlflow_experiment_runs.png")
    assert parent["info"]["run_name"] in page, page[-2000:]
    assert re.search(rf"{len(runs)}\s+matching runs", _text(page)), _text(page)[:2000]

    # chart view: one section per metric prefix; stage<N> holds exactly the stage-level charts (score,
    # gain over the untrained model, their CI bounds), the subtasks have sections of their own
    page = _text(render(f"{uri}/#/experiments/{exp_id}/runs?compareRunsMode=CHART", tmp_path / "chrome-charts",
                        screenshot=ARTIFACTS / "mlflow_experiment_charts.png"))
    for stage in range(1, 6):
        stage_level = {k for r in runs for k in metrics(r) if k.startswith(f"stage{stage}/") and k.count("/") == 1}
        assert {f"stage{stage}/score", f"stage{stage}/gain"} <= stage_level
        assert f"stage{stage} ({len(stage_level)})" in page, page[:3000]
    assert "stage4/br35h" in page and "train (" in page

    # compare view of the whole run tree: run names, the stage-score row with the logged value, tags
    ids = json.dumps([r["info"]["run_id"] for r in runs])
    compare = f"{uri}/#/compare-runs?runs={urllib.parse.quote(ids)}&experiments={urllib.parse.quote(json.dumps([exp_id]))}"
    text = _text(render(compare, tmp_path / "chrome-compare", screenshot=ARTIFACTS / "mlflow_compare_runs.png"))
    assert f"Comparing {len(runs)} Runs" in text, text[:2000]
    for label in ("p1-modality", "p2-anatomy", parent["info"]["run_name"]):
        assert label in text
    # the metrics table lists names in order and renders its first rows: the stage-level gain comes first
    assert "stage1/gain" in text and "ordering" in text and "phase" in text
    # the value shown is the logged one (the compare table rounds to 3 decimals)
    gain = metrics(parent)["stage1/gain"]
    assert any(abs(float(v.replace("\u2212", "-")) - gain) < 1e-3 for v in re.findall(r"[-\u2212]?\d+\.\d+", text))
    print(f"screenshots in {ARTIFACTS}: mlflow_experiment_runs.png, mlflow_experiment_charts.png, mlflow_compare_runs.png")
    assert (ARTIFACTS / "mlflow_compare_runs.png").stat().st_size > 10_000


def _text(html: str) -> str:
    html = re.sub(r"<script.*?</script>|<style.*?</style>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())
