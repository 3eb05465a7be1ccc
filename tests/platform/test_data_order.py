"""Data order hygiene: each pass globally shuffled, and captions of one image kept out of each other's
batches (the contrastive loss would count them as negatives). Measured on the phantom's layout, which
writes all captions of an image side by side."""
from __future__ import annotations

import pyarrow.dataset as pads
import pytest

from radisim.curriculum.phantom import write_phantom_dataset
from radisim.platform.data.pipeline import TRAIN_COLUMNS, _round_of, global_order, sort_boundaries, train_dir, twin_rate


def test_twin_rate_counts_rows_whose_image_is_twice_in_their_batch():
    assert twin_rate(["a", "a", "b", "c", "d", "d", "d", "e", "x"], 4) == (2 + 3) / 8  # last row: no full batch
    assert twin_rate(["a", "b", "c", "d"], 2) == 0.0


def test_an_images_captions_get_distinct_rounds():
    from radisim.curriculum.phases import PHASES

    for image in ("img-1", "img-2", "phantom-train-000007"):
        assert sorted(_round_of(image, p, 3) for p in PHASES) == list(range(len(PHASES)))
    assert [_round_of("img-1", p, 3) for p in PHASES] != [_round_of("img-1", p, 4) for p in PHASES]


def test_sort_partitions_follow_the_rounds_and_the_size():
    assert sort_boundaries(100) == [1, 2, 3, 4]  # one partition per round
    b = sort_boundaries(5 * 5000 * 3)  # three partitions per round
    assert len(b) == 14 and b[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])


@pytest.mark.slow
def test_global_order_mixes_files_and_removes_same_image_negatives(tmp_path):
    import ray

    root = tmp_path / "phantom"
    write_phantom_dataset(root, n_train_images=120, n_eval_images=10, seed=0, size=32, progress=False,
                          rows_per_shard=100)
    files = sorted(str(p) for p in (root / "train").glob("part-*.parquet"))
    written = pads.dataset(train_dir(str(root)), format="parquet").to_table(columns=["image_id"]).column("image_id").to_pylist()
    batch = 32
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 1024**2)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        ds = ray.data.read_parquet(train_dir(str(root)), columns=TRAIN_COLUMNS)
        # the old stream: file order through a local shuffle buffer of 64 rows
        local = [r["image_id"] for b in ds.iter_batches(batch_size=batch, local_shuffle_buffer_size=64,
                                                        local_shuffle_seed=0, batch_format="pyarrow")
                 for r in b.select(["image_id"]).to_pylist()]
        rows = global_order(ds, seed=5, n_rows=len(written)).select_columns(["image_id", "phase"]).take_all()
        ordered = [r["image_id"] for r in rows]
        other = [r["image_id"] for r in global_order(ds, seed=6, n_rows=len(written)).select_columns(["image_id"]).take_all()]
    finally:
        ray.shutdown()
    assert sorted(ordered) == sorted(written) and len(files) > 3  # nothing lost, several files
    assert ordered != other  # a new order for each pass's seed
    before, after = twin_rate(local, batch), twin_rate(ordered, batch)
    print(f"twin rate at batch {batch}: local shuffle buffer {before:.3f}, global order {after:.3f}")
    assert before > 0.1 and after < before / 4
    # inside a round no image repeats: twins only where a batch straddles one of the 4 round boundaries
    rounds = [_round_of(r["image_id"], r["phase"], 5) for r in rows]
    assert rounds == sorted(rounds)
    for k in set(rounds):
        ids = [i for i, r in zip(ordered, rounds) if r == k]
        assert len(ids) == len(set(ids))
    # global: a batch's rows come from many files, not from the one or two a local buffer spans
    first_file_ids = set(pads.dataset(files[0], format="parquet").to_table(columns=["image_id"]).column("image_id").to_pylist())
    assert sum(i in first_file_ids for i in ordered[:batch]) < batch / 2
