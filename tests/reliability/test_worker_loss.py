"""A Train worker killed mid-phase: the group restarts, resumes from the latest checkpoint, and the
run finishes with metrics that agree with an uninterrupted run of the same seed, which it matches
exactly, step for step, up to the kill."""
from __future__ import annotations

import math
import os
import signal

import pytest
from mlflow.tracking import MlflowClient

from helpers import history, phase_runs, start_train, train_workers, wait_for

CHECKPOINT_EVERY = 2
TOLERANCE = 0.15  # stage scores of an interrupted vs an uninterrupted run (data order differs after resume)


@pytest.fixture(scope="module")
def reference(driver_killed_then_rerun):
    """An uninterrupted run of the same job and seed: conftest.py's driver-killed run, each of whose phases
    trained without interruption from the checkpoint before it (its own test checks that it finished)."""
    again = driver_killed_then_rerun["again"]
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    client = driver_killed_then_rerun["client"]
    return client, phase_runs(client, "resume")


def _final_scores(client, runs) -> dict[str, float]:
    m = client.get_run(runs["anatomy"].info.run_id).data.metrics
    return {f"stage{s}": m[f"stage{s}/score"] for s in range(1, 6)}


@pytest.mark.slow
def test_killed_worker_resumes_from_checkpoint(tmp_path, reference):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    # A reported checkpoint is durable once Ray Train's controller has collected the report, which it
    # polls for every 2 s by default: poll often, so that lag is not mistaken for lost steps.
    job = start_train(tmp_path, uri, ["--set", "tracking.experiment=faults"],
                      env={"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1"})
    try:
        def mid_phase_two():
            runs = phase_runs(client, "faults")
            if "anatomy" in runs:
                steps = history(client, runs["anatomy"].info.run_id, "train/step")
                if steps and steps[-1][0] >= 5:
                    return steps[-1][0]
            return None

        kill_step = wait_for(mid_phase_two, 900, 0.5, "phase 2 to pass step 5")
        workers = wait_for(lambda: train_workers(job.pid), 30, 0.5, "the Train worker process")
        for w in workers:
            os.kill(w.pid, signal.SIGKILL)
        assert job.wait(timeout=900) == 0, (tmp_path / "train.log").read_text()[-4000:]
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    runs = phase_runs(client, "faults")
    assert all(r.info.status == "FINISHED" for r in runs.values())
    resumed = history(client, runs["anatomy"].info.run_id, "train/resumed_from_step")
    assert resumed, "phase 2 did not resume from a checkpoint"
    lost = kill_step - resumed[-1][1]
    assert 0 <= lost <= CHECKPOINT_EVERY, f"lost {lost} steps"
    steps = {s for s, _ in history(client, runs["anatomy"].info.run_id, "train/step")}
    assert steps == set(range(1, 9))  # every step logged, none missing after the restart
    ref_client, ref_runs = reference
    # the same seed reproduces the uninterrupted run exactly: phase 1, and phase 2 up to the checkpoint
    # it resumed from (after it, the restarted data stream draws its own order)
    ref_loss = {p: history(ref_client, ref_runs[p].info.run_id, "train/loss") for p in ("modality", "anatomy")}
    assert history(client, runs["modality"].info.run_id, "train/loss") == ref_loss["modality"]
    up_to = resumed[-1][1]
    assert [x for x in history(client, runs["anatomy"].info.run_id, "train/loss") if x[0] <= up_to] == \
        [x for x in ref_loss["anatomy"] if x[0] <= up_to]
    got, want = _final_scores(client, runs), _final_scores(ref_client, ref_runs)
    assert all(math.isfinite(v) for v in got.values())
    assert max(abs(got[k] - want[k]) for k in got) <= TOLERANCE, (got, want)
    print(f"\nworker killed at step {kill_step}, resumed at {resumed[-1][1]} (lost {lost} steps); "
          f"max stage-score delta vs uninterrupted: {max(abs(got[k] - want[k]) for k in got):.4f}")
