"""`ray job submit --working-dir <repo> -- python -m radisim.jobs.train --smoke` against a real local
head with token auth: the job succeeds, its MLflow run tree lands where the runtime env said, the
working-dir upload stays small (.gitignore + .rayignore), and the driver — started at the uploaded
repo root, which is first on sys.path — still imports the standard library's `platform`."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from curricula import one_phase
from raycluster import start_head

ROOT = Path(__file__).resolve().parents[2]
#: One phase: the submission path is what is under test; the five-phase run tree is test_train_smoke's
#: (and each phase fit costs ~25 s of Ray Train start-up).
ONE_PHASE = one_phase()
PHASES = ["modality"]
MAX_UPLOAD_MIB = 5.0  # the code and configs are well under 1 MiB; .venv or .git would blow this


@pytest.fixture(scope="module")
def head():
    h = start_head(num_cpus=4)
    yield h
    h.stop()


@pytest.fixture(scope="module")
def submitted(head, tmp_path_factory):
    work = tmp_path_factory.mktemp("submit")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    job_id = f"radisim-smoke-{uuid.uuid4().hex[:8]}"
    # A tiny job first, in the same uploaded working dir (same package) before the train job writes
    # into it: what `import platform` gives a driver started there, and what was uploaded.
    probe = ("import os, platform; from pathlib import Path; print('PLATFORM_FILE', platform.__file__); "
             "print('PLATFORM_SYSTEM', platform.system()); print('CWD', os.getcwd()); "
             "files = [p for p in Path('.').rglob('*') if p.is_file()]; "
             "print('UPLOAD', len(files), sum(p.stat().st_size for p in files)); "
             "print('TOP', sorted({p.parts[0] for p in files}))")
    probed = head.submit("--working-dir", str(ROOT), "--", "python", "-c", probe, timeout=300)
    runtime_env = json.dumps({"env_vars": {"MLFLOW_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}})
    # Exactly what a user types; the entrypoint after `--` is the job's command line.
    proc = head.submit("--submission-id", job_id, "--working-dir", str(ROOT), "--runtime-env-json", runtime_env,
                       "--", "python", "-m", "radisim.jobs.train", "--smoke", "--set", "train.num_workers=1",
                       "--set", "tracking.experiment=submitted", "--set", ONE_PHASE)
    out = proc.stdout + proc.stderr
    status = head.run("job", "status", job_id, timeout=60)
    return {"out": out, "probe": probed.stdout + probed.stderr, "rc": proc.returncode,
            "status": status.stdout + status.stderr, "uri": uri, "job_id": job_id}


@pytest.mark.slow
def test_job_succeeds(submitted):
    assert re.search(r"succeeded", submitted["status"], re.I), submitted["out"][-5000:]
    assert submitted["rc"] == 0


@pytest.mark.slow
def test_upload_is_small_and_excludes_local_state(submitted):
    n_files, n_bytes = map(int, re.search(r"^UPLOAD (\d+) (\d+)$", submitted["probe"], re.M).groups())
    top = re.search(r"^TOP (.+)$", submitted["probe"], re.M).group(1)
    print(f"working-dir upload: {n_files} files, {n_bytes / 2**20:.2f} MiB; top level: {top}")
    assert n_bytes < MAX_UPLOAD_MIB * 2**20
    for local_state in (".venv", ".git", "radisim_work", "mlflow.db", "build", ".pytest_cache"):
        assert f"'{local_state}'" not in top, local_state
    assert "'platform'" in top and "'jobs'" in top
    cwd = re.search(r"^CWD (.+)$", submitted["probe"], re.M).group(1)
    assert "_ray_pkg_" in cwd  # the driver ran in the uploaded copy, not in the repo


@pytest.mark.slow
def test_driver_at_repo_root_imports_stdlib_platform(submitted):
    platform_file = re.search(r"^PLATFORM_FILE (.+)$", submitted["probe"], re.M).group(1)
    assert "_ray_pkg_" not in platform_file and Path(platform_file).name == "platform.py"
    assert Path(platform_file).parent == Path(sys.base_prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}")
    assert re.search(r"^PLATFORM_SYSTEM Linux$", submitted["probe"], re.M)


@pytest.mark.slow
def test_mlflow_run_tree_from_runtime_env(submitted):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(submitted["uri"])
    exp = client.get_experiment_by_name("submitted")
    assert exp is not None, submitted["out"][-3000:]
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.tags["phase"] for r in children) == sorted(PHASES)
    for stage in range(1, 6):
        assert math.isfinite(parents[0].data.metrics[f"stage{stage}/score"])
    assert parents[0].data.params["train.num_workers"] == "1"


@pytest.mark.slow
def test_submit_without_token_is_refused(head):
    env = {**head.env, "RAY_AUTH_TOKEN": "0" * 64}
    proc = subprocess.run([str(Path(sys.executable).parent / "ray"), "job", "list"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0


@pytest.mark.slow
def test_wheel_code_via_py_modules(head, built_wheel, tmp_path):
    """The way docs/cluster.md ships code without installing it on the nodes: the built wheel, unpacked,
    as a py_modules directory (a .whl in py_modules would be `pip install --target`ed with all its
    dependencies: torch and Ray again). The driver imports radisim from the shipped copy."""
    zipfile.ZipFile(built_wheel).extractall(tmp_path / "unpacked")
    runtime_env = json.dumps({"py_modules": [str(tmp_path / "unpacked" / "radisim")]})
    code = ("import platform, radisim.jobs.train as t, radisim.platform.models as m; print('TRAIN', t.__file__); "
            "print('CONFIGS', len(m.available_models())); print('PLATFORM', platform.__file__)")
    proc = head.submit("--runtime-env-json", runtime_env, "--", "python", "-c", code, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    train_file = re.search(r"^TRAIN (.+)$", out, re.M).group(1)
    assert str(ROOT) not in train_file and "py_modules_files" in train_file, train_file
    assert int(re.search(r"^CONFIGS (\d+)$", out, re.M).group(1)) >= 2  # package data came along
    assert Path(re.search(r"^PLATFORM (.+)$", out, re.M).group(1)).name == "platform.py"
