"""The fit part of gpu_check.sh: the real train job, one `use_gpu` Ray Train worker (NCCL process group),
bf16, open_clip accumulation, SigLIP, checkpoints, a resume and the zero-shot evaluation.

  run 1  `python -m radisim.jobs.train --config <work>/gpu_check_fit.yaml`, stopped (SIGINT to its
         process group) as soon as phase 1 has persisted a checkpoint before its last step;
  run 2  the same command: the job resumes phase 1 from that checkpoint (Ray Train restores it, the
         optimizer and GradScaler state with it), trains phase 2 from phase 1's checkpoint, evaluates.
It then checks what the job printed and logged (process group, precision, resume step, stage scores)
and prints the phases' samples/s and data-wait as the platform logged them to MLflow.

    python benchmarks/gpu_check_fit.py --work radisim_work/gpu_check_fit            # on the GPU machine
    python benchmarks/gpu_check_fit.py --device cpu --model radisim-tiny --size 64 --steps 6 --checkpoint-every 2 \\
        --batch-size 8 --n-images 60                                                  # CPU plumbing (gloo)
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--model", default="radisim-vit-b16")
    p.add_argument("--size", type=int, default=224, help="phantom image size (the model's input size)")
    p.add_argument("--n-images", type=int, default=600)
    p.add_argument("--data-root", default=None, help="default: <work>/data (generated once, with an eval split)")
    p.add_argument("--work", default="radisim_work/gpu_check_fit")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per phase (two SigLIP phases)")
    p.add_argument("--checkpoint-every", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128, help="per micro-batch")
    p.add_argument("--grad-accum", type=int, default=2)
    p.add_argument("--cpus-per-worker", type=float, default=4.0)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per run of the job")
    args = p.parse_args(argv)
    if args.checkpoint_every >= args.steps:
        p.error("--checkpoint-every must be below --steps (run 1 is stopped after a mid-phase checkpoint)")
    return args


def job_config(args, work: Path) -> dict:
    gpu = args.device == "cuda"
    return {
        "data": {"root": str(Path(args.data_root or work / "data").resolve()), "preprocess_cpus": 1.0,
                 "phantom": {"size": args.size, "n_train_images": args.n_images, "n_eval_images": 240}},
        "model": {"name": args.model},
        "train": {"use_gpu": gpu, "num_workers": 1, "cpus_per_worker": args.cpus_per_worker,
                  "batch_size": args.batch_size, "grad_accum": args.grad_accum,
                  # compile off: three fits would each pay its warm-up; the step benchmark measures it
                  "precision": "bf16" if gpu else "fp32", "compile": False, "prefetch_batches": 4,
                  "log_every": max(1, args.checkpoint_every // 2), "checkpoint_every": args.checkpoint_every,
                  "storage_path": str((work / "ray").resolve()), "max_failures": 0},
        "curriculum": {"name": "gpu_check", "phases": [
            {"name": "modality", "steps": args.steps, "lr": 1e-4, "warmup_steps": min(5, args.steps // 2), "loss": "siglip"},
            {"name": "anatomy", "steps": args.steps, "lr": 1e-4, "warmup_steps": min(5, args.steps // 2), "loss": "siglip"}]},
        "eval": {"n_bootstrap": 100, "cache_dir": str((work / "embedding_cache").resolve())},
        "tracking": {"tracking_uri": f"sqlite:///{(work / 'mlflow.db').resolve()}", "experiment": "gpu-check",
                     "run_name": "gpu-check"},
    }


def mid_phase_checkpoint(store: Path) -> int | None:
    """The step of a persisted phase-1 checkpoint that is not the phase's last, if any."""
    for meta in store.glob("gpu-check-p1-*/checkpoint_*/radisim.json"):
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue  # being written
        if not info.get("complete"):
            return int(info["step"])
    return None


def start_job(cfg_path: Path, log_path: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "radisim.jobs.train", "--config", str(cfg_path)],
                            stdout=log_path.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def stop(proc: subprocess.Popen, grace_s: float = 60.0) -> None:
    """SIGINT to the job's process group (what Ctrl-C does: Ray shuts down), SIGKILL after `grace_s`."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def phase_metrics(uri: str) -> dict[str, dict[str, float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("gpu-check")
    out = {}
    for run in client.search_runs([exp.experiment_id], "tags.phase != ''"):
        m = run.data.metrics
        out[run.data.tags["phase"]] = {k: m[k] for k in ("train/samples_per_s", "train/data_wait_frac",
                                                        "train/first_batch_s", "time/phase_seconds") if k in m}
    return out


def run(args) -> dict:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cfg = job_config(args, work)
    cfg_path = work / "gpu_check_fit.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    if not (Path(cfg["data"]["root"]) / "train").is_dir():
        from radisim.curriculum.phantom import write_phantom_dataset

        write_phantom_dataset(cfg["data"]["root"], n_train_images=args.n_images, n_eval_images=240,
                              size=args.size, progress=False, cohort_fraction=0.25)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    store = Path(cfg["train"]["storage_path"])
    first = start_job(cfg_path, work / "run1.log", env)
    t0, stopped_at = time.perf_counter(), None
    while first.poll() is None and time.perf_counter() - t0 < args.timeout:
        stopped_at = mid_phase_checkpoint(store)
        if stopped_at is not None:
            break
        time.sleep(0.5)
    if first.poll() is None:
        stop(first)
    run1 = (work / "run1.log").read_text()
    if stopped_at is None:
        raise SystemExit(f"error: run 1 (exit code {first.returncode}) persisted no mid-phase checkpoint within "
                         f"{args.timeout:.0f}s:\n{run1[-4000:]}")
    t1 = time.perf_counter()
    second = start_job(cfg_path, work / "run2.log", env)
    try:
        rc = second.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        stop(second)
        rc = -1
    run2 = (work / "run2.log").read_text()
    resumed_wall_s = time.perf_counter() - t1
    backend = "nccl" if args.device == "cuda" else "gloo"
    checks = {
        "run 2 exit code 0": rc == 0,
        f"process group {backend}": f"process group {backend}" in run1 + run2,
        "precision as configured": f"precision {cfg['train']['precision']}" in run2,
        f"phase 1 resumed from step {stopped_at} or later": any(
            f"resumed from the checkpoint at step {s}" in run2 for s in range(stopped_at, args.steps)),
        "zero-shot evaluation ran": "zero-shot stage scores" in run2,
    }
    result = {"checks": checks, "stopped_at_step": stopped_at, "run2_wall_s": resumed_wall_s,
              "phases": phase_metrics(cfg["tracking"]["tracking_uri"]) if rc == 0 else {},
              "config": cfg}
    if not all(checks.values()):
        failed = [k for k, ok in checks.items() if not ok]
        raise SystemExit(f"error: gpu_check fit failed {failed}\n--- run 1 ---\n{run1[-3000:]}\n--- run 2 ---\n{run2[-5000:]}")
    return result


def report(r: dict) -> str:
    lines = ["fit: 1 worker, " + ", ".join(k for k in r["checks"]),
             f"  run 1 stopped after its checkpoint at step {r['stopped_at_step']}; run 2 took {r['run2_wall_s']:.0f}s"]
    for phase, m in r["phases"].items():
        lines.append(f"  {phase:<10} {m.get('train/samples_per_s', float('nan')):8.1f} samples/s (last log window)"
                     f"  data-wait {m.get('train/data_wait_frac', float('nan')):.1%}"
                     f"  first batch {m.get('train/first_batch_s', float('nan')):.1f}s"
                     f"  phase {m.get('time/phase_seconds', float('nan')):.0f}s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    result = run(parse_args(argv))
    print(report(result), flush=True)
    out = Path(parse_args(argv).work) / "gpu_check_fit.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
