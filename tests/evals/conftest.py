"""Shared fixtures of the evaluation tests: a Ray session, a phantom eval split, a random tiny
checkpoint and one full suite run (reused by the suite and report tests)."""
from __future__ import annotations

import time

import numpy as np
import pytest

N_EVAL_IMAGES = 600  # the size the performance target is stated for


@pytest.fixture(scope="session")
def ray_session():
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=4, object_store_memory=200 * 2**20, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory):
    from radisim.curriculum.phantom import write_phantom_dataset

    root = tmp_path_factory.mktemp("phantom")
    write_phantom_dataset(root, n_train_images=0, n_eval_images=N_EVAL_IMAGES, seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    import torch

    from radisim.platform.models import load_clip, save_checkpoint

    torch.manual_seed(0)
    bundle = load_clip("radisim-tiny")
    return save_checkpoint(bundle.model, "radisim-tiny", tmp_path_factory.mktemp("ckpt") / "random-tiny")


@pytest.fixture(scope="session")
def suite_runs(ray_session, phantom_root, tiny_checkpoint, tmp_path_factory):
    """The whole 24-subtask suite twice: cold (embeddings computed) and warm (from the cache)."""
    from radisim.evals.suite import ModelRef, run_suite

    ref = ModelRef("radisim-tiny", checkpoint=str(tiny_checkpoint), label="tiny-random")
    cache = tmp_path_factory.mktemp("embedding-cache")
    runs, walls = [], []
    for _ in range(2):
        t = time.perf_counter()
        runs.append(run_suite(ref, data_root=phantom_root, cache_dir=cache, n_bootstrap=1000, seed=0))
        walls.append(time.perf_counter() - t)
    print(f"\n[evals] 24-subtask suite, radisim-tiny, {N_EVAL_IMAGES} phantom images, 1000 bootstrap: "
          f"cold {walls[0]:.1f} s {runs[0].timings}, cached {walls[1]:.1f} s {runs[1].timings}")
    return {"ref": ref, "cache": cache, "cold": runs[0], "warm": runs[1], "walls": walls, "data_root": phantom_root}


def finite(x) -> bool:
    return bool(np.all(np.isfinite(x)))


@pytest.fixture(scope="session")
def hf_models(tmp_path_factory):
    """{"clip": folder, "siglip": folder} of tiny random transformers models (hf_models.py)."""
    import hf_models as hf

    root = tmp_path_factory.mktemp("hf-models")
    return {kind: hf.build(root / kind, kind) for kind in ("clip", "siglip")}
