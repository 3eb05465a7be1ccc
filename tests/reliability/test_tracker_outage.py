"""A tracking server that is unreachable at start is a clear error before any Ray resource starts.
(One that goes away mid-run and comes back is tests/platform's `cloud_run`: no metric is lost.)"""
from __future__ import annotations

import socket

import pytest

from helpers import run_train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_unreachable_tracker_fails_before_ray_starts(tmp_path):
    uri = f"http://127.0.0.1:{_free_port()}"
    proc = run_train(tmp_path, uri, timeout=300)
    assert proc.returncode == 2
    assert f"MLflow tracking server {uri} is unreachable" in proc.stderr
    assert "Started a local Ray instance" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
