"""benchmarks/gpu_check.py on CPU: what can be checked without a GPU (argument handling, FLOP counting,
the timed loop over the platform's Ray Data stream). The GPU figures themselves need an H200."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


def test_defaults_are_the_h200_check():
    args = gpu_check.parse_args([])
    assert (args.model, args.device, args.precision, args.steps, args.peak_tflops) == \
        ("radisim-vit-b16", "cuda", "bf16", 300, 989.0)
    cpu = gpu_check.parse_args(["--device", "cpu"])
    assert cpu.precision == "fp32" and cpu.peak_tflops == 0.19


def test_bf16_on_cpu_is_refused(capsys):
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--device", "cpu", "--precision", "bf16"])
    assert "bf16" in capsys.readouterr().err


def test_flops_of_one_step_scale_with_batch():
    import torch

    from radisim.platform.models import register_configs

    register_configs()
    step = gpu_check.Step("radisim-tiny", torch.device("cpu"), "fp32", compile_model=False)
    flops = {}
    for bs in (4, 8):
        batch = next(gpu_check.synthetic_batches(step, bs))
        flops[bs] = gpu_check.count_step_flops(step, batch["image"], batch["text"])
    # ~3x forward (fwd + bwd) of the 12M-parameter model: 2 * params * tokens per sample, order of magnitude
    params = sum(p.numel() for p in step.model.parameters())
    assert flops[8] > 0 and 1.8 < flops[8] / flops[4] < 2.2
    assert flops[4] / 4 > 2 * params  # at least one multiply-add per parameter per sample


def _run(tmp_path, *extra: str) -> tuple[dict, str]:
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu",
                           "--model", "radisim-tiny", "--steps", "2", "--warmup-steps", "1", "--batch-size", "8",
                           "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_cpu_run_reports_every_figure(tmp_path):
    r, stdout = _run(tmp_path, "--data", "synthetic")
    assert r["samples_per_s"] > 0 and r["flops_per_step"] > 0 and 0 < r["mfu"] < 1
    assert 0 <= r["data_wait_frac"] <= 1 and r["peak_memory_gib"] is None  # cuda only
    assert r["versions"]["torch"] and r["model"] == "radisim-tiny"
    assert "MFU" in stdout and "samples/s" in stdout and "data-wait" in stdout


@pytest.mark.slow
def test_cpu_run_over_the_platform_stream(tmp_path):
    """The default input path: phantom data generated, then the platform's Ray Data phase stream."""
    r, _ = _run(tmp_path, "--data-root", str(tmp_path / "data"), "--n-images", "20", "--num-cpus", "2",
                "--preprocess-cpus", "0.5")
    assert r["data"] == "ray" and r["samples_per_s"] > 0 and 0 <= r["data_wait_frac"] <= 1
    assert (tmp_path / "data" / "train").is_dir()
