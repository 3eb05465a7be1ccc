import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the shared helpers module

from helpers import history, phase_runs, run_train, start_train, wait_for  # noqa: E402


@pytest.fixture(scope="session")
def driver_killed_then_rerun(tmp_path_factory):
    """The `SMALL` job with its driver killed once phase 1 has finished, then the same command run twice
    more. Each phase of the finished run trained uninterrupted from the checkpoint before it, so the run
    is also the uninterrupted reference that the killed-worker test compares with: one run of the job
    (~45 s per phase fit on 2 cores) serves both tests."""
    from mlflow.tracking import MlflowClient

    cwd = tmp_path_factory.mktemp("driver-killed")
    uri = f"sqlite:///{cwd / 'm.db'}"
    client = MlflowClient(uri)
    job = start_train(cwd, uri, ["--set", "tracking.experiment=resume"])
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
    again = run_train(cwd, uri, ["--set", "tracking.experiment=resume"])
    third = run_train(cwd, uri, ["--set", "tracking.experiment=resume"])
    return {"client": client, "before": before, "p1_losses": p1_losses, "again": again, "third": third}
