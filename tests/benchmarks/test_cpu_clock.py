"""benchmarks/cpu_clock.py: the CPU-seconds clocks and the like-for-like check, on real processes."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import cpu_clock  # noqa: E402


def test_like_for_like_is_a_relative_tolerance_either_way():
    assert cpu_clock.like_for_like(0.60, 0.62) and cpu_clock.like_for_like(0.62, 0.60)
    assert not cpu_clock.like_for_like(0.60, 0.70)  # 17% more CPU per sample: different work
    assert not cpu_clock.like_for_like(0.0, 0.0)


def _busy_child(seconds: float) -> subprocess.Popen:
    code = f"import time\nt = time.process_time()\nwhile time.process_time() - t < {seconds}: pass\ntime.sleep(30)"
    return subprocess.Popen([sys.executable, "-c", code, "cpu-clock-test-marker"])


def test_sampler_and_tree_clock_see_a_child_burn_its_cpu():
    before = cpu_clock.tree_cpu_by_role()
    child = _busy_child(0.4)
    try:
        with cpu_clock.ProcessSampler("cpu-clock-test-marker", every_s=0.02) as sampler:
            deadline = time.time() + 60
            while time.time() < deadline and (not sampler.samples or sampler.samples[-1].process < 0.4):
                time.sleep(0.05)
        after = cpu_clock.tree_cpu_by_role()
        cpu = sampler.between(sampler.samples[0].t - 1.0, sampler.samples[-1].t)
        assert 0.35 < cpu["process"] < 0.6 and 0.35 < cpu["busiest_thread"] <= cpu["process"] + 1e-6
        roles = cpu_clock.role_deltas(before, after)
        assert roles["workers"] >= 0.35 and after[child.pid][0] == "workers"
        assert cpu_clock.tree_cpu_seconds() >= roles["workers"]
    finally:
        child.kill()
        child.wait()


def test_sampler_interpolates_between_samples():
    s = cpu_clock.ProcessSampler("unused")
    s.samples = [cpu_clock.Sample(10.0, 1.0, {1: 1.0}), cpu_clock.Sample(12.0, 3.0, {1: 2.0, 2: 1.0})]
    cpu = s.between(11.0, 12.0)
    assert cpu == {"process": 1.0, "busiest_thread": 0.5, "wall": 1.0}
