"""The suite on real-format replicas (source="real", one root per dataset), run twice: the second run
takes every image pool's embeddings from the cache. Timings are printed, never asserted."""
from __future__ import annotations

import time

import numpy as np
import pytest

import real_replicas as rr

SUBTASKS = ["br35h", "mrnet_acl", "mrnet_meniscus", "totalseg_ct_organs", "ct_view", "totalseg",
            "internal_lung_adeno_subtype", "internal_lung_adeno_grade"]


@pytest.mark.slow
def test_real_datasets_second_run_hits_the_cache_for_every_pool(ray_session, tiny_checkpoint, tmp_path):
    from radisim.evals.suite import ModelRef, run_suite

    roots = {"br35h": rr.br35h(tmp_path / "br35h"), "mrnet": rr.mrnet(tmp_path / "mrnet"),
             "totalseg": rr.totalseg(tmp_path / "totalseg"), "internal_lung_adeno": rr.labelled_csv(tmp_path / "adeno")}
    ref = ModelRef("radisim-tiny", checkpoint=str(tiny_checkpoint), label="tiny-random")
    runs, walls = [], []
    for _ in range(2):
        t = time.perf_counter()
        runs.append(run_suite(ref, subtasks=SUBTASKS, source="real", roots=roots, cache_dir=tmp_path / "cache",
                              n_bootstrap=50, seed=0))
        walls.append(time.perf_counter() - t)
    cold, warm = runs
    assert len(cold.cache_hits) == 4  # one pool per dataset, shared by its subtasks
    assert not any(cold.cache_hits.values()) and all(warm.cache_hits.values())
    assert warm.cache_hits.keys() == cold.cache_hits.keys()
    assert warm.metrics == cold.metrics
    for sid in SUBTASKS:
        task = cold.subtasks[sid].subtask
        assert np.isfinite(cold.metrics[task.key(task.metric)]), sid
    print(f"\n[evals real] {len(SUBTASKS)} subtasks over {len(cold.cache_hits)} pools: cold {walls[0]:.1f} s "
          f"(embed {cold.timings['embed_s']:.1f} s), cached {walls[1]:.1f} s (embed {warm.timings['embed_s']:.2f} s): "
          f"saved {walls[0] - walls[1]:.1f} s")
