"""Shared pieces of the fault-injection tests: small real jobs in subprocesses, and how to find
the processes of *their* Ray cluster (never another one on the machine)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
from curricula import two_phases
from polling import wait_for  # noqa: F401  (the fault tests import it from here)

#: Two short phases: enough to cross a phase boundary, cheap enough to run several times.
TWO_PHASES = two_phases(steps=8)
SMALL = ["--smoke", "--set", TWO_PHASES, "--set", "train.log_every=1", "--set", "train.checkpoint_every=2",
         "--set", "eval.n_bootstrap=20"]


def job_env(uri: str) -> dict:
    return {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}


def start_train(cwd: Path, uri: str, extra: list[str] = (), log_name: str = "train.log",
                env: dict | None = None) -> subprocess.Popen:
    log = open(cwd / log_name, "w")
    return subprocess.Popen([sys.executable, "-m", "radisim.jobs.train", *SMALL, *extra], cwd=cwd,
                            env={**job_env(uri), **(env or {})},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def run_train(cwd: Path, uri: str, extra: list[str] = (), timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "radisim.jobs.train", *SMALL, *extra], cwd=cwd, env=job_env(uri),
                          capture_output=True, text=True, timeout=timeout)


def train_workers(driver_pid: int) -> list[psutil.Process]:
    """Ray Train worker processes started by this driver's own local Ray (descendants of it)."""
    try:
        children = psutil.Process(driver_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for p in children:
        try:
            if "RayTrainWorker" in " ".join(p.cmdline()) or p.name().startswith("ray::RayTrainWo"):
                out.append(p)
        except psutil.Error:
            continue
    return out


def phase_runs(client, experiment: str) -> dict[str, object]:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    return {r.data.tags["phase"]: r for r in client.search_runs([exp.experiment_id]) if "phase" in r.data.tags}


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
