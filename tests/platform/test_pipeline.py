"""Ray Data phase streams: several passes chained into one stream, each drawing its own sample."""
from __future__ import annotations

import pyarrow.dataset as pads
import pytest

from radisim.curriculum.phantom import write_phantom_dataset
from radisim.platform.data.pipeline import (_row_hash, grading_details, passes_needed, phase_dataset,
                                            train_dir)


def test_passes_needed_covers_the_phase_with_margin():
    assert passes_needed(3000, 3840) == 2          # the demo's first phase: 60 x 64 samples, 3000 rows
    assert passes_needed(3000, 2000) == 1
    assert passes_needed(100, 1000) == 11
    assert passes_needed(0, 10) >= 1


@pytest.mark.slow
def test_passes_chain_into_one_stream_with_fresh_samples(tmp_path):
    import ray

    root = tmp_path / "phantom"
    write_phantom_dataset(root, n_train_images=40, n_eval_images=10, seed=0, size=32, progress=False)
    table = pads.dataset(train_dir(str(root)), format="parquet").to_table(columns=["image_id", "caption", "phase"]).to_pylist()
    mix, seed = {"modality": 1.0, "anatomy": 0.5}, 3
    kept = [sum(_row_hash(r["image_id"], r["caption"], seed + 7919 * k) < 0.5 for r in table if r["phase"] == "anatomy")
            for k in range(3)]
    assert len(set(kept)) > 1  # the passes draw different samples of the partial tag
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        # one pass holds 40 + 0.5 * 40 = 60 rows: 150 samples need ceil(1.1 * 150 / 60) = 3 passes
        assert passes_needed(60, 150) == 3
        ds = phase_dataset(train_dir(str(root)), mix, image_size=32, model_name="radisim-tiny", seed=seed, samples=150)
        assert ds.count() == 3 * 40 + sum(kept)
    finally:
        ray.shutdown()


def test_grading_details_come_from_the_manifests_grading_rows(tmp_path):
    from radisim.curriculum.counterfactuals import counterfactuals, detail_pool, find_detail

    root = tmp_path / "phantom"
    write_phantom_dataset(root, n_train_images=40, n_eval_images=10, seed=0, size=32, cohort_fraction=1.0,
                          progress=False)
    rows = pads.dataset(train_dir(str(root)), format="parquet").to_table(columns=["caption", "phase"]).to_pylist()
    grading = [r["caption"] for r in rows if r["phase"] == "grading"]
    pool = grading_details(train_dir(str(root)))
    assert pool == detail_pool(grading) and len(pool) >= 2  # brain tumours, lung adenocarcinomas (, ...)
    assert grading_details(train_dir(str(root)), max_captions=3) == detail_pool(grading[:3])
    checked = 0
    for cap in grading:  # counterfactuals of their family's real signatures
        d = find_detail(cap)
        if d is not None and len(pool[d.family]) > 1:
            for neg in counterfactuals(cap, "grading", 2, details=pool):
                assert find_detail(neg).signature in set(pool[d.family]) - {d.signature}, (cap, neg)
                checked += 1
    assert checked > 20
