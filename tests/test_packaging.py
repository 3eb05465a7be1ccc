"""The layout contract: one import name `radisim` over four top-level folders that never shadow the
standard library's `platform`, and a wheel that carries every module and data file of those folders."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"platform": "radisim/platform", "jobs": "radisim/jobs", "curriculum": "radisim/curriculum", "evals": "radisim/evals"}
DATA_SUFFIXES = {".json", ".yaml"}


def _run(code: str, **kw) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, **kw)
    return out.stdout.strip()


def test_top_level_folders_are_not_packages():
    for folder in FOLDERS:
        assert not (ROOT / folder / "__init__.py").exists(), f"{folder}/__init__.py would shadow or hijack imports"


@pytest.mark.parametrize("how", ["cwd", "pythonpath"])
def test_stdlib_platform_wins_from_repo_root(how):
    # ray job submit --working-dir . puts the repo root first on sys.path; both ways must keep the stdlib.
    env = None
    if how == "pythonpath":
        import os

        env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = "import platform, sys; print(platform.__file__); print(platform.system()); import radisim.platform.config"
    out = _run(code, cwd=ROOT, env=env).splitlines()
    assert Path(out[0]).parent == Path(sys.base_prefix, "lib", f"python{sys.version_info.major}.{sys.version_info.minor}") \
        or "site-packages" not in out[0] and str(ROOT) not in out[0]
    assert out[1] == "Linux" or out[1] in {"Darwin", "Windows"}


def test_torch_and_ray_import_from_repo_root():
    out = _run("import torch, ray, ray.train, radisim.platform.models as m; print(torch.__version__, ray.__version__)", cwd=ROOT)
    assert out.split()[0].startswith("2.")


def _tree_files() -> set[str]:
    expected = set()
    for folder, pkg in FOLDERS.items():
        for path in (ROOT / folder).rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            if path.suffix == ".py" or path.suffix in DATA_SUFFIXES:
                expected.add(f"{pkg}/{path.relative_to(ROOT / folder).as_posix()}")
    return expected


@pytest.mark.slow
def test_wheel_contains_every_module(built_wheel):
    names = set(zipfile.ZipFile(built_wheel).namelist())
    missing = sorted(_tree_files() - names)
    assert not missing, f"the wheel drops {missing}: add the sub-package/package-data to pyproject.toml"
    assert not any(n.startswith("platform/") for n in names), "the wheel must not install a top-level `platform`"
    assert any(n.endswith("entry_points.txt") for n in names)
