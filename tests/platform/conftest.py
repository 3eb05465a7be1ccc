"""Servers shared by the storage and tracking-server tests, and the one curriculum run they inspect."""
from __future__ import annotations

import pytest

from services import BUCKET, EXPERIMENT, TWO_PHASES, mlflow_server, run_smoke_train, s3_server


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A moto S3 server with BUCKET: the environment that points clients at it."""
    with s3_server(tmp_path_factory.mktemp("s3"), BUCKET) as env:
        yield env


@pytest.fixture(scope="session")
def cloud_run(s3, tmp_path_factory):
    """`train --smoke` (two phases) set up the way a cluster runs it: Ray Train checkpoints on S3-compatible
    storage, metrics and artifacts on a remote `mlflow server`. One run for both kinds of test, since
    each phase fit costs ~25 s of Ray Train start-up on 2 cores."""
    work = tmp_path_factory.mktemp("cloud-run")
    with mlflow_server(work / "server") as uri:
        proc = run_smoke_train(work, {**s3, "MLFLOW_TRACKING_URI": uri}, "train.num_workers=1", TWO_PHASES,
                               f"train.storage_path=s3://{BUCKET}/ray", f"tracking.experiment={EXPERIMENT}")
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        yield {"uri": uri, "work": work, "out": proc.stdout, "s3_env": s3}
