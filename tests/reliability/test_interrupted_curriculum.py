"""The driver dies between phases: re-running the same command resumes at the next phase, does not
retrain finished phases, and MLflow keeps one run tree."""
from __future__ import annotations

import os
import signal

import pytest
from mlflow.tracking import MlflowClient

from helpers import history, phase_runs, run_train, start_train, wait_for


@pytest.mark.slow
def test_rerun_resumes_after_the_finished_phase(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    job = start_train(tmp_path, uri, ["--set", "tracking.experiment=resume"])
    try:
        def phase_one_done():
            runs = phase_runs(client, "resume")
            return "modality" in runs and runs["modality"].info.status == "FINISHED" and "anatomy" in runs
        wait_for(phase_one_done, 900, 1.0, "phase 1 to finish")
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # driver, its local Ray and the workers, at once
        job.wait()
    before = phase_runs(client, "resume")
    p1_losses = history(client, before["modality"].info.run_id, "train/loss")

    again = run_train(tmp_path, uri, ["--set", "tracking.experiment=resume"])
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    assert "resuming run" in again.stdout
    exp = client.get_experiment_by_name("resume")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "phase" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    after = phase_runs(client, "resume")
    assert len([r for r in runs if "phase" in r.data.tags]) == 2
    assert after["modality"].info.run_id == before["modality"].info.run_id
    assert history(client, after["modality"].info.run_id, "train/loss") == p1_losses  # not retrained
    assert after["anatomy"].info.run_id == before["anatomy"].info.run_id  # same child run continued
    assert all(r.info.status == "FINISHED" for r in after.values())
    for s in range(1, 6):
        assert f"stage{s}/score" in parents[0].data.metrics
    # a third run of the same command retrains nothing
    third = run_train(tmp_path, uri, ["--set", "tracking.experiment=resume"])
    assert third.returncode == 0 and "nothing is retrained" in third.stdout
