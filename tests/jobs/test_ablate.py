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
    assert {"ablation/trials.csv", "ablation/arm_summary.csv", "ablation/arm_stage_scores.png", "ablation/arm_radar.png",
            "ablation/verdict.txt", "ablation/report.md", "ablation/report.html"} <= artifacts
    assert "resuming sweep" in resumed.stdout and "per-stage test score" in resumed.stdout
    # one seed: the numbers, and no verdict
    assert "no verdict: n seeds 1 < 3" in resumed.stdout
    for r in finished:  # scored on the held-out test split as well as on validation
        assert all(math.isfinite(r.data.metrics[f"test/stage{s}/score"]) for s in range(1, 6))


def test_sweep_settings_are_checked_before_ray():
    from radisim.jobs import ablate
    from radisim.platform.config import load_job_config

    # a verdict sweep (grid) completes every cell: no early stopping unless asked; Optuna's tuning stage has it
    assert not load_job_config().ablate.early_stopping
    assert load_job_config(overrides=["ablate.search=optuna"]).ablate.early_stopping
    ablate.check_sweep_config(load_job_config(overrides=["eval.after_each_phase=false"]))
    with pytest.raises(SystemExit, match="eval.after_each_phase"):
        ablate.check_sweep_config(load_job_config(overrides=["eval.after_each_phase=false", "ablate.asha=true"]))
    # the bundled spec was tuned on seeds 0-2: a verdict on them is refused unless allowed
    with pytest.raises(SystemExit, match="tuning_seeds"):
        ablate.check_sweep_config(load_job_config(overrides=["ablate.seeds=[1, 5, 6]"]))
    ablate.check_sweep_config(load_job_config(overrides=["ablate.seeds=[1, 5, 6]", "ablate.allow_tuning_seeds=true"]))
    with pytest.raises(SystemExit, match="fresh seeds"):
        ablate.check_sweep_config(load_job_config(overrides=["ablate.search=optuna", "ablate.tuning_seed=10"]))
    with pytest.raises(SystemExit, match="reference"):
        ablate.check_sweep_config(load_job_config(overrides=["ablate.orderings=[shuffled, anti_curriculum]"]))
    from radisim.jobs.common import SMOKE_BASE, SMOKE_SETS

    smoke = load_job_config(overrides=SMOKE_SETS + ablate.SMOKE_SETS, base=SMOKE_BASE)
    assert not smoke.ablate.early_stopping and not smoke.eval.after_each_phase and len(smoke.ablate.seeds) == 3
    ablate.check_sweep_config(smoke)


def test_optuna_space_holds_no_seed_and_no_arm_choice():
    from ray.tune.search.sample import Domain

    from radisim.platform.config import load_job_config
    from radisim.platform.tune import optuna_space, trial_knobs

    cfg = load_job_config(overrides=["ablate.search=optuna", "ablate.tuning_seed=3"])
    space = optuna_space(cfg, "anti_curriculum", "step")
    assert space["seed"] == 3 and space["arm_knobs"] == {"ordering": "anti_curriculum", "pacing": "step"}
    assert {k for k, v in space.items() if isinstance(v, Domain)} == {"lr_scale", "replay",
                                                                      *(f"phase_w{i}" for i in range(5))}
    assert "replay" not in optuna_space(cfg, "curriculum", "linear")  # a pace that ignores replay: not searched
    knobs = trial_knobs({"arm_knobs": {"ordering": "shuffled", "pacing": "step", "lr_scale": 2.0}, "seed": 11})
    assert knobs == {"ordering": "shuffled", "pacing": "step", "lr_scale": 2.0, "seed": 11}


@pytest.mark.slow
def test_optuna_searches_only_the_knobs_and_keeps_arm_and_seed_constant(tmp_path):
    """The real Tuner + OptunaSearch wiring, with a trainable that reports its config instead of training."""
    import ray

    from radisim.platform.config import load_job_config
    from radisim.platform.tune import build_tuner, optuna_space, trial_knobs

    def _echo_trial(config):  # nested: pickled by value into the trial process
        import ray.tune

        ray.tune.report({"score/mean": -abs(config["lr_scale"] - 1.0), "phase": 1, "seed_seen": config["seed"]})

    cfg = load_job_config(overrides=["ablate.search=optuna", "ablate.tuning_seed=4", "ablate.search_phase_fractions=false"])
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 1024**2)
    try:
        tuner = build_tuner(_echo_trial, optuna_space(cfg, "anti_curriculum", "step"), name="optuna-echo",
                            storage_path=str(tmp_path), metric="score/mean", max_t=1, max_concurrent_trials=1,
                            num_samples=3, search="optuna")
        results = list(tuner.fit())
    finally:
        ray.shutdown()
    assert len(results) == 3 and not any(r.error for r in results)
    for r in results:
        knobs = trial_knobs(r.config)
        assert knobs["ordering"] == "anti_curriculum" and knobs["seed"] == 4 == r.metrics["seed_seen"]
        assert cfg.ablate.lr_scale[0] <= knobs["lr_scale"] <= cfg.ablate.lr_scale[1]
        assert cfg.ablate.replay[0] <= knobs["replay"] <= cfg.ablate.replay[1]
    assert len({r.config["lr_scale"] for r in results}) == 3  # the searcher varied the knob, not the seed


def test_report_writes_the_paired_artifacts_from_finished_cells_only(tmp_path):
    """`report` on Tune-like results (3 arms x 5 seeds, one cell stopped, one failed; replicates on
    storage as the trials write them): the verdict covers the 3 complete seeds, with the paired table,
    the bootstrap intervals and every artifact in MLflow; over 2 seeds there is no verdict."""
    import csv as csv_mod
    from types import SimpleNamespace

    import numpy as np
    from mlflow.tracking import MlflowClient

    from radisim.jobs import ablate
    from radisim.platform import storage
    from radisim.platform.config import load_job_config
    from radisim.platform.tracking import Tracker
    from radisim.platform.tune import replicates_path

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = load_job_config(overrides=[f"train.storage_path={tmp_path / 'store'}", "ablate.name=rep",
                                     "ablate.orderings=[curriculum, anti_curriculum, shuffled]",
                                     "ablate.seeds=[10, 11, 12, 13, 14]", f"tracking.tracking_uri={uri}"])
    arms = ablate.arm_list(cfg)
    level = {"curriculum": 0.7, "anti_curriculum": 0.6, "shuffled": 0.69}
    rng = np.random.default_rng(0)

    def results(skip=()):
        out = []
        for arm in arms:
            for seed in cfg.ablate.seeds:
                tid = f"{arm['label']}-{seed}"
                if (arm["label"], seed) in skip:
                    out.append(SimpleNamespace(error=RuntimeError("x") if seed == 14 else None,
                                               metrics={"phase": 2}, config={}))
                    continue
                scores = {f"test/stage{s}/score": level[arm["label"]] + 0.01 * rng.standard_normal() for s in range(1, 6)}
                scores["test/score/mean"] = float(np.mean(list(scores.values())))
                metrics = {**scores, **{f"stage{s}/score": 0.5 for s in range(1, 6)}, "trial_id": tid, "phase": 5}
                reps = {f"stage{s}": (scores[f"test/stage{s}/score"] + 0.01 * rng.standard_normal(50)).tolist()
                        for s in range(1, 6)}
                reps["mean"] = np.mean([reps[f"stage{s}"] for s in range(1, 6)], axis=0).tolist()
                storage.write_json(replicates_path(cfg, "rep", tid), {"arm": arm["label"], "seed": seed, "replicates": reps})
                out.append(SimpleNamespace(error=None, metrics=metrics,
                                           config={"arm_knobs": {"ordering": arm["ordering"], "pacing": "step"}, "seed": seed}))
        return out

    tracker = Tracker("rep", uri)
    budget = {"budget/optimizer_steps": 440, "budget/samples": 28160}
    run = tracker.start_run("rep")
    rows, lines = ablate.report(cfg, tracker, run, results(skip={("shuffled", 13), ("anti_curriculum", 14)}), budget, arms)
    assert len(rows) == 13
    assert lines[0].startswith("verdict over 3 complete seed(s) x 3 arm(s) (9 trials); 1 trial(s) stopped early, 1 failed")
    assert any(line.startswith("stage1: curriculum beats anti_curriculum") for line in lines)
    client = MlflowClient(uri)
    with open(client.download_artifacts(run, "ablation/paired_differences.csv", str(tmp_path))) as f:
        table = list(csv_mod.DictReader(f))
    assert len(table) == 12 and {r["n_seeds"] for r in table} == {"3"}
    assert list(table[0]) == ["arm", "stage", "n_seeds", "mean_diff", "ci_low", "ci_high", "p_value", "p_holm",
                              "verdict", "boot_ci_low", "boot_ci_high"]
    assert all(r["boot_ci_low"] not in ("", "nan") for r in table)  # the hierarchical bootstrap ran
    names = {a.path for a in client.list_artifacts(run, "ablation")}
    assert {"ablation/forest_plot.png", "ablation/arm_radar.png", "ablation/report.md", "ablation/report.html",
            "ablation/verdict.txt", "ablation/trials.csv", "ablation/arm_summary.csv"} <= names
    data = client.get_run(run).data
    assert data.tags["best/mean"] in ("curriculum", "none separable")
    assert data.metrics["trials/stopped"] == 1 and data.metrics["trials/failed"] == 1
    md = open(client.download_artifacts(run, "ablation/report.md", str(tmp_path))).read()
    assert "## Design" in md and "| anti_curriculum | stage1 | 3 |" in md
    # two complete seeds only -> no verdict, numbers still printed
    run2 = tracker.start_run("rep2")
    cfg2 = cfg.model_copy(update={"ablate": cfg.ablate.model_copy(update={"seeds": [10, 11]})})
    _, lines2 = ablate.report(cfg2, tracker, run2, results(), budget, arms)
    assert lines2[-1] == "no verdict: n seeds 2 < 3"


def test_phantom_test_split_is_distinct_from_validation(tmp_path):
    import pyarrow.parquet as pq

    from radisim.curriculum.phantom import write_phantom_dataset
    from radisim.jobs import ablate
    from radisim.platform.config import load_job_config

    cfg = load_job_config(overrides=[f"data.root={tmp_path / 'data'}", "data.phantom.n_eval_images=12",
                                     "data.phantom.size=32"])
    write_phantom_dataset(tmp_path / "data", n_train_images=10, n_eval_images=12, size=32, progress=False,
                          cohort_fraction=cfg.data.phantom.cohort_fraction)
    ablate.ensure_test_split(cfg)
    val = pq.read_table(tmp_path / "data" / "eval")
    test = pq.read_table(tmp_path / "data" / "test" / "eval")
    assert test.num_rows == val.num_rows == 15  # 12 + 25% cohort cases
    assert test.schema.names == val.schema.names  # the eval adapter reads it as it reads validation
    assert not set(test.column("image").to_pylist()) & set(val.column("image").to_pylist())  # other cases
    stamp = (tmp_path / "data" / "test" / "data_card.json").stat().st_mtime_ns
    ablate.ensure_test_split(cfg)  # present and matching: not written again
    assert (tmp_path / "data" / "test" / "data_card.json").stat().st_mtime_ns == stamp
