"""benchmarks/ (python -m benchmarks.run): FLOP counting, the plain training step, the report. No timing
assertions: figures depend on the machine and its load; only their presence and sanity are checked."""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

from radisim.platform.raysession import LOCAL_ENV

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import flops, report, run, train_overhead  # noqa: E402

KEYS = {"data_wait_frac", "raydata_vs_dataloader_ratio", "cpu_flop_util", "eval_cache_speedup",
        "openclip_train_samples_per_s", "raydata_vs_dataloader_steady_ratio"}


@pytest.fixture(scope="module")
def tiny_step():
    old = torch.get_num_threads()
    step = train_overhead.TrainStep("radisim-tiny", threads=1, total_steps=10)
    yield step
    torch.set_num_threads(old)


def test_flop_count_of_the_tiny_step_is_positive_stable_and_counts_attention(tiny_step):
    images, text = tiny_step.synthetic_batch(4)
    a, per_op = flops.count_flops(lambda: tiny_step(images, text))
    b, _ = flops.count_flops(lambda: tiny_step(images, text))
    assert a == b > 0
    # CPU attention is counted (torch's counter has no formula for it by itself), forward and backward
    assert per_op["_scaled_dot_product_flash_attention_for_cpu"] > 0
    assert per_op["_scaled_dot_product_flash_attention_for_cpu_backward"] > 0
    # matmuls dominate: ~0.9 GFLOP per sample forward+backward for radisim-tiny
    assert 0.5e9 < a / 4 < 1.5e9
    images8, text8 = tiny_step.synthetic_batch(8)
    c, _ = flops.count_flops(lambda: tiny_step(images8, text8))
    assert 1.9 < c / a < 2.1  # linear in the batch, up to the B x B logits


def test_plain_loop_windows_and_optimizer_comparison(tiny_step):
    images, text = tiny_step.synthetic_batch(8)
    w = train_overhead.plain_loop(tiny_step, images, text, steps=4, batch=4, log_every=2)
    assert len(w.samples_per_s) == len(w.seconds) == len(w.cpu_seconds) == 2
    steady = w.steady()
    assert len(steady.seconds) == 1 and steady.rate() > 0 and steady.wait() == 0.0
    before = [p.detach().clone() for p in tiny_step.model.parameters()]
    ms = train_overhead.optimizer_step_cpu_ms(tiny_step, repeats=1)
    assert set(ms) == {"foreach", "fused"} and all(v > 0 for v in ms.values())
    assert all(torch.equal(p, q) for p, q in zip(before, tiny_step.model.parameters()))


def test_the_loop_uses_fused_adamw_on_cpu(tiny_step):
    from radisim.platform.config import TrainConfig
    from radisim.platform.train.loop import build_optimizer

    opt = build_optimizer(tiny_step.model, 1e-3, TrainConfig().model_dump(), torch.device("cpu"))
    assert opt.defaults["fused"] is True
    assert len(opt.param_groups) == 2 and opt.param_groups[0]["weight_decay"] == 0.0


def test_matmul_peak_reports_wall_and_cpu_rates():
    peak = flops.matmul_peak(1, n=128, seconds=0.03, repeats=1)
    assert peak["wall"] > 0 and peak["cpu"] > 0


def _fake_result() -> dict:
    env = report.environment()
    return {
        "train_overhead_ratio": None, "like_for_like": False, "openclip_train_samples_per_s": 60.0,
        "raydata_vs_dataloader_steady_ratio": 0.9, "cpu_model": env["cpu_model"], "data_wait_frac": 0.01, "raydata_vs_dataloader_ratio": 1.2,
        "cpu_flop_util": 0.6, "eval_cache_speedup": 8.0, "model": "radisim-tiny", "wall_s": 100.0,
        "environment": env, "load": {"start": [1.0, 1.0, 1.0], "end": [2.0, 2.0, 2.0], "max_1min": 3.0},
        "train": {"batch": 64, "threads": 1, "steps": 30, "log_every": 5, "ray_samples_per_s": 50.0,
                  "plain_samples_per_s": 50.5, "plain_before": 50.0, "plain_after": 51.0, "ray_windows": [49.0, 50.0],
                  "ray_wait_windows": [0.02, 0.01], "startup_s": [30.0], "first_batch_s": [10.0],
                  "like_for_like_tolerance": 0.05,
                  "cpu_per_step": {side: {"steps": 10, "thread_s_per_step": v, "process_s_per_step": v * 1.1,
                                          "thread_cpu_share": 0.9}
                                   for side, v in (("ray", 0.70), ("plain", 0.60), ("openclip_train", 0.62))}},
        "flops": {"threads": 1, "flops_per_step": 5.8e10, "per_op": {"mm": 4e10}, "peak_cpu_gflops": 90.0,
                  "peak_wall_gflops": 85.0, "peak_samples": [{"cpu": 90.0, "wall": 85.0}], "achieved_cpu_gflops": 54.0,
                  "achieved_wall_gflops_ray": 45.0, "util_wall_ray": 0.53,
                  "optimizer_step_cpu_ms": {"foreach": 44.0, "fused": 9.0}},
        "eval": {"cold": {"wall_s": 40.0, "n_subtasks": 24, "timings": {"embed_s": 35.0}},
                 "cached": {"wall_s": 5.0, "timings": {"embed_s": 0.01}}, "embed_cold_s": 35.0, "embed_cached_s": 0.01,
                 "n_images": 240, "n_bootstrap": 100},
        "ingest": {"rows": 600, "workers": 2, "src_size": 256, "image_size": 64, "batch": 128,
                   "ray_data": {"rows_per_s": 120.0}, "torch_dataloader": {"rows_per_s": 100.0}},
        "ingest_steady": {"format": "jpeg", "src_size": 512, "image_size": 224, "workers": 2, "ratio_per_cpu_s": 0.9,
                          "ratio_tree_cpu_s": 0.6,
                          "ray_data": {"images_per_worker_cpu_s": 450.0, "fixed_cores": 0.1, "startup_s": 20.0},
                          "torch_dataloader": {"images_per_worker_cpu_s": 500.0, "fixed_cores": 0.0, "startup_s": 5.0}},
    }


def test_report_names_model_hardware_date_and_carries_versions():
    r = _fake_result()
    name = report.report_name("radisim-tiny", r["environment"]["date"])
    assert name.startswith("radisim-tiny_cpu") and name.endswith(f"_{r['environment']['date']}.md")
    md = report.markdown(r, "python -m benchmarks.run --quick --out x.json")
    for needle in ("torch", "ray", "open_clip", "python", r["environment"]["cpu_model"], "Load average",
                   "python -m benchmarks.run --quick", ">= 0.98x", "< 5%", ">= 50%",
                   # 0.70 vs 0.60 s of training-thread CPU per step: 17% apart, so no ratio is printed
                   "not like-for-like", "ray 0.700 s thread", "60.0 samples/s", "0.90x (450 vs 500"):
        assert needle in md, needle
    r.update(train_overhead_ratio=0.99, like_for_like=True)
    assert "| 0.99x (wall: 50.0 vs 50.5 samples/s)" in report.markdown(r, "x")
    assert set(r["environment"]["versions"]) == {"python", "torch", "ray", "open_clip"}


def test_overhead_ratio_is_per_cpu_second_and_only_like_for_like():
    cpu = {"ray": {"process_s_per_step": 0.547}, "plain": {"process_s_per_step": 0.531}}
    assert run.overhead_ratio(cpu, True) == pytest.approx(0.531 / 0.547)
    assert run.overhead_ratio(cpu, False) is None


@pytest.mark.slow
def test_tiny_run_writes_every_key(tmp_path, monkeypatch):
    """The whole benchmark at toy sizes, in process: real Ray Train fit, eval suite, ingest."""
    tiny = run.Sizes(steps=4, log_every=2, fits=1, plain_steps=4, train_images=60, eval_images=240, n_bootstrap=10,
                     ingest_rows=64, steady_rows=300)
    monkeypatch.setattr(run, "QUICK", tiny)
    for key in LOCAL_ENV:  # the benchmark's Ray runs with the platform's local settings, then drops them
        monkeypatch.delenv(key, raising=False)
    out = tmp_path / "bench.json"
    assert run.main(["--quick", "--out", str(out)]) == 0
    assert not any(key in os.environ for key in LOCAL_ENV)
    data = json.loads(out.read_text())
    assert KEYS <= set(data)
    assert all(isinstance(data[k], float) and math.isfinite(data[k]) and data[k] >= 0 for k in KEYS)
    # a ratio exactly when the two sides spent the same training-thread CPU per step
    cpu = data["train"]["cpu_per_step"]
    assert all(cpu[s]["thread_s_per_step"] > 0 for s in ("ray", "plain", "openclip_train"))
    assert isinstance(data["like_for_like"], bool) and data["cpu_model"]
    assert (data["train_overhead_ratio"] is not None) == data["like_for_like"]
    if data["like_for_like"]:
        assert data["train_overhead_ratio"] == pytest.approx(run.overhead_ratio(cpu, True))
    assert data["ingest_steady"]["torch_dataloader"]["rows"] == data["ingest_steady"]["ray_data"]["rows"] == 300
    assert list(tmp_path.glob("radisim-tiny_cpu*_*.md"))


def test_openclip_anchor_runs_open_clip_trains_loop_and_times_each_step():
    w = train_overhead.openclip_train_loop("radisim-tiny", threads=1, steps=4, batch=4, log_every=2)
    assert len(w.samples_per_s) == len(w.cpu_seconds) == 2 and all(c > 0 for c in w.cpu_seconds)
    cpu = train_overhead.plain_cpu(w, 2)
    assert cpu["steps"] == 2 and cpu["process_s_per_step"] >= 0.99 * cpu["thread_s_per_step"] > 0  # clocks tick apart
    assert 0 < cpu["thread_cpu_share"] <= 1.01
