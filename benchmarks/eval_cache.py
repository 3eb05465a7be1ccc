"""The 24-subtask zero-shot suite on one checkpoint, cold (embeddings computed by Ray Data actors)
and again with the embedding cache warm. Needs a Ray session (the caller's)."""
from __future__ import annotations

import time
from pathlib import Path


def eval_cold_vs_cached(checkpoint: str, data_root: str, cache_dir: str, n_bootstrap: int,
                        model: str = "radisim-tiny") -> dict:
    from radisim.evals.suite import ModelRef, run_suite

    ref = ModelRef(model, checkpoint=checkpoint, label="bench")
    runs = {}
    for name in ("cold", "cached"):
        t0 = time.perf_counter()
        result = run_suite(ref, data_root=data_root, cache_dir=cache_dir, n_bootstrap=n_bootstrap, seed=0)
        runs[name] = {"wall_s": time.perf_counter() - t0, "timings": dict(result.timings),
                      "cache_hits": dict(result.cache_hits), "n_subtasks": len(result.subtasks)}
    if runs["cached"]["cache_hits"] and not all(runs["cached"]["cache_hits"].values()):
        raise RuntimeError(f"second suite run missed the cache: {runs['cached']['cache_hits']}")
    runs["speedup"] = runs["cold"]["wall_s"] / runs["cached"]["wall_s"]
    runs["embed_cold_s"] = runs["cold"]["timings"].get("embed_s")
    runs["embed_cached_s"] = runs["cached"]["timings"].get("embed_s")
    return runs


def write_eval_split(root: str | Path, n_images: int) -> None:
    from radisim.curriculum.phantom import write_phantom_dataset

    write_phantom_dataset(root, n_train_images=0, n_eval_images=n_images, seed=0, progress=False)
