"""CPU-seconds as the benchmarks' common currency: on a shared machine wall time measures the neighbours,
CPU time measures the work. Three clocks:

- `ThreadClock` / `ProcessClock`: the calling thread's / process's CPU time (`time.thread_time`,
  `time.process_time`), for a loop that can time itself;
- `tree_cpu_seconds`: a process and all its descendants (a DataLoader's workers, a local Ray's raylet,
  GCS and workers), for a pipeline whose work is spread over processes;
- `ProcessSampler`: another process's per-thread CPU time sampled every `every_s` from a helper
  thread (a Ray Train worker the benchmark cannot instrument), read back at any wall-clock instant by
  linear interpolation.

`like_for_like` is the check every ratio of two loops passes before it is printed as a ratio.
"""
from __future__ import annotations

import bisect
import os
import threading
import time
from dataclasses import dataclass, field

import psutil

#: Two loops doing the same work spend the same training-thread CPU per sample, within this.
LIKE_FOR_LIKE_TOLERANCE = 0.05


def like_for_like(cpu_per_sample_a: float, cpu_per_sample_b: float, tol: float = LIKE_FOR_LIKE_TOLERANCE) -> bool:
    """True when the two sides' CPU seconds per sample differ by at most `tol` (relative to the smaller):
    then a throughput ratio compares the loops' overheads, not different computations."""
    lo, hi = sorted((cpu_per_sample_a, cpu_per_sample_b))
    return lo > 0 and hi / lo - 1.0 <= tol


def tree_cpu_seconds(pid: int | None = None) -> float:
    """user + system CPU seconds of process `pid` (default: this one) and every live descendant.
    Processes that already exited are not counted: measure while the workers are alive."""
    root = psutil.Process(pid or os.getpid())
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


#: Ray processes that run no user task: per-node services, whatever the throughput.
_RAY_SERVICES = ("DashboardAgent", "RuntimeEnvAgent", "_StatsActor", "Coordinator", "raylet", "gcs_server",
                 "dashboard", "log_monitor", "monitor.py", "ray_client_server")


def process_role(proc: psutil.Process, root_pid: int) -> str:
    """"driver" (the root), "services" (Ray's per-node daemons and actors that run no user work) or
    "workers" (processes that run the pipeline's tasks: DataLoader workers, Ray task workers)."""
    if proc.pid == root_pid:
        return "driver"
    cmd = " ".join(proc.cmdline())
    return "services" if any(name in cmd for name in _RAY_SERVICES) else "workers"


def tree_cpu_by_role(pid: int | None = None) -> dict[int, tuple[str, float]]:
    """pid -> (role, user + system CPU seconds) for a process and its live descendants: diff two of
    these with `role_deltas` to see who spent the CPU between them."""
    root = psutil.Process(pid or os.getpid())
    out = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            out[proc.pid] = (process_role(proc, root.pid), t.user + t.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def role_deltas(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per role between two `tree_cpu_by_role` snapshots (a process born in between counts
    from 0; one that died in between is lost, so keep the workers alive until the second snapshot)."""
    out = {"driver": 0.0, "workers": 0.0, "services": 0.0}
    for pid, (role, cpu) in after.items():
        out[role] += cpu - before.get(pid, (role, 0.0))[1]
    return out


def find_process(needle: str, root: int | None = None) -> psutil.Process | None:
    """The first descendant of `root` (default: this process) whose command line contains `needle`
    (Ray actors set their process title to `ray::<ActorClass>`)."""
    for proc in psutil.Process(root or os.getpid()).children(recursive=True):
        try:
            if needle in " ".join(proc.cmdline()):
                return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return None


@dataclass
class Sample:
    t: float                       # time.time() of the sample (comparable with MLflow timestamps / 1000)
    process: float                 # the process's user + system CPU seconds
    threads: dict[int, float]      # thread id -> user + system CPU seconds


@dataclass
class ProcessSampler:
    """Samples the CPU time of the first descendant process whose command line contains `needle`,
    every `every_s`, until stopped. Use as a context manager around the work."""

    needle: str
    every_s: float = 0.1
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cpu-sampler")

    def _run(self):
        proc = None
        while not self._stop.is_set():
            try:
                proc = proc if proc is not None and proc.is_running() else find_process(self.needle)
                if proc is not None:
                    t = proc.cpu_times()
                    threads = {th.id: th.user_time + th.system_time for th in proc.threads()}
                    self.samples.append(Sample(time.time(), t.user + t.system, threads))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                proc = None
            self._stop.wait(self.every_s)

    def __enter__(self) -> "ProcessSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _at(self, t: float, get) -> float:
        """`get(sample)` linearly interpolated at wall-clock time `t` (clamped to the sampled span)."""
        times = [s.t for s in self.samples]
        if not times:
            raise ValueError(f"no CPU samples of a process matching {self.needle!r}")
        i = bisect.bisect_left(times, t)
        if i == 0:
            return get(self.samples[0])
        if i == len(times):
            return get(self.samples[-1])
        a, b = self.samples[i - 1], self.samples[i]
        w = (t - a.t) / max(b.t - a.t, 1e-9)
        return get(a) + w * (get(b) - get(a))

    def between(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds spent from `t0` to `t1`: `process` (all threads) and `busiest_thread` (the thread
        that used most: with 1 torch thread, the training thread)."""
        tids = set().union(*(s.threads for s in self.samples)) if self.samples else set()
        per_thread = {tid: self._at(t1, lambda s: s.threads.get(tid, 0.0)) - self._at(t0, lambda s: s.threads.get(tid, 0.0))
                      for tid in tids}
        return {"process": self._at(t1, lambda s: s.process) - self._at(t0, lambda s: s.process),
                "busiest_thread": max(per_thread.values(), default=0.0),
                "wall": t1 - t0}
