"""Servers shared by the storage and tracking-server tests, and the one curriculum run they inspect."""
from __future__ import annotations

import os
import signal
import time

import pytest

from polling import wait_for
from services import BUCKET, EXPERIMENT, TWO_PHASES, mlflow_server, s3_server, start_smoke_train

#: How long the tracking server stays down in `cloud_run`, from the first step phase 1 logs.
OUTAGE_S = 8


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A moto S3 server with BUCKET: the environment that points clients at it."""
    with s3_server(tmp_path_factory.mktemp("s3"), BUCKET) as env:
        yield env


@pytest.fixture(scope="session")
def cloud_run(s3, tmp_path_factory):
    """`train --smoke` (two phases) set up the way a cluster runs it: Ray Train checkpoints on S3-compatible
    storage, metrics and artifacts on a remote `mlflow server`, which goes away for OUTAGE_S from the
    first step that phase 1 logs and comes back on the same port and store. One run for the storage,
    tracking-server and outage tests, since each phase fit costs ~25 s of Ray Train start-up on 2 cores."""
    from mlflow.tracking import MlflowClient

    work = tmp_path_factory.mktemp("cloud-run")
    with mlflow_server(work / "server") as server:
        job = start_smoke_train(work, {**s3, "MLFLOW_TRACKING_URI": server.uri}, "train.num_workers=1",
                                "train.log_every=1", TWO_PHASES, f"train.storage_path=s3://{BUCKET}/ray",
                                f"tracking.experiment={EXPERIMENT}")
        try:
            client = MlflowClient(server.uri)

            def phase_one_logged_a_step() -> bool:
                exp = client.get_experiment_by_name(EXPERIMENT)
                runs = exp and client.search_runs([exp.experiment_id], "tags.phase = 'modality'")
                return bool(runs) and bool(client.get_metric_history(runs[0].info.run_id, "train/step"))

            wait_for(phase_one_logged_a_step, 600, 0.5, "phase 1 to log its first step")
            server.stop()
            time.sleep(OUTAGE_S)  # the job goes on against a dead tracker
            alive_through_outage = job.poll() is None
            server.start()
            returncode = job.wait(timeout=900)
        finally:
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
        out = (work / "train.log").read_text()
        assert returncode == 0, out[-8000:]
        yield {"uri": server.uri, "work": work, "out": out, "s3_env": s3, "alive_through_outage": alive_through_outage}
