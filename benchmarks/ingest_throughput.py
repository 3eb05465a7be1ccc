"""Throughput of decode + resize + tokenise: Ray Data vs a torch DataLoader with the same workers.

Both paths run the training pipeline's own transforms (`radisim.platform.data.pipeline.decode_gray`
and the open_clip tokenizer of the model) over the same Parquet manifest of PNG-encoded images, and
both are drained by a plain loop that counts rows. Not a test: numbers depend on the machine.

    .venv/bin/python benchmarks/ingest_throughput.py --rows 4000 --workers 2 --out bench.json

Reference (2 shared CPU cores, no GPU, 2026-11, Ray 2.60, torch 2.14.1): see the JSON it writes.
"""
from __future__ import annotations

import argparse
import json
import platform as stdlib_platform
import tempfile
import time
from pathlib import Path

import numpy as np


def make_manifest(path: Path, rows: int, src_size: int, seed: int = 0) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from radisim.curriculum.phantom import generate_case
    from radisim.platform.data.imaging import encode_png

    images, captions, ids = [], [], []
    n_unique = min(rows, 256)  # phantom generation is not what we measure; reuse a pool of images
    pool = [generate_case(seed, i, src_size) for i in range(n_unique)]
    for i in range(rows):
        case = pool[i % n_unique]
        images.append(encode_png(case.image))
        captions.append(case.captions["anatomy"])
        ids.append(f"b{i}")
    path.mkdir(parents=True, exist_ok=True)
    table = pa.table({"image_id": ids, "image": images, "caption": captions, "phase": ["anatomy"] * rows})
    pq.write_table(table, path / "part-0.parquet", row_group_size=256)
    return path


def bench_ray(path: Path, workers: int, image_size: int, model: str, batch: int) -> tuple[int, float]:
    import ray

    from radisim.platform.data.pipeline import preprocess

    ray.init(address="local", num_cpus=workers, object_store_memory=300 * 2**20, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = ctx.enable_operator_progress_bars = ctx.print_on_execution_start = False
    try:
        # warm the task workers (tokenizer load) on a tiny dataset, as a DataLoader's first batch does
        ray.data.read_parquet(str(path)).limit(batch).map_batches(
            preprocess, fn_kwargs={"image_size": image_size, "model_name": model}, batch_size=batch,
            num_cpus=1).take(1)
        t0 = time.perf_counter()
        ds = ray.data.read_parquet(str(path)).select_columns(["image_id", "image", "caption"]).map_batches(
            preprocess, fn_kwargs={"image_size": image_size, "model_name": model}, batch_size=batch,
            num_cpus=1, batch_format="numpy")
        n = sum(len(b["image"]) for b in ds.iter_batches(batch_size=batch, batch_format="numpy"))
        return n, time.perf_counter() - t0
    finally:
        ray.shutdown()


class _Rows:
    def __init__(self, path: Path, image_size: int):
        import pyarrow.parquet as pq

        table = pq.read_table(path / "part-0.parquet", columns=["image", "caption"])
        self.images = table.column("image").to_pylist()
        self.captions = table.column("caption").to_pylist()
        self.size = image_size

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from radisim.platform.data.pipeline import decode_gray

        return decode_gray(self.images[i], self.size), self.captions[i]


def _collate(model: str):
    def collate(items):
        import torch

        from radisim.platform.data.pipeline import _tokenizer

        images = torch.from_numpy(np.stack([im for im, _ in items]))
        return images, _tokenizer(model)([c for _, c in items])
    return collate


def bench_torch(path: Path, workers: int, image_size: int, model: str, batch: int) -> tuple[int, float]:
    import torch
    from torch.utils.data import DataLoader

    torch.set_num_threads(1)
    loader = DataLoader(_Rows(path, image_size), batch_size=batch, num_workers=workers,
                        collate_fn=_collate(model), persistent_workers=False)
    t0 = time.perf_counter()
    n = sum(len(images) for images, _ in loader)
    return n, time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=4000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--src-size", type=int, default=256, help="stored image side (decoded and resized)")
    p.add_argument("--image-size", type=int, default=64, help="model input side")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--model", default="radisim-tiny")
    p.add_argument("--out", default="ingest_throughput.json")
    args = p.parse_args(argv)
    import ray
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = make_manifest(Path(tmp) / "m", args.rows, args.src_size)
        t_rows, t_s = bench_torch(path, args.workers, args.image_size, args.model, args.batch)
        r_rows, r_s = bench_ray(path, args.workers, args.image_size, args.model, args.batch)
    result = {
        "rows": args.rows, "workers": args.workers, "src_size": args.src_size, "image_size": args.image_size,
        "batch": args.batch, "model": args.model,
        "torch_dataloader": {"rows": t_rows, "seconds": round(t_s, 3), "rows_per_s": round(t_rows / t_s, 1)},
        "ray_data": {"rows": r_rows, "seconds": round(r_s, 3), "rows_per_s": round(r_rows / r_s, 1)},
        "ratio_ray_over_torch": round((r_rows / r_s) / (t_rows / t_s), 3),
        "versions": {"ray": ray.__version__, "torch": torch.__version__, "python": stdlib_platform.python_version()},
        "machine": f"{stdlib_platform.machine()}, {__import__('os').cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"torch DataLoader: {result['torch_dataloader']['rows_per_s']} rows/s; Ray Data: "
          f"{result['ray_data']['rows_per_s']} rows/s; ratio Ray/torch = {result['ratio_ray_over_torch']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
