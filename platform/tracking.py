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
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
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
        RunLogger(self.uri, run_id).log(metrics, step)

    def log_artifact(self, run_id: str, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)


class RunLogger:
    """Buffered metric writer for one run: a failed write keeps its metrics and retries on the next
    call, so a tracker that is briefly down loses nothing; `flush()` at the end retries with backoff."""

    def __init__(self, uri: str, run_id: str, retries: int = 5):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        self.run_id = run_id
        self.retries = retries
        self.pending: list = []

    def log(self, metrics: Mapping[str, Any], step: int) -> bool:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(k, v, now, step) for k, v in finite_metrics(metrics).items()]
        return self._try_send()

    def _try_send(self) -> bool:
        try:
            while self.pending:
                chunk = self.pending[:500]
                self.client.log_batch(self.run_id, metrics=chunk)
                del self.pending[: len(chunk)]
            return True
        except Exception as err:  # any transport error: keep the buffer, training goes on
            log.warning("MLflow write failed (%s); %d metric values buffered for retry", err, len(self.pending))
            return False

    def flush(self, backoff_s: float = 1.0) -> bool:
        for attempt in range(self.retries):
            if self._try_send():
                return True
            time.sleep(backoff_s * 2**attempt)
        return not self.pending
