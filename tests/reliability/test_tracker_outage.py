"""The MLflow server goes away mid-run and comes back: training carries on and no metric is lost.
A server that is unreachable at start is a clear error before any Ray resource starts."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from curricula import one_phase
from helpers import history, phase_runs, run_train, start_train, wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(tmp_path, port) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
                            stdout=open(tmp_path / "server.log", "a"), stderr=subprocess.STDOUT, start_new_session=True)

    def healthy():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200
        except OSError:
            return False
    wait_for(healthy, 120, 1.0, "the MLflow server")
    return proc


def _stop(proc: subprocess.Popen) -> None:
    import os
    import signal

    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_unreachable_tracker_fails_before_ray_starts(tmp_path):
    uri = f"http://127.0.0.1:{_free_port()}"
    proc = run_train(tmp_path, uri, timeout=300)
    assert proc.returncode == 2
    assert f"MLflow tracking server {uri} is unreachable" in proc.stderr
    assert "Started a local Ray instance" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_outage_mid_run_loses_no_metric(tmp_path):
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _start_server(tmp_path, port)
    job = None
    try:
        client = MlflowClient(uri)
        # One phase is enough: the outage starts at its first logged step, so the rest of its steps (and,
        # unless the server is back by then, its evaluation) go to a dead tracker; a second phase would
        # add one more Ray Train fit and nothing an outage could lose.
        job = start_train(tmp_path, uri, ["--set", one_phase(steps=8), "--set", "tracking.experiment=outage"])

        def training_phase_one():
            runs = phase_runs(client, "outage")
            return "modality" in runs and history(client, runs["modality"].info.run_id, "train/step")
        wait_for(training_phase_one, 900, 1.0, "phase 1 to log its first step")
        _stop(server)
        time.sleep(8)  # training goes on against a dead tracker
        assert job.poll() is None, "the job died with the tracker"
        server = _start_server(tmp_path, port)
        assert job.wait(timeout=900) == 0, (tmp_path / "train.log").read_text()[-4000:]
        runs = phase_runs(client, "outage")
        steps = {s for s, _ in history(client, runs["modality"].info.run_id, "train/step")}
        assert steps == set(range(1, 9)), sorted(steps)
        assert runs["modality"].info.status == "FINISHED"
        exp = client.get_experiment_by_name("outage")
        (parent,) = [r for r in client.search_runs([exp.experiment_id]) if "phase" not in r.data.tags]
        assert parent.info.status == "FINISHED"
        assert all(f"stage{s}/score" in parent.data.metrics for s in range(1, 6))
    finally:
        if job is not None and job.poll() is None:
            _stop(job)
        _stop(server)
