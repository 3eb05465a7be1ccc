"""All CPU benchmarks in one run: Ray Train overhead (like-for-like, with open_clip_train's loop as the
anchor), data wait, Ray Data vs DataLoader (cold pass and steady state), FLOP utilisation, eval cache.
Ratios are measured side by side in the same run; on a shared machine the training comparison is
checked on CPU seconds per step first (benchmarks/cpu_clock.py).

    python -m benchmarks.run --quick --out bench.json     # ~10 min on 2 idle CPUs
    python -m benchmarks.run --out bench.json             # longer windows, 2 phase fits

Writes FILE (JSON: train_overhead_ratio (null unless like_for_like), like_for_like,
openclip_train_samples_per_s, data_wait_frac, raydata_vs_dataloader_ratio (cold pass),
raydata_vs_dataloader_steady_ratio (512 px JPEG -> 224, per worker CPU-second), cpu_flop_util,
eval_cache_speedup, cpu_model; details under train/data/flops/eval/ingest/ingest_steady/environment)
and the Markdown report `<model>_<hardware>_<date>.md` next to it (or in --report-dir). GPU figures:
benchmarks/gpu_check.py and benchmarks/device_decode.py.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock


@dataclass(frozen=True)
class Sizes:
    steps: int           # optimizer steps per Ray phase fit
    log_every: int       # window length (steps); the first window is not steady state
    fits: int            # phase fits (start-up is paid per fit)
    plain_steps: int     # plain-loop steps, run twice (before and after the Ray fit)
    train_images: int    # phantom train images (5 caption rows each)
    eval_images: int
    n_bootstrap: int
    ingest_rows: int
    steady_rows: int     # rows of 512 px JPEG for the steady-state ingest pair


QUICK = Sizes(steps=30, log_every=5, fits=1, plain_steps=15, train_images=500, eval_images=240, n_bootstrap=100,
              ingest_rows=3000, steady_rows=768)
FULL = Sizes(steps=80, log_every=10, fits=2, plain_steps=40, train_images=1200, eval_images=700, n_bootstrap=1000,
             ingest_rows=6000, steady_rows=4096)


class LoadSampler:
    """The 1-minute load average every few seconds, for the report (timings are only as good as the load)."""

    def __init__(self, every_s: float = 5.0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def _run(self, every_s):
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(every_s)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


@contextmanager
def local_ray():
    """A private local Ray for the benchmark (the machine may run other engineers' clusters too), set up
    as the platform's local Ray is: 4 logical CPUs on 2 cores (FIELD-NOTES) and `raysession.LOCAL_ENV`;
    worker logs not echoed, always shut down."""
    import ray

    from radisim.platform.raysession import configure_data_context, use_local_env

    with mock.patch.dict(os.environ):  # the caller's process gets its own environment back
        use_local_env()
        try:
            ray.init(address="local", num_cpus=4, object_store_memory=300 * 2**20, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"RAY_DATA_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}})
            configure_data_context()
            yield
        finally:
            ray.shutdown()


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(sizes: Sizes, work: Path, model: str = "radisim-tiny", batch: int = 64) -> dict:
    """Everything, in an order that puts the two sides of each ratio next to each other in time."""
    import torch

    from benchmarks import eval_cache, flops, ingest_throughput, train_overhead
    from benchmarks.cpu_clock import LIKE_FOR_LIKE_TOLERANCE, like_for_like
    from radisim.curriculum.phantom import write_phantom_dataset
    from radisim.platform.data.pipeline import train_dir

    # One thread on both sides of every ratio: the FLOP accounting counts the training thread's CPU time,
    # and the Ray fit is pinned to it too (the demo's worker uses the host's cores: runner.worker_threads).
    threads = 1
    data_root = work / "phantom"
    write_phantom_dataset(data_root, n_train_images=sizes.train_images, n_eval_images=sizes.eval_images, seed=0,
                          progress=False)

    say("FLOP count of one step")
    # the plain step starts from the same weights as the Ray fit (seed 0, as runner.save_init_checkpoint)
    step = train_overhead.TrainStep(model, threads, total_steps=sizes.steps)
    n_rows = batch * max(2, sizes.log_every)
    c0 = time.thread_time()
    images, text = train_overhead.predecode(train_dir(str(data_root)), step.image_size, model, rows=n_rows)
    # what the Ray pipeline spends per row (read + decode + tokenize, one thread): CPU the 2 cores must
    # find besides the training step, which the pre-decoded plain loop never pays
    decode_cpu_ms_per_row = (time.thread_time() - c0) / n_rows * 1e3
    flops_per_step, per_op = flops.count_flops(lambda: step(images[:batch], text[:batch]))
    optimizer_ms = train_overhead.optimizer_step_cpu_ms(step)
    del step, images, text

    plain_kw = dict(train_dir=train_dir(str(data_root)), model=model, threads=threads, steps=sizes.plain_steps,
                    batch=batch, log_every=sizes.log_every, total_steps=sizes.steps, rows=n_rows, runs=1)
    with local_ray():
        cpus = _worker_cpus()
        say(f"plain PyTorch loop in a Ray worker ({cpus} CPU, {threads} thread), before: {sizes.plain_steps} steps")
        plain_runs = [train_overhead.plain_in_worker(num_cpus=cpus, **plain_kw)]
        say(f"Ray Train: {sizes.fits} phase fit(s) x {sizes.steps} steps, batch {batch}")
        fit = train_overhead.ray_fit(str(data_root), str(work / "train"), sizes.steps, sizes.log_every, batch,
                                     fits=sizes.fits, model=model, threads=threads)
        say("plain PyTorch loop in a Ray worker, after")
        plain_runs.append(train_overhead.plain_in_worker(num_cpus=cpus, **plain_kw))
        say(f"open_clip_train's train_one_epoch in a Ray worker: {sizes.plain_steps} steps")
        anchor = train_overhead.openclip_in_worker(model, threads, sizes.plain_steps, batch, sizes.log_every, cpus)
        say("eval suite: cold, then cached")
        ev = eval_cache.eval_cold_vs_cached(fit["init_checkpoint"], str(data_root), str(work / "eval-cache"),
                                            sizes.n_bootstrap, model=model)
    ev.update(n_images=sizes.eval_images, n_bootstrap=sizes.n_bootstrap)
    plain = [w for r in plain_runs for w in r["windows"]]
    peaks = [p for r in plain_runs for p in r["peaks"]]

    say(f"ingest: torch DataLoader vs Ray Data, {sizes.ingest_rows} rows (benchmarks/ingest_throughput.py)")
    manifest = ingest_throughput.make_manifest(work / "ingest", sizes.ingest_rows, 256)
    t_rows, t_s = ingest_throughput.bench_torch(manifest, 2, 64, model, 128)
    r_rows, r_s = ingest_throughput.bench_ray(manifest, 2, 64, model, 128)
    ingest = {"rows": sizes.ingest_rows, "workers": 2, "src_size": 256, "image_size": 64, "batch": 128,
              "torch_dataloader": {"rows": t_rows, "seconds": t_s, "rows_per_s": t_rows / t_s},
              "ray_data": {"rows": r_rows, "seconds": r_s, "rows_per_s": r_rows / r_s}}
    say(f"steady-state ingest: {sizes.steady_rows} rows of 512 px JPEG -> 224 px, 2 workers each side")
    steady = ingest_throughput.steady_pair(work / "steady", "jpeg", sizes.steady_rows, workers=2, model=model)

    ray_steady = [f["windows"].steady() for f in fit["fits"]]
    plain_steady = [p.steady() for p in plain]
    plain_cpu_rate = flops_per_step * sizes.log_every * sum(len(p.cpu_seconds) for p in plain_steady) / \
        sum(sum(p.cpu_seconds) for p in plain_steady)
    ray_sps = sum(w.rate() * sum(w.seconds) for w in ray_steady) / sum(sum(w.seconds) for w in ray_steady)
    ray_wait = sum(w.wait() * sum(w.seconds) for w in ray_steady) / sum(sum(w.seconds) for w in ray_steady)
    plain_rates = [p.steady().rate() for p in plain]
    plain_sps = sum(plain_rates) / len(plain_rates)
    peak_wall, peak_cpu = max(p["wall"] for p in peaks), max(p["cpu"] for p in peaks)
    achieved_wall = flops_per_step * ray_sps / batch
    cpu = {"ray": _mean_cpu([f["cpu"] for f in fit["fits"]]),
           "plain": _mean_cpu([train_overhead.plain_cpu(p, sizes.log_every) for p in plain]),
           "openclip_train": train_overhead.plain_cpu(anchor, sizes.log_every)}
    same = cpu["ray"]["thread_s_per_step"] is not None and like_for_like(cpu["ray"]["thread_s_per_step"],
                                                                         cpu["plain"]["thread_s_per_step"])
    return {
        # a ratio only where both sides did the same work per sample (CPU seconds of the training thread)
        "train_overhead_ratio": overhead_ratio(cpu, same),
        "like_for_like": same,
        "openclip_train_samples_per_s": anchor.steady().rate(),
        "raydata_vs_dataloader_steady_ratio": steady["ratio_per_cpu_s"],
        "data_wait_frac": ray_wait,
        "raydata_vs_dataloader_ratio": ingest["ray_data"]["rows_per_s"] / ingest["torch_dataloader"]["rows_per_s"],
        # per CPU-second of the training thread vs per CPU-second of the GEMM thread: robust to load
        "cpu_flop_util": plain_cpu_rate / peak_cpu,
        "eval_cache_speedup": ev["speedup"],
        "model": model,
        "train": {
            "batch": batch, "threads": threads, "steps": sizes.steps, "log_every": sizes.log_every,
            "ray_samples_per_s": ray_sps, "plain_samples_per_s": plain_sps,
            "plain_before": plain_rates[0], "plain_after": plain_rates[-1],
            "plain_windows": [p.samples_per_s for p in plain],
            "ray_windows": [x for f in fit["fits"] for x in f["windows"].samples_per_s],
            "ray_wait_windows": [x for f in fit["fits"] for x in f["windows"].data_wait_frac],
            "startup_s": [f["startup_s"] for f in fit["fits"]],
            "first_batch_s": [f["first_batch_s"] for f in fit["fits"]],
            "fit_wall_s": [f["fit_wall_s"] for f in fit["fits"]],
            "plain_data": "the same Parquet rows pre-decoded in memory by pipeline.preprocess (no DataLoader)",
            "decode_cpu_ms_per_row": decode_cpu_ms_per_row,
            "plain_step_cpu_s": sum(sum(p.cpu_seconds) for p in plain_steady) / sum(len(p.cpu_seconds) for p in plain_steady) / sizes.log_every,
            "plain_process": "a Ray worker started by the same raylet as the Train worker, same CPUs and threads",
            "plain_malloc_env": plain_runs[0]["malloc_env"],
            "wall_ratio_measured": ray_sps / plain_sps,
            "cpu_per_step": cpu,
            "like_for_like_tolerance": LIKE_FOR_LIKE_TOLERANCE,
            "openclip_train_windows": anchor.samples_per_s,
        },
        "data": {"data_wait_frac_steady": ray_wait,
                 "data_wait_frac_all_windows": [f["windows"].wait() for f in fit["fits"]],
                 "preprocess_cpus": fit["cfg"].data.preprocess_cpus, "shuffle_buffer": fit["cfg"].data.shuffle_buffer},
        "flops": {"threads": threads, "flops_per_step": flops_per_step, "per_op": per_op,
                  "peak_cpu_gflops": peak_cpu / 1e9, "peak_wall_gflops": peak_wall / 1e9,
                  "peak_samples": [{k: v / 1e9 for k, v in p.items()} for p in peaks],
                  "achieved_cpu_gflops": plain_cpu_rate / 1e9,
                  "achieved_wall_gflops_ray": achieved_wall / 1e9,
                  "util_wall_ray": achieved_wall / peak_wall,
                  "util_wall_plain": flops_per_step * plain_sps / batch / peak_wall,
                  "optimizer_step_cpu_ms": optimizer_ms},
        "eval": ev,
        "ingest": ingest,
        "ingest_steady": steady,
    }


def overhead_ratio(cpu: dict, same: bool) -> float | None:
    """Ray / plain in samples per CPU-second of each side's training process (plain process CPU per step
    over Ray's): on a shared machine the two loops get different shares of a core, so their wall rates
    measure the neighbours; their CPU per step measures the loops. None unless like-for-like."""
    if not same:
        return None
    return cpu["plain"]["process_s_per_step"] / cpu["ray"]["process_s_per_step"]


def _worker_cpus() -> float:
    from radisim.platform.config import TrainConfig

    return TrainConfig().cpus_per_worker


def _mean_cpu(rows: list[dict]) -> dict:
    """Step-weighted mean of `steady_cpu` / `plain_cpu` rows."""
    rows = [r for r in rows if r["steps"]]
    steps = sum(r["steps"] for r in rows)
    if not steps:
        return {"steps": 0, "thread_s_per_step": None, "process_s_per_step": None, "thread_cpu_share": None}
    mean = {k: sum(r[k] * r["steps"] for r in rows) / steps
            for k in ("thread_s_per_step", "process_s_per_step", "thread_cpu_share")}
    return {"steps": steps, **mean}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short windows, one phase fit: < 10 min on 2 CPUs")
    p.add_argument("--out", default="bench.json", help="JSON result file")
    p.add_argument("--report-dir", help="where the Markdown report goes (default: next to --out)")
    p.add_argument("--model", default="radisim-tiny")
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    from radisim.jobs.common import quiet_logs

    from benchmarks.report import environment, markdown, report_name

    quiet_logs()
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    with LoadSampler() as load, tempfile.TemporaryDirectory(prefix="radisim-bench-") as tmp:
        result = run(QUICK if args.quick else FULL, Path(tmp), args.model, args.batch)
    result["environment"] = environment()
    result["cpu_model"] = result["environment"]["cpu_model"]
    result["load"] = {"start": list(load_start), "end": list(os.getloadavg()),
                      "max_1min": max(load.samples or [0.0]), "mean_1min": sum(load.samples) / max(1, len(load.samples))}
    result["wall_s"] = time.perf_counter() - t0
    result["mode"] = "quick" if args.quick else "full"
    command = "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    md = Path(args.report_dir or out.parent) / report_name(args.model, result["environment"]["date"])
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(markdown(result, command))
    print(md.read_text(), flush=True)
    say(f"wrote {out} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
