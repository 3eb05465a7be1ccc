"""benchmarks/ingest_throughput.py steady-state pieces and benchmarks/device_decode.py, at toy sizes.
Ray's side of the steady pair runs in the slow end-to-end benchmark test (test_bench_cpu)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import device_decode, ingest_throughput  # noqa: E402


@pytest.mark.parametrize("kind", ingest_throughput.FORMATS)
def test_manifest_of_each_format_decodes_through_the_pipeline(tmp_path, kind):
    from radisim.platform.data.pipeline import decode_gray, is_dicom, is_jpeg

    path = ingest_throughput.make_manifest(tmp_path / kind, rows=300, src_size=96, kind=kind)
    assert sorted(p.name for p in path.glob("*.parquet")) == ["part-00000.parquet", "part-00001.parquet"]
    first = pq.read_table(path).column("image")[0].as_py()
    assert {"jpeg": is_jpeg, "dicom": is_dicom, "png": lambda b: b[:4] == b"\x89PNG"}[kind](first)
    img = decode_gray(first, 32)
    assert img.shape == (32, 32) and img.dtype == np.uint8 and img.std() > 0


def test_dataloader_side_reads_in_its_workers_and_counts_every_row(tmp_path):
    path = ingest_throughput.make_manifest(tmp_path / "m", rows=300, src_size=64, kind="png")
    out = ingest_throughput.steady_torch(path, workers=1, image_size=32, model="radisim-tiny", batch=64, warmup_batches=1)
    assert out["rows"] == 300 and out["warmup"]["rows"] == 64
    role = out["cpu_by_role_s"]
    assert role["workers"] > 0 and out["images_per_worker_cpu_s"] == pytest.approx(300 / role["workers"])
    assert out["images_per_cpu_s"] <= out["images_per_worker_cpu_s"] and out["startup_s"] > 0


def test_device_decode_script_on_cpu(tmp_path):
    out = tmp_path / "d.json"
    assert device_decode.main(["--device", "cpu", "--images", "48", "--batch", "16", "--src-size", "128",
                               "--image-size", "64", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["host"]["images"] == 48 and r["device"]["images"] == 32  # one warm-up batch of 16 untimed
    assert r["mean_abs_diff_grey_levels"] < 0.5 and r["max_abs_diff_grey_levels"] <= 1
    assert r["device_over_host_core"] == pytest.approx(r["device"]["images_per_s"] / r["host"]["images_per_cpu_s"])
    with pytest.raises(SystemExit):
        device_decode.parse_args(["--images", "16", "--batch", "16"])
