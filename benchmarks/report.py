"""Where a benchmark run's figures go: versions and hardware, the JSON object, the Markdown report
named `<model>_<hardware>_<date>.md` (STYLE.md #10)."""
from __future__ import annotations

import os
import platform as stdlib_platform
import re
import time
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return stdlib_platform.processor() or stdlib_platform.machine()


def hardware_tag(threads: int | None = None) -> str:
    """e.g. `cpu2-amd-epyc`: logical CPUs and the CPU model, slugged for a file name."""
    slug = re.sub(r"[^a-z0-9]+", "-", cpu_model().lower()).strip("-")[:32]
    return f"cpu{os.cpu_count()}-{slug}"


def environment() -> dict:
    import ray
    import torch

    try:
        import open_clip

        oc = open_clip.__version__
    except Exception:  # pragma: no cover
        oc = "unavailable"
    return {
        "versions": {"python": stdlib_platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
                     "open_clip": oc},
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "machine": stdlib_platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
        "torch_config": {"mkldnn": torch.backends.mkldnn.is_available(),
                         "blas": _blas()},
    }


def _blas() -> str:
    import torch

    cfg = torch.__config__.show()
    m = re.search(r"BLAS_INFO=(\w+)", cfg)
    return m.group(1) if m else "unknown"


def report_name(model: str, date: str, threads: int | None = None) -> str:
    return f"{model}_{hardware_tag(threads)}_{date}.md"


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _x(x) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def _num(x, fmt: str = ".1f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _overhead(r: dict) -> str:
    """The ratio only where the CPU-seconds check passed; else the words, as the issue asks."""
    if r.get("like_for_like") is False:
        return "not like-for-like"
    return _x(r["train_overhead_ratio"])


def _cpu_rows(r: dict) -> list[str]:
    cpu = r["train"].get("cpu_per_step")
    if not cpu:
        return []
    cells = "; ".join(f"{side} {_num(c['thread_s_per_step'], '.3f')} s thread / {_num(c['process_s_per_step'], '.3f')} s process"
                      f" (thread got {_num(c['thread_cpu_share'] and 100 * c['thread_cpu_share'], '.0f')}% of wall)"
                      for side, c in cpu.items())
    return [f"| 1 | CPU seconds per step (like-for-like: training-thread CPU within "
            f"{r['train'].get('like_for_like_tolerance', 0.05):.0%}) | {cells} | same work |"]


def _steady_rows(r: dict) -> list[str]:
    s = r.get("ingest_steady")
    if not s:
        return []
    t, y = s["torch_dataloader"], s["ray_data"]
    return [f"| 2 | steady-state ingest, {s['format']} {s['src_size']} -> {s['image_size']} px, {s['workers']} workers: "
            f"Ray Data / DataLoader images per worker CPU-s | {_x(s['ratio_per_cpu_s'])} ({y['images_per_worker_cpu_s']:.0f} vs "
            f"{t['images_per_worker_cpu_s']:.0f}; all processes {_x(s['ratio_tree_cpu_s'])}; Ray fixed "
            f"{y['fixed_cores']:.2f} cores; start-up {y['startup_s']:.1f} s vs {t['startup_s']:.1f} s) | >= 1.0x |"]


def markdown(r: dict, command: str) -> str:
    env, t, f, e, i = r["environment"], r["train"], r["flops"], r["eval"], r["ingest"]
    v = env["versions"]
    lines = [
        f"# {r['model']} on {env['cpu_model']} ({env['logical_cpus']} CPUs), {env['date']}",
        "",
        "Timings on a shared machine: wall-clock figures carry the neighbours' load (see the load average); "
        "CPU-second figures do not.",
        "",
        f"Command: `{command}`  ",
        f"Versions: python {v['python']}, torch {v['torch']}, ray {v['ray']}, open_clip {v['open_clip']}  ",
        f"Load average (1 min) seen: start {r['load']['start'][0]:.1f}, end {r['load']['end'][0]:.1f}, "
        f"max sampled {r['load']['max_1min']:.1f} (the machine is shared; ratios are measured side by side).  ",
        f"Wall time of the run: {r['wall_s']:.0f} s.",
        "",
        "| # | figure | value | target |",
        "|---|---|---|---|",
        f"| 1 | train overhead: Ray Train phase loop / plain PyTorch loop, samples per CPU-second of the training process | "
        f"{_overhead(r)} (wall: {t['ray_samples_per_s']:.1f} vs {t['plain_samples_per_s']:.1f} samples/s) | >= 0.98x |",
        *_cpu_rows(r),
        f"| 1 | anchor: open_clip_train `train_one_epoch`, same model, batch, threads, synthetic rows | "
        f"{_num(r.get('openclip_train_samples_per_s'))} samples/s | - |",
        f"| 1 | start-up per phase fit (fit wall - training windows) | "
        + ", ".join(f"{s:.1f} s" for s in t["startup_s"]) + f" (first batch {', '.join(f'{s:.1f} s' for s in t['first_batch_s'])}) | - |",
        f"| 2 | data wait, demo configuration (steady state) | {_pct(r['data_wait_frac'])} | < 5% |",
        f"| 2 | Ray Data / torch DataLoader, decode+resize+tokenize images/s | {_x(r['raydata_vs_dataloader_ratio'])} "
        f"({i['ray_data']['rows_per_s']:.0f} vs {i['torch_dataloader']['rows_per_s']:.0f}) | >= 1.0x |",
        *_steady_rows(r),
        f"| 3 | CPU FLOP utilisation: training FLOP per CPU-second / fp32 matmul peak per CPU-second ({f['threads']} thread) | "
        f"{_pct(r['cpu_flop_util'])} ({f['achieved_cpu_gflops']:.1f} / {f['peak_cpu_gflops']:.1f} GFLOP/s) | >= 50% |",
        f"| 3 | same, wall-clock (Ray loop samples/s; load-sensitive) | {_pct(f['util_wall_ray'])} "
        f"({f['achieved_wall_gflops_ray']:.1f} / {f['peak_wall_gflops']:.1f} GFLOP/s) | - |",
        f"| 4 | eval suite ({e['cold']['n_subtasks']} subtasks) cold / cached wall time | {_x(r['eval_cache_speedup'])} "
        f"({e['cold']['wall_s']:.1f} s vs {e['cached']['wall_s']:.1f} s; embedding stage {e['embed_cold_s']:.1f} s vs {e['embed_cached_s']:.2f} s) | - |",
        "| 5 | GPU figures | see `benchmarks/gpu_check.py` / `gpu_check.sh` (H200) | - |",
        "",
        "## Set-up",
        f"- Model {r['model']}, batch {t['batch']}, 1 Train worker, {t['threads']} torch thread(s) "
        f"(demo configuration); {t['steps']} steps per fit, log window {t['log_every']} steps; steady state = windows after the first.",
        f"- Plain loop: same checkpoint, loss, AdamW groups, schedule, grad clip and threads; data = the same "
        f"Parquet rows pre-decoded in memory by `pipeline.preprocess` (no DataLoader). Run before and after the Ray fit: "
        f"{t['plain_before']:.1f} and {t['plain_after']:.1f} samples/s. Decoding (read + PNG decode + tokenize) costs "
        f"{t.get('decode_cpu_ms_per_row', float('nan')):.2f} ms CPU per row, i.e. "
        f"{t.get('decode_cpu_ms_per_row', float('nan')) * t['batch'] / 1e3 / t.get('plain_step_cpu_s', float('nan')):.1%} "
        f"on top of a training step's {t.get('plain_step_cpu_s', float('nan')):.2f} s CPU: work the Ray run does on the same "
        f"2 cores and the pre-decoded plain loop does not.",
        f"- Ray windows (samples/s): {', '.join(f'{x:.1f}' for x in t['ray_windows'])}; data-wait per window: "
        f"{', '.join(f'{x:.1%}' for x in t['ray_wait_windows'])}.",
        f"- FLOPs: {f['flops_per_step'] / 1e9:.2f} GFLOP per step (forward+backward, batch {t['batch']}, FlopCounterMode; "
        f"CPU SDPA counted); by op: " + ", ".join(f"{k} {v / 1e9:.2f}" for k, v in f["per_op"].items()) + ". "
        f"Peak: best fp32 1024^3 matmul rate, {f['threads']} thread(s), measured before and after the training runs "
        f"(GFLOP/s per CPU-s / per wall-s: " + ", ".join(f"{p['cpu']:.1f}/{p['wall']:.1f}" for p in f["peak_samples"]) + "). "
        f"AdamW step CPU time over this model's gradients: foreach {f['optimizer_step_cpu_ms']['foreach']:.1f} ms, "
        f"fused {f['optimizer_step_cpu_ms']['fused']:.1f} ms (the loop now uses fused).",
        f"- Ingest: {i['rows']} rows, {i['workers']} workers each, {i['src_size']} px PNG -> {i['image_size']} px, "
        f"batch {i['batch']} (`benchmarks/ingest_throughput.py`).",
        f"- Eval: {e['n_images']} phantom eval images, n_bootstrap {e['n_bootstrap']}; cold timings "
        + ", ".join(f"{k} {v:.1f}s" for k, v in e["cold"]["timings"].items()) + "; cached "
        + ", ".join(f"{k} {v:.1f}s" for k, v in e["cached"]["timings"].items()) + ".",
    ]
    if r.get("notes"):
        lines += ["", "## Notes", *[f"- {n}" for n in r["notes"]]]
    return "\n".join(lines) + "\n"
