"""Connecting to Ray: a local Ray sized for a laptop, or the cluster named by RAY_ADDRESS / ray.address."""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator

from .config import RayConfig

log = logging.getLogger(__name__)

#: Environment of a local Ray's processes (a user's own environment wins), each setting one process
#: start or one page-fault storm fewer on a small machine (figures: docs/performance.md, "Local Ray settings"):
#: - RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=0: a laptop gets no preemption notices, and the watcher is one
#:   more process per phase fit.
#: - RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.5: the controller notices a finished worker group on its next
#:   poll (2 s by default), so every fit ends up to 2 s late.
#: - RAY_DATA_PARQUET_FOOTER_NUM_ACTORS=1: Ray Data lists a Parquet read's files through a pool of
#:   FooterReader actors (32 by default), each a process start; one actor reads a split's few footers
#:   on its own I/O threads.
#: - MALLOC_ENV: glibc returns every freed block over 128 KB to the kernel, so each training step maps
#:   and faults in its activations afresh; these keep blocks up to 32 MB in the heap, trim nothing below
#:   4 GB and grow the heap 256 MB at a time. The cost: a worker keeps its peak memory until it exits.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(4 * 2**30),
              "MALLOC_TOP_PAD_": str(256 * 2**20)}
LOCAL_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
             "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "1", **MALLOC_ENV}


#: Whether this process started the Ray it is connected to (`ray_session` with no address): that local
#: Ray ends with this process.
_owns_local_ray = False


def owns_local_ray() -> bool:
    return _owns_local_ray


def use_local_env() -> None:
    """`LOCAL_ENV` into this process's environment before a local `ray.init`: read in the driver, and
    inherited by the local Ray's workers (glibc reads the MALLOC_ settings when a process starts, so they
    reach the workers, not the driver that sets them). A value the user has set wins."""
    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)


def configure_data_context(deterministic: bool = True) -> None:
    """Ray Data's progress bars garble job logs and test output (the trainer reports progress itself);
    `deterministic` keeps the streaming executor's output order fixed, so a seed fixes the batches."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.execution_options.preserve_order = deterministic


@contextmanager
def ray_session(cfg: RayConfig, deterministic: bool = True) -> Iterator[None]:
    """ray.init for the job and ray.shutdown after it, unless the caller had already connected."""
    import ray

    global _owns_local_ray
    started = False
    if not ray.is_initialized():
        address = cfg.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            use_local_env()
            ray.init(
                # "local", not None: None joins the machine's latest `ray start` cluster (read from
                # /tmp/ray/ray_current_cluster, stale after a crash), where num_cpus is an error
                address="local",
                num_cpus=cfg.num_cpus,
                object_store_memory=cfg.object_store_mb * 2**20,
                include_dashboard=cfg.include_dashboard,
                # Workers of a local Ray inherit this environment; keep their logs readable.
                runtime_env={"env_vars": {"RAY_DATA_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}},
                log_to_driver=True,
            )
            _owns_local_ray = True
        started = True
    configure_data_context(deterministic)
    try:
        yield
    finally:
        if started:
            _owns_local_ray = False
            ray.shutdown()
