"""Throughput of decode + resize + tokenise: Ray Data vs a torch DataLoader with the same workers.

Both paths run the training pipeline's own transforms (`radisim.platform.data.pipeline.decode_gray`
and the open_clip tokenizer of the model) over the same Parquet manifest, and both are drained by a
plain loop that counts rows. Not a test: numbers depend on the machine.

Two measurements:
- `bench_torch` / `bench_ray`: one short pass from a cold start (start-up included; the old figure);
- `steady_pair` / `--steady`: real-sized images (512 px JPEG or PNG, or 16-bit CT DICOM windowed),
  resized to 224 px, in steady state: rows after `warmup_batches` batches, per CPU-second of the
  whole process tree of each side (driver + DataLoader workers; driver + raylet + GCS + Ray workers).
  On a shared machine, images per CPU-second is the per-core rate that contention does not bend;
  wall-clock images/s and each side's start-up (to the first batch) are reported beside it.

    python -m benchmarks.ingest_throughput --steady --formats jpeg png dicom --workers 1 2 4 --rows 1536
    python -m benchmarks.ingest_throughput --rows 4000 --workers 2 --out bench.json     # cold pass
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform as stdlib_platform
import tempfile
import time
from pathlib import Path

import numpy as np
from torch.utils.data import IterableDataset


FORMATS = ("jpeg", "png", "dicom")


def encode(image: np.ndarray, kind: str) -> bytes:
    """uint8 2-D image -> file bytes: "png" (imaging.encode_png), "jpeg" (quality 90, 4:2:0 as most
    archives export), "dicom" (16-bit CT: the grey values mapped to -1000..+1000 HU, stored unsigned
    with RescaleIntercept -1024, on pydicom's CT_small.dcm header; decoded with the soft-tissue window)."""
    from PIL import Image

    from radisim.platform.data.imaging import encode_png

    if kind == "png":
        return encode_png(image)
    if kind == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(image, mode="L").save(buf, format="JPEG", quality=90)
        return buf.getvalue()
    if kind == "dicom":
        return _ct_dicom(image)
    raise ValueError(f"format must be one of {FORMATS}, got {kind!r}")


def _ct_dicom(image: np.ndarray) -> bytes:
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import ExplicitVRLittleEndian

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = image.astype(np.float32) / 255.0 * 2000.0 - 1000.0
    stored = np.clip(np.rint(hu + 1024.0), 0, 4095).astype(np.uint16)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = stored.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def make_manifest(path: Path, rows: int, src_size: int, seed: int = 0, kind: str = "png") -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from radisim.curriculum.phantom import generate_case

    images, captions, ids = [], [], []
    n_unique = min(rows, 64)  # phantom generation is not what we measure; reuse a pool of images
    pool = [generate_case(seed, i, src_size) for i in range(n_unique)]
    encoded = [encode(case.image, kind) for case in pool]
    for i in range(rows):
        case = pool[i % n_unique]
        images.append(encoded[i % n_unique])
        captions.append(case.captions["anatomy"])
        ids.append(f"b{i}")
    path.mkdir(parents=True, exist_ok=True)
    table = pa.table({"image_id": ids, "image": images, "caption": captions, "phase": ["anatomy"] * rows})
    # one file per 256 rows, as ingestion writes one part file per chunk; row groups of <= 16 MB
    per_group = max(16, min(256, 16 * 2**20 // max(1, max(len(b) for b in encoded))))
    for k, start in enumerate(range(0, rows, 256)):
        pq.write_table(table.slice(start, 256), path / f"part-{k:05d}.parquet", row_group_size=per_group)
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

        table = pq.read_table(path, columns=["image", "caption"])
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


def _timed_pass(batches) -> dict:
    """Drain `batches` (an iterable of image arrays) once; wall time and CPU seconds by role
    (`cpu_clock.tree_cpu_by_role`) from before the first batch is asked for to after the last, while
    the workers are still alive."""
    from benchmarks.cpu_clock import role_deltas, tree_cpu_by_role

    t0, c0 = time.perf_counter(), tree_cpu_by_role()
    n, first = 0, None
    for images in batches:
        n += len(images)
        first = time.perf_counter() - t0 if first is None else first
    wall, cpu = time.perf_counter() - t0, role_deltas(c0, tree_cpu_by_role())
    return {"rows": n, "first_batch_s": first, "wall_s": wall, "cpu_s": sum(cpu.values()), "cpu_by_role_s": cpu}


def _steady(warm: dict, measured: dict, startup_s: float) -> dict:
    """Figures of a side over the measured pass (warm workers): images per CPU-second of the worker
    processes (the per-core decode rate that sizes a node), per CPU-second of the whole process tree,
    per wall second; the fixed cost in cores (driver + Ray services per wall second: paid per node,
    not per image); the cold start reported on its own."""
    m, role = measured, measured["cpu_by_role_s"]
    return {"rows": m["rows"], "images_per_worker_cpu_s": m["rows"] / max(role["workers"], 1e-9),
            "images_per_cpu_s": m["rows"] / m["cpu_s"], "images_per_s": m["rows"] / m["wall_s"],
            "fixed_cores": (role["driver"] + role["services"]) / m["wall_s"], "cores_busy": m["cpu_s"] / m["wall_s"],
            "steady_cpu_s": m["cpu_s"], "cpu_by_role_s": role, "steady_wall_s": m["wall_s"],
            "first_batch_s": m["first_batch_s"], "startup_s": startup_s,
            "warmup": {k: warm[k] for k in ("rows", "first_batch_s", "wall_s", "cpu_s")}}


class ParquetRows(IterableDataset):
    """A torch IterableDataset over a Parquet manifest: each DataLoader worker reads its own share of
    the files (`pyarrow.parquet.ParquetFile.iter_batches`) and decodes row by row, so reading, like
    decoding, happens in the workers (as in Ray Data's read tasks), not up front in the main process."""

    def __init__(self, path: Path, image_size: int):
        self.files = sorted(str(f) for f in Path(path).glob("*.parquet"))
        self.size = image_size

    def __iter__(self):
        import pyarrow.parquet as pq
        from torch.utils.data import get_worker_info

        from radisim.platform.data.pipeline import decode_gray

        info = get_worker_info()
        k, n = (info.id, info.num_workers) if info else (0, 1)
        for f in self.files[k::n]:
            for rb in pq.ParquetFile(f).iter_batches(batch_size=64, columns=["image", "caption"]):
                for data, caption in zip(rb.column(0).to_pylist(), rb.column(1).to_pylist()):
                    yield decode_gray(data, self.size), caption


def steady_torch(path: Path, workers: int, image_size: int, model: str, batch: int, warmup_batches: int) -> dict:
    """A torch DataLoader with `workers` persistent worker processes over `ParquetRows`:
    `warmup_batches` batches of a first epoch start the workers, then one whole epoch is measured."""
    import torch
    from torch.utils.data import DataLoader

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    loader = DataLoader(ParquetRows(path, image_size), batch_size=batch, num_workers=workers, collate_fn=_collate(model),
                        persistent_workers=True, prefetch_factor=2)
    it = iter(loader)
    warm = _timed_pass(images for _, (images, _) in zip(range(warmup_batches), it))
    startup = time.perf_counter() - t0
    del it
    measured = _timed_pass(images for images, _ in loader)
    del loader
    return _steady(warm, measured, startup)


def steady_ray(path: Path, workers: int, image_size: int, model: str, batch: int, warmup_batches: int,
               stream=None) -> dict:
    """Ray Data in a private local Ray of `workers` logical CPUs: `stream(path, image_size, model,
    batch)` builds the Dataset (default: `pipeline_stream`). A first Dataset of `warmup_batches`
    batches starts the pooled task workers (they survive from one Dataset to the next, as from one
    phase to the next), then a whole pass is measured, drained with `iter_batches` as a Train
    worker's `iter_torch_batches` drains it. Start-up = `ray.init` + the warm-up pass."""
    import ray

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=workers, object_store_memory=400 * 2**20, include_dashboard=False,
             log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = ctx.enable_operator_progress_bars = ctx.print_on_execution_start = False
    build = stream or pipeline_stream

    def images(ds):
        return (b["image"] for b in ds.iter_batches(batch_size=batch, batch_format="numpy", prefetch_batches=2))

    try:
        _warm_task_workers(workers, model)
        warm = _timed_pass(images(build(path, image_size, model, batch).limit(warmup_batches * batch)))
        startup = time.perf_counter() - t0
        return _steady(warm, _timed_pass(images(build(path, image_size, model, batch))), startup)
    finally:
        ray.shutdown()


def _warm_task_workers(n: int, model: str) -> None:
    """Start `n` pooled 1-CPU task workers at once, each with the pipeline imported and the tokenizer
    loaded (what a phase's preprocess tasks find after the first phase): Ray Data reuses them."""
    import ray

    @ray.remote(num_cpus=1)
    def warm(model_name):
        from radisim.platform.data.pipeline import _tokenizer

        _tokenizer(model_name)
        time.sleep(0.5)  # hold the CPU so the n tasks land in n processes
        return os.getpid()

    ray.get([warm.remote(model) for _ in range(n)])


def pipeline_stream(path: Path, image_size: int, model: str, batch: int):
    """The training pipeline's shape: read_parquet -> map_batches(preprocess) tasks of 1 CPU, 256 rows
    a call (as `pipeline.phase_dataset`); the consumer re-batches to `batch`."""
    import ray

    from radisim.platform.data.pipeline import preprocess

    return ray.data.read_parquet(str(path)).select_columns(["image_id", "image", "caption"]).map_batches(
        preprocess, fn_kwargs={"image_size": image_size, "model_name": model}, batch_size=256, num_cpus=1,
        batch_format="numpy")


def steady_pair(work: Path, kind: str, rows: int, workers: int, model: str = "radisim-tiny", image_size: int = 224,
                src_size: int = 512, batch: int = 128, warmup_batches: int = 2) -> dict:
    """Both sides over the same manifest of `rows` `kind` images, with `workers` DataLoader workers =
    Ray logical CPUs. `ratio_per_cpu_s`: Ray Data's images per worker CPU-second over the
    DataLoader's (the per-core rate); `ratio_tree_cpu_s` counts every process of each side."""
    path = make_manifest(work / f"{kind}-{src_size}", rows, src_size, kind=kind)
    warm = max(warmup_batches, workers)  # every DataLoader worker makes whole batches
    torch_side = steady_torch(path, workers, image_size, model, batch, warm)
    ray_side = steady_ray(path, workers, image_size, model, batch, warm)
    if not torch_side["rows"] == ray_side["rows"] == rows:
        raise RuntimeError(f"the two sides read different rows: DataLoader {torch_side['rows']}, "
                           f"Ray Data {ray_side['rows']}, manifest {rows}")
    return {"format": kind, "src_size": src_size, "image_size": image_size, "rows": rows, "workers": workers,
            "batch": batch, "torch_dataloader": torch_side, "ray_data": ray_side,
            "ratio_per_cpu_s": ray_side["images_per_worker_cpu_s"] / torch_side["images_per_worker_cpu_s"],
            "ratio_tree_cpu_s": ray_side["images_per_cpu_s"] / torch_side["images_per_cpu_s"],
            "ratio_wall": ray_side["images_per_s"] / torch_side["images_per_s"],
            "load_1min": os.getloadavg()[0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=4000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--src-size", type=int, default=256, help="stored image side (decoded and resized)")
    p.add_argument("--image-size", type=int, default=64, help="model input side")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--model", default="radisim-tiny")
    p.add_argument("--out", default="ingest_throughput.json")
    p.add_argument("--steady", action="store_true", help="steady-state table (real-sized images, per CPU-second)")
    p.add_argument("--formats", nargs="+", default=["jpeg"], choices=FORMATS)
    p.add_argument("--worker-counts", nargs="+", type=int, default=[1, 2, 4],
                   help="--steady: DataLoader workers = Ray logical CPUs (more than the host has: simulated)")
    args = p.parse_args(argv)
    import ray
    import torch

    if args.steady:
        return _steady_main(args)

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


def _steady_main(args) -> int:
    from benchmarks.report import cpu_model

    size = 512 if args.src_size == 256 else args.src_size
    image_size = 224 if args.image_size == 64 else args.image_size
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.formats:
            for w in args.worker_counts:
                r = steady_pair(Path(tmp), kind, args.rows, w, args.model, image_size, size, args.batch)
                table.append(r)
                print(f"{kind} {size}->{image_size}px, {w} worker(s): " + "; ".join(
                    f"{name} {x['images_per_worker_cpu_s']:.0f} img/worker-CPU-s, {x['images_per_cpu_s']:.0f} img/CPU-s "
                    f"all processes, {x['images_per_s']:.0f}/s wall, fixed {x['fixed_cores']:.2f} cores, "
                    f"start-up {x['startup_s']:.1f} s" for name, x in (("DataLoader", r["torch_dataloader"]),
                                                                    ("Ray Data", r["ray_data"])))
                      + f"; Ray/DataLoader per worker CPU-s {r['ratio_per_cpu_s']:.2f}x, all processes "
                      f"{r['ratio_tree_cpu_s']:.2f}x (load {r['load_1min']:.1f})", flush=True)
    Path(args.out).write_text(json.dumps({"steady": table, "cpu_model": cpu_model(), "logical_cpus": os.cpu_count(),
                                          "date": time.strftime("%Y-%m-%d")}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
