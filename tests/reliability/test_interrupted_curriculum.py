"""The driver dies between phases: re-running the same command resumes at the next phase, does not
retrain finished phases, and MLflow keeps one run tree. (The scenario itself is the session fixture
`driver_killed_then_rerun` in conftest.py, which the killed-worker test also uses as its reference.)"""
from __future__ import annotations

import pytest

from helpers import history, phase_runs


@pytest.mark.slow
def test_rerun_resumes_after_the_finished_phase(driver_killed_then_rerun):
    client, before = driver_killed_then_rerun["client"], driver_killed_then_rerun["before"]
    again, third = driver_killed_then_rerun["again"], driver_killed_then_rerun["third"]
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    assert "resuming run" in again.stdout
    exp = client.get_experiment_by_name("resume")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "phase" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    after = phase_runs(client, "resume")
    assert len([r for r in runs if "phase" in r.data.tags]) == 2
    assert after["modality"].info.run_id == before["modality"].info.run_id
    # not retrained: the rerun logged nothing more to phase 1
    assert history(client, after["modality"].info.run_id, "train/loss") == driver_killed_then_rerun["p1_losses"]
    assert after["anatomy"].info.run_id == before["anatomy"].info.run_id  # same child run continued
    assert all(r.info.status == "FINISHED" for r in after.values())
    for s in range(1, 6):
        assert f"stage{s}/score" in parents[0].data.metrics
        # the rerun measured the resumed phase's gain against the untrained model evaluated before the kill
        assert f"stage{s}/gain" in after["anatomy"].data.metrics
    # a third run of the same command retrains nothing
    assert third.returncode == 0 and "nothing is retrained" in third.stdout
