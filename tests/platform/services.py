"""Real local servers for tests: an `mlflow server` (sqlite backend, served artifacts) and an S3-compatible
`moto` server, each on a free localhost port, started as subprocesses and stopped by their pid."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from curricula import two_phases

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer in {timeout}s: {log.read_text()[-3000:]}")


@contextmanager
def _server(cmd: list[str], health: str, log: Path, env: dict | None = None, timeout: float = 120) -> Iterator[None]:
    with open(log, "a") as out:  # a restarted server appends to its log
        # own session: stopping it (SIGTERM, then SIGKILL) reaches its worker processes, nothing else
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_http(health, proc, log, timeout)
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(10)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue


class MlflowServer:
    """`mlflow server` as docs/cluster.md documents it, on one localhost port for its life: `stop()` then
    `start()` serve the same store again at the same URI (a tracker that goes away and comes back)."""

    def __init__(self, workdir: Path):
        self.workdir, self.port = workdir, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        (workdir / "artifacts").mkdir(parents=True, exist_ok=True)
        self._running = None

    def start(self) -> None:
        cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
               "--artifacts-destination", str(self.workdir / "artifacts"), "--serve-artifacts",
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
               "--allowed-hosts", f"127.0.0.1:{self.port},localhost:{self.port}"]
        self._running = _server(cmd, f"{self.uri}/health", self.workdir / "mlflow_server.log", timeout=180)
        self._running.__enter__()

    def stop(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            running.__exit__(None, None, None)


@contextmanager
def mlflow_server(workdir: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true"}


@contextmanager
def s3_server(workdir: Path, bucket: str) -> Iterator[dict[str, str]]:
    """A moto S3 server with `bucket` created; yields the environment that points clients at it
    (AWS_ENDPOINT_URL is honoured by pyarrow's S3FileSystem, boto3 and Ray Train)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with _server(cmd, f"{endpoint}/moto-api/", workdir / "moto.log", timeout=60):
        env = {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}
        import boto3

        boto3.client("s3", endpoint_url=endpoint, **_creds()).create_bucket(Bucket=bucket)
        yield env


def _creds() -> dict[str, str]:
    return {"aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
            "region_name": S3_ENV["AWS_DEFAULT_REGION"]}


def s3_keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, **_creds())
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


#: Two --smoke-sized phases: what these tests check (storage, tracking server) is the same for each of
#: the five phases.
TWO_PHASES = two_phases()
TWO_PHASE_NAMES = ["modality", "anatomy"]
#: Where conftest.py's `cloud_run` keeps its checkpoints and its MLflow runs.
BUCKET = "radisim-test"
EXPERIMENT = "cloud-smoke"


def start_smoke_train(cwd: Path, env: dict[str, str], *sets: str) -> subprocess.Popen:
    """`python -m radisim.jobs.train --smoke` in `cwd` with extra environment and `--set` overrides,
    its output in cwd/train.log."""
    args = [sys.executable, "-m", "radisim.jobs.train", "--smoke"]
    for s in sets:
        args += ["--set", s]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    full_env.pop("RAY_ADDRESS", None)
    with open(cwd / "train.log", "w") as log:
        return subprocess.Popen(args, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1800,1400"]


def render(url: str, profile: Path, screenshot: Path | None = None, budget_ms: int = 20000) -> str:
    """The DOM of `url` after the page's scripts ran for `budget_ms` of virtual time (headless Chromium);
    with `screenshot`, a PNG of the page too."""
    exe = chromium()
    assert exe, "chromium is not installed: `make test` installs it (scripts/ensure-chromium.sh)"
    common = [exe, *CHROMIUM_FLAGS, f"--virtual-time-budget={budget_ms}"]
    dom = subprocess.run([*common, f"--user-data-dir={profile}-dom", "--dump-dom", url],
                         capture_output=True, text=True, timeout=180)
    if screenshot is not None:
        subprocess.run([*common, f"--user-data-dir={profile}-png", f"--screenshot={screenshot}", url],
                       capture_output=True, text=True, timeout=180)
    return dom.stdout
