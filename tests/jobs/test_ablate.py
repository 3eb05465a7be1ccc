"""`radisim ablate` end to end: a real Tune sweep of real curricula, killed mid-sweep and resumed."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import pytest
from curricula import two_phases

ARMS = ["curriculum", "anti_curriculum"]


def _trial_runs(client, exp_id):
    runs = client.search_runs([exp_id], max_results=1000)
    return [r for r in runs if "trial_id" in r.data.tags and "phase" not in r.data.tags]


@pytest.mark.slow
def test_sweep_killed_then_resumed_runs_each_trial_once(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}
    # Two arms, one seed, over a two-phase curriculum: the mechanics of a full --smoke sweep (kill after
    # the first finished trial, resume the rest) in 4 of its 40 phase fits (README "Ablations" reports the
    # full one; tests/curriculum/test_ablation.py builds all four arms).
    cmd = [sys.executable, "-m", "radisim.jobs.ablate", "--smoke", "--set", "ablate.seeds=[0]",
           "--set", f"ablate.orderings=[{', '.join(ARMS)}]",
           "--set", two_phases(second="localization", steps=3, replay=None), "--set", "tracking.experiment=ablate-test"]
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = MlflowClient(uri)
    finished_before = {}
    deadline = time.time() + 900
    while time.time() < deadline and first.poll() is None:
        time.sleep(2)
        exp = client.get_experiment_by_name("ablate-test")
        if exp is None:
            continue
        finished_before = {r.data.tags["trial_id"]: r for r in _trial_runs(client, exp.experiment_id)
                           if r.info.status == "FINISHED"}
        if finished_before:
            break
    assert finished_before, (tmp_path / "first.log").read_text()[-3000:]
    os.killpg(first.pid, signal.SIGKILL)  # the sweep driver dies mid-sweep, like a lost head node
    first.wait()
    time.sleep(5)

    resumed = subprocess.run(cmd + ["--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-4000:]
    exp = client.get_experiment_by_name("ablate-test")
    trials = _trial_runs(client, exp.experiment_id)
    finished = [r for r in trials if r.info.status == "FINISHED"]
    assert {r.data.tags["ordering"] for r in finished} == set(ARMS)
    by_trial: dict[str, list] = {}
    for r in finished:
        by_trial.setdefault(r.data.tags["trial_id"], []).append(r)
    assert len(by_trial) == len(ARMS) and all(len(v) == 1 for v in by_trial.values()), "a trial has two finished runs"
    for trial_id, before in finished_before.items():  # finished trials were not run again
        after = by_trial[trial_id][0]
        assert after.info.run_id == before.info.run_id and after.info.end_time == before.info.end_time
    budgets = {(r.data.metrics["budget/optimizer_steps"], r.data.metrics["budget/samples"]) for r in finished}
    assert len(budgets) == 1
    for r in finished:
        assert all(math.isfinite(r.data.metrics[f"stage{s}/score"]) for s in range(1, 6))
        phases = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{r.info.run_id}'")
        assert len(phases) == 2 and all(p.info.status == "FINISHED" for p in phases)
    sweep = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("kind") == "sweep"]
    assert len(sweep) == 1 and sweep[0].info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(sweep[0].info.run_id, "ablation")}
    assert {"ablation/trials.csv", "ablation/arm_summary.csv", "ablation/arm_stage_scores.png",
            "ablation/verdict.txt"} <= artifacts
    assert "resuming sweep" in resumed.stdout and "per-stage score" in resumed.stdout


def test_asha_without_per_phase_scores_is_refused_before_ray(monkeypatch):
    from radisim.jobs import ablate
    from radisim.platform.config import load_job_config

    cfg = load_job_config(overrides=["eval.after_each_phase=false"])
    with pytest.raises(SystemExit, match="eval.after_each_phase"):
        ablate.check_sweep_config(cfg)
    ablate.check_sweep_config(load_job_config(overrides=["eval.after_each_phase=false", "ablate.asha=false"]))
    # the smoke sweep runs without ASHA and evaluates each trial once
    from radisim.jobs.common import SMOKE_BASE, SMOKE_SETS

    smoke = load_job_config(overrides=SMOKE_SETS + ablate.SMOKE_SETS, base=SMOKE_BASE)
    assert not smoke.ablate.asha and not smoke.eval.after_each_phase
    ablate.check_sweep_config(smoke)
