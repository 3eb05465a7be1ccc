"""MLflow tracking: the embedded local store, run trees (parent -> child per phase) and buffered logging.

All logging goes through `MlflowClient` with explicit run ids, never the fluent "active run", so the
driver and Train workers on other machines can write into the same run tree.
"""
from __future__ import annotations

import logging
import math
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LEN = 6000  # MLflow's limit on a param value


def tracking_uri(configured: str | None = None) -> str:
    """The configured URI, else $MLFLOW_TRACKING_URI, else the embedded store in the working directory."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def is_local_store(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri


def ui_command(uri: str) -> str:
    """What a user types to browse the runs."""
    if is_local_store(uri):
        artifacts = Path.cwd().resolve() / "mlartifacts"
        return f"mlflow ui --backend-store-uri {uri} --default-artifact-root {artifacts}"
    return f"open {uri} in a browser (MLflow server)"


def git_sha() -> str:
    """The commit of the running code (repo checkout), else of the working directory, else 'unknown'."""
    for where in (Path(__file__).resolve().parent, Path.cwd()):
        try:
            out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0:
            return out.stdout.strip()
    return "unknown"


def finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """MLflow stores floats; drop non-numeric values and refuse NaN/inf silently turning into records."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


class Tracker:
    """One experiment's run tree. Create in the driver; `RunLogger` writes from anywhere by run id."""

    def __init__(self, experiment: str, uri: str | None = None):
        import mlflow
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri(uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        mlflow.set_tracking_uri(self.uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            location = None
            if self.uri.startswith("sqlite:"):
                # A sqlite store's default artifact root is ./mlruns relative to whoever logs; pin it.
                location = (Path.cwd().resolve() / "mlartifacts").as_uri()
            # Open the experiment on MLflow's classic runs/compare pages, not the GenAI overview.
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=location, tags={"mlflow.experimentKind": "custom_model_development"})
        else:
            self.experiment_id = exp.experiment_id

    def start_run(self, name: str, parent_id: str | None = None, tags: Mapping[str, str] | None = None) -> str:
        all_tags = {**(tags or {}), "mlflow.source.git.commit": git_sha()}
        if parent_id:
            all_tags[PARENT_TAG] = parent_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int = 0) -> None:
        """Synchronous (the driver's few calls; MLflow's HTTP client retries them with backoff)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in finite_metrics(metrics).items()]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i : i + 500])

    def log_artifact(self, run_id: str, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def register_model(self, name: str, source: str, run_id: str, scores: Mapping[str, Any],
                       tags: Mapping[str, str] | None = None, description: str = "") -> str:
        """A new version of registered model `name` (created on first use) whose files are `source` (a
        checkpoint folder in open_clip's local-dir layout: local path or storage URI), linked to `run_id`,
        with `scores` (e.g. stage scores) as version tags. Returns the version number."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name, description=description or None)
        except MlflowException as err:
            if "already exists" not in str(err).lower() and "RESOURCE_ALREADY_EXISTS" not in str(err):
                raise
        version_tags = {**{k: f"{v:.6g}" for k, v in finite_metrics(scores).items()}, **(tags or {})}
        version = self.client.create_model_version(name, source=source, run_id=run_id, tags=version_tags,
                                                   description=description or None)
        return str(version.version)


class TrackerUnavailable(RuntimeError):
    pass


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, before any Ray resource starts, if an MLflow *server* does not answer. (MLflow's
    client would otherwise retry each call for minutes.) Local stores need no check."""
    import urllib.error
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as resp:
            if resp.status < 500:
                return
            problem = f"HTTP {resp.status}"
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):  # an auth-protected server is up; the client authenticates itself
            return
        problem = f"HTTP {err.code}"
    except (urllib.error.URLError, OSError) as err:
        problem = str(getattr(err, "reason", err))
    raise TrackerUnavailable(f"MLflow tracking server {uri} is unreachable ({problem}); start it, or unset "
                             f"MLFLOW_TRACKING_URI to use the local store in the working directory")


class RunLogger:
    """Metric writer for one run that never blocks or fails training: values go to a queue that a
    background thread sends; while the tracker is unreachable they stay queued and are retried with
    backoff, so a tracker outage loses nothing. `flush()` waits (bounded) until all are sent."""

    def __init__(self, uri: str, run_id: str, max_backoff_s: float = 30.0):
        import threading

        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        self.run_id = run_id
        self.max_backoff_s = max_backoff_s
        self.pending: list = []
        self.failures = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"mlflow-logger-{run_id[:8]}", daemon=True)
        self._thread.start()

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with self._lock:
            self.pending += [Metric(k, v, now, step) for k, v in finite_metrics(metrics).items()]
        self._wake.set()

    def _send_pending(self) -> bool:
        while True:
            with self._lock:
                chunk = self.pending[:500]
            if not chunk:
                return True
            try:
                self.client.log_batch(self.run_id, metrics=chunk)
            except Exception as err:  # any transport error: keep the values, training goes on
                self.failures += 1
                log.warning("MLflow write failed (%s); %d metric values queued for retry", err, len(self.pending))
                return False
            with self._lock:
                del self.pending[: len(chunk)]

    def _run(self) -> None:
        backoff = 0.5
        while True:
            self._wake.wait(timeout=backoff if self.pending else None)
            self._wake.clear()
            if self._send_pending():
                backoff = 0.5
                if self._closing:
                    return
            else:
                backoff = min(self.max_backoff_s, backoff * 2)

    def flush(self, timeout_s: float = 600.0) -> bool:
        """Send everything queued; True when nothing is left. Ends the background thread."""
        self._closing = True
        self._wake.set()
        self._thread.join(timeout_s)
        if self.pending:
            log.error("MLflow unreachable for %.0f s: %d metric values of run %s not sent",
                      timeout_s, len(self.pending), self.run_id)
        return not self.pending
