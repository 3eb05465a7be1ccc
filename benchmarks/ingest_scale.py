"""Does `prepare-data` scale? Driver peak RSS and rows/s of a full ingestion of a generated Parquet
manifest at two sizes, beside a plain `pyarrow.parquet.read_table` of the same file.

Each measurement runs in its own process, so `ru_maxrss` is that process's own peak: the ingestion
process is the Ray *driver* (discovery, planning, the streaming dedup/split pass, the card); the Ray
task workers are other processes and are not counted. The manifest has one unique 16x16 PNG and a
caption per row (a few phase templates), in row groups of `rows_per_chunk`. Before a ratio is
printed, both sides are checked to have covered the same rows (ingest inputs == pyarrow rows ==
manifest rows, and kept + rejected == inputs).

    .venv/bin/python benchmarks/ingest_scale.py --rows 50000 200000 --out /tmp/ingest_scale.json

Pass: the driver's peak RSS at the largest size is within 20% of that at the smallest.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform as stdlib_platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CAPTIONS = ("Axial CT of the chest.", "MRI of the brain, no acute abnormality.",
            "Frontal chest radiograph: moderate right pleural effusion.",
            "Coronal CT of the abdomen: the liver is in the upper left of the image.",
            "Sagittal MRI of the knee with a grade 2 meniscus tear.")


def make_manifest(path: Path, rows: int, group: int, seed: int = 0) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(seed)
    writer = None
    for a in range(0, rows, group):
        n = min(group, rows - a)
        images = []
        for _ in range(n):
            buf = io.BytesIO()
            Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8), mode="L").save(buf, format="PNG")
            images.append(buf.getvalue())
        table = pa.table({"filepath": pa.array(images, pa.binary()),
                          "title": [CAPTIONS[(a + i) % len(CAPTIONS)] for i in range(n)],
                          "patient": [f"p{(a + i) // 4}" for i in range(n)]})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=group)
    writer.close()
    return path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child_pyarrow(manifest: str) -> dict:
    import pyarrow.parquet as pq

    t0, c0 = time.perf_counter(), time.process_time()
    rows = pq.read_table(manifest).num_rows
    return {"rows": rows, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "peak_rss_mb": _peak_rss_mb()}


def child_ingest(manifest: str, out: str, cpus: int, group: int) -> dict:
    from radisim.platform.config import load_job_config
    from radisim.platform.data.ingest import run_ingest

    cfg = load_job_config(overrides=[f"ray.num_cpus={cpus}", "ray.object_store_mb=300", "ray.include_dashboard=false",
                                     f"data.ingest.rows_per_chunk={group}", "data.ingest.task_cpus=1",
                                     "data.ingest.salt=benchmark-salt"])
    t0, c0 = time.perf_counter(), time.process_time()
    card = run_ingest([manifest], out, cfg.data.ingest, cfg.ray, tracking=None, log_mlflow=False).card
    return {"inputs": card["inputs"], "kept": card["kept"], "rejected": card["rejected_total"],
            "balanced": card["balanced"], "chunks": card["chunks"]["total"], "wall_s": time.perf_counter() - t0,
            "driver_cpu_s": time.process_time() - c0, "peak_rss_mb": _peak_rss_mb()}


def _run_child(*args: str) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, timeout=3600,
                         env={**os.environ, "PYTHONWARNINGS": "ignore", "RAY_DEDUP_LOGS": "0"})
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def measure(rows: int, work: Path, cpus: int, group: int) -> dict:
    manifest = make_manifest(work / f"manifest-{rows}.parquet", rows, group)
    plain = _run_child("pyarrow", str(manifest))
    ingest = _run_child("ingest", str(manifest), str(work / f"out-{rows}"), str(cpus), str(group))
    same = plain["rows"] == rows == ingest["inputs"] and ingest["balanced"]
    if not same:
        raise SystemExit(f"sides differ at {rows} rows: pyarrow {plain['rows']}, ingest {ingest['inputs']}")
    return {"rows": rows, "manifest_mb": round(manifest.stat().st_size / 2**20, 1), "pyarrow": plain, "ingest": ingest,
            "ingest_rows_per_s": round(rows / ingest["wall_s"], 1),
            "pyarrow_rows_per_s": round(rows / plain["wall_s"], 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--group", type=int, default=2048, help="row group size = rows per chunk")
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        result = child_pyarrow(*rest) if kind == "pyarrow" else child_ingest(rest[0], rest[1], int(rest[2]), int(rest[3]))
        print(json.dumps(result))
        return 0
    with tempfile.TemporaryDirectory(prefix="ingest-scale-") as tmp:
        results = [measure(n, Path(tmp), args.cpus, args.group) for n in sorted(args.rows)]
    small, large = results[0], results[-1]
    ratio = large["ingest"]["peak_rss_mb"] / small["ingest"]["peak_rss_mb"]
    report = {"benchmark": "ingest_scale", "python": stdlib_platform.python_version(), "cpus": os.cpu_count(),
              "ray_cpus": args.cpus, "results": results, "driver_rss_ratio": round(ratio, 3),
              "flat_within_20pct": ratio <= 1.2,
              "note": "timings are wall-clock on a shared machine; driver_cpu_s and peak RSS are per process"}
    for r in results:
        print(f"{r['rows']:>7} rows ({r['manifest_mb']} MiB): ingest {r['ingest_rows_per_s']:.0f} rows/s, driver peak "
              f"RSS {r['ingest']['peak_rss_mb']:.0f} MiB, driver CPU {r['ingest']['driver_cpu_s']:.1f} s | pyarrow "
              f"read_table {r['pyarrow_rows_per_s']:.0f} rows/s, peak RSS {r['pyarrow']['peak_rss_mb']:.0f} MiB")
    print(f"driver peak RSS {large['rows']} / {small['rows']} rows: {ratio:.2f} "
          f"({'flat within 20%' if ratio <= 1.2 else 'NOT flat'})")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if ratio <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
