import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/curricula.py, shared by every test folder


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> Path:
    """The repo's wheel (`pip wheel --no-deps`, as `make wheel`), built once for the tests that ship it."""
    import subprocess

    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(Path(__file__).resolve().parents[1])], check=True, capture_output=True, timeout=600)
    return next(out.glob("radisim-*.whl"))


_exit_status = {}


def pytest_sessionfinish(session, exitstatus):
    _exit_status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the test process with the session's exit status once pytest is done, skipping the
    interpreter's own teardown. Several tests start and stop a Ray session inside this process, and
    Ray's native threads from an earlier session can crash that teardown (ray-project/ray#31145): on
    2026-11-30 the whole suite passed (242) and the process then died with SIGSEGV, failing `make test`."""
    if "ray" in sys.modules and "code" in _exit_status:
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status["code"])
