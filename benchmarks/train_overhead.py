"""Train overhead and data wait: the platform's Ray Train phase loop vs a plain PyTorch loop.

Ray side: one real `TorchTrainer.fit()` of `platform.train.runner.fit_phase` (the worker runs
`platform.train.loop.train_phase`, the Ray Data phase stream feeds it) in the demo configuration:
radisim-tiny, batch 64, 1 worker, 1 CPU/thread per worker, preprocess_cpus 0.5, shuffle buffer 1024.
Its per-window metrics (train/samples_per_s, train/data_wait_frac, train/first_batch_s) are read back
from the MLflow store the worker logs to, exactly as a user sees them.

Plain side: the same step in one process — same checkpoint, loss, AdamW groups, LR schedule, grad
clip, logit-scale clamp, normalisation, thread count and batch — over the same Parquet rows
pre-decoded in memory by the pipeline's own `preprocess` (so it measures compute only; no DataLoader).

Like for like: the plain loop runs in a Ray worker process too (`plain_in_worker`), started by the
same raylet with the same environment (allocator settings `raysession.MALLOC_ENV` reach a process only
at its start, so a loop in the driver runs under a different allocator), the same CPU reservation and
torch threads, the same channels-last layout. Each side's CPU seconds per step are recorded: the plain
loop reads its own clocks, the Ray worker is sampled from outside (`cpu_clock.ProcessSampler`,
aligned with the MLflow window timestamps). The training thread's CPU per sample must agree within
5% (`cpu_clock.like_for_like`) before a samples/s ratio means anything.

Anchor: open_clip's own `open_clip_train.train.train_one_epoch` on the same model, batch and
synthetic rows, with open_clip_train's optimizer groups and cosine schedule (`openclip_in_worker`).

Steady state on both sides = every log window after the first (the first one carries the first
step's one-off costs); the Ray fit's start-up (worker group, model load, pipeline start, final
checkpoint, teardown) is reported separately as fit wall time minus the training windows.
"""
from __future__ import annotations

import functools
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.cpu_clock import ProcessSampler


class TrainStep:
    """One optimizer step exactly as platform/train/loop.py takes it (1 worker, fp32, no accumulation)."""

    def __init__(self, model_name: str, threads: int, checkpoint: str | None = None, train_cfg=None,
                 lr: float = 1e-3, total_steps: int = 1000, warmup: int = 10):
        from radisim.platform.config import TrainConfig
        from radisim.platform.models import load_clip
        from radisim.platform.train import loop
        from radisim.platform.train.schedule import lr_factor

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.t = train_cfg or TrainConfig()
        bundle = load_clip(model_name, checkpoint=checkpoint)
        self.image_size, self.context_length = bundle.image_size, bundle.context_length
        self.model = bundle.model
        self.model.output_dict = True
        self.model.train()
        self.loss_fn = loop.build_loss("clip", 0, 1, self.t.local_loss, self.t.gather_with_grad)
        self.opt = _optimizer(loop, self.model, lr, self.t)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, total_steps, warmup, "cosine", 0.1))
        self.mean = torch.tensor(loop.CLIP_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(loop.CLIP_STD).view(1, 3, 1, 1)
        self._normalise = _normaliser(loop, self.model, self.t)

    def synthetic_batch(self, batch: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (batch, self.image_size, self.image_size), dtype=torch.uint8, generator=g)
        return images, torch.randint(1, 49000, (batch, self.context_length), generator=g)

    def __call__(self, images: torch.Tensor, text: torch.Tensor) -> float:
        x = self._normalise(images, self.mean, self.std)
        out = self.model(x, text)
        loss = self.loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        if not torch.isfinite(loss).item():
            raise FloatingPointError("non-finite loss")
        loss.backward()
        value = loss.item()
        if self.t.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.t.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.sched.step()
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, math.log(100))
        return value


def _normaliser(loop, model, t):
    """The loop's `normalise`, in the memory layout it gives the image tower: channels-last (and `model`
    turned so) unless `t.channels_last` is off or the loop predates it."""
    if getattr(t, "channels_last", False) and hasattr(loop, "use_channels_last"):
        return functools.partial(loop.normalise, memory_format=loop.use_channels_last(model))
    return loop.normalise


def _optimizer(loop, model, lr, t):
    """The loop's optimizer: its own builder when it has one, else the AdamW it used to construct inline."""
    if hasattr(loop, "build_optimizer"):
        return loop.build_optimizer(model, lr, t.model_dump(), torch.device("cpu"))
    return torch.optim.AdamW(loop.param_groups(model, t.weight_decay), lr=lr, betas=(t.beta1, t.beta2), eps=t.eps)


def optimizer_step_cpu_ms(step: TrainStep, repeats: int = 5) -> dict[str, float]:
    """CPU ms of one AdamW step over the model's real gradients: foreach (the loop's old default) vs fused."""
    from radisim.platform.train.loop import param_groups

    images, text = step.synthetic_batch(8)
    x = step._normalise(images, step.mean, step.std)
    out = step.model(x, text)
    step.loss_fn(out["image_features"], out["text_features"], out["logit_scale"]).backward()
    ms = {}
    for name, kw in (("foreach", {"foreach": True}), ("fused", {"fused": True})):
        state = {id(p): p.detach().clone() for p in step.model.parameters()}
        opt = torch.optim.AdamW(param_groups(step.model, step.t.weight_decay), lr=0.0, betas=(step.t.beta1, step.t.beta2),
                                eps=step.t.eps, **kw)
        opt.step()
        t0 = time.thread_time()
        for _ in range(repeats):
            opt.step()
        ms[name] = (time.thread_time() - t0) / repeats * 1e3
        with torch.no_grad():  # lr 0 moves nothing but weight decay is lr-scaled too: restore anyway
            for p in step.model.parameters():
                p.copy_(state[id(p)])
    step.model.zero_grad(set_to_none=True)
    return ms


def predecode(train_dir: str, image_size: int, model_name: str, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `rows` training rows through the pipeline's own `preprocess`, held in memory."""
    import pyarrow.dataset as pads

    from radisim.platform.data.pipeline import TRAIN_COLUMNS, preprocess

    table = pads.dataset(train_dir, format="parquet").head(rows, columns=TRAIN_COLUMNS)
    batch = {c: np.asarray(table.column(c).to_pylist(), dtype=object) for c in ("image_id", "image", "caption")}
    out = preprocess(batch, image_size, model_name)
    return torch.from_numpy(out["image"]), torch.from_numpy(out["text"])


@dataclass
class Windows:
    """Per-log-window figures of a training run: samples/s and data-wait fraction, window length in s."""

    samples_per_s: list[float]
    data_wait_frac: list[float]
    seconds: list[float]
    cpu_seconds: list[float] | None = None  # the training thread's CPU time (plain loop only)
    process_cpu_seconds: list[float] | None = None  # the whole process's CPU time (plain loop only)

    def steady(self) -> "Windows":
        n = 1 if len(self.seconds) > 1 else 0
        return Windows(self.samples_per_s[n:], self.data_wait_frac[n:], self.seconds[n:],
                       self.cpu_seconds[n:] if self.cpu_seconds else None,
                       self.process_cpu_seconds[n:] if self.process_cpu_seconds else None)

    def rate(self) -> float:
        """Time-weighted samples/s over the windows (= samples / seconds)."""
        return sum(s * t for s, t in zip(self.samples_per_s, self.seconds)) / max(sum(self.seconds), 1e-9)

    def wait(self) -> float:
        return sum(w * t for w, t in zip(self.data_wait_frac, self.seconds)) / max(sum(self.seconds), 1e-9)


def plain_loop(step: TrainStep, images: torch.Tensor, text: torch.Tensor, steps: int, batch: int,
               log_every: int) -> Windows:
    """`steps` optimizer steps over the in-memory rows (in order, wrapping), timed in log windows."""
    n = images.shape[0] // batch
    sps, secs, cpu, pcpu = [], [], [], []
    t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
    for s in range(steps):
        i = (s % n) * batch
        step(images[i:i + batch], text[i:i + batch])
        if (s + 1) % log_every == 0:
            now, c, p = time.perf_counter(), time.thread_time(), time.process_time()
            secs.append(now - t0)
            cpu.append(c - c0)
            pcpu.append(p - p0)
            sps.append(log_every * batch / secs[-1])
            t0, c0, p0 = now, c, p
    return Windows(sps, [0.0] * len(sps), secs, cpu, pcpu)


def ray_fit(data_root: str, work: str, steps: int, log_every: int, batch: int, fits: int = 1,
            model: str = "radisim-tiny", shuffle_buffer: int | None = None, threads: int = 1) -> dict:
    """`fits` TorchTrainer fits of `steps` steps each (as curriculum phases 1..fits), in the caller's
    Ray session, on `threads` torch threads (the plain loop's, for a like-for-like ratio). Returns
    per-fit windows, first-batch and start-up seconds, and the init checkpoint."""
    from mlflow.tracking import MlflowClient

    from radisim.platform.config import load_job_config
    from radisim.platform.data.pipeline import phase_counts, train_dir
    from radisim.platform.train.runner import fit_phase, phase_loop_config, save_init_checkpoint
    from radisim.platform.tracking import Tracker

    uri = f"sqlite:///{Path(work, 'mlflow.db')}"
    # warm-up may not exceed a (tiny) phase: the spec validator refuses it
    # Both towers train, as in the plain loop: the spec's coarse phases freeze the image tower, which
    # halves the step's work (what made an earlier "Ray / plain" read 1.8-1.9x).
    sets = [f"curriculum.phases.{i}.{k}={v}" for i in range(fits)
            for k, v in (("steps", steps), ("warmup_steps", min(10, steps)), ("freeze", "[]"))]
    cfg = load_job_config(None, sets, base={
        "data": {"root": data_root, **({} if shuffle_buffer is None else {"shuffle_buffer": shuffle_buffer})},
        "model": {"name": model},
        "train": {"batch_size": batch, "log_every": log_every, "checkpoint_every": 10**6, "torch_threads": threads,
                  "storage_path": str(Path(work, "ray_results")), "max_failures": 0},
        "tracking": {"tracking_uri": uri, "experiment": "bench"},
    }).resolved()
    tracker = Tracker("bench", uri)
    client = MlflowClient(uri)
    ckpt, image_size = save_init_checkpoint(cfg, str(Path(work, "init")))
    # every tag at keep-probability 1: the largest stream, so the steps fit in one pass over the data
    mix = {tag: 1.0 for tag in phase_counts(train_dir(cfg.data.root))}
    out = []
    for i in range(fits):
        run_id = tracker.start_run(f"bench-p{i + 1}")
        loop_cfg = phase_loop_config(cfg, i, ckpt, uri, None, run_id, 0)
        loop_cfg["status_path"] = str(Path(work, f"p{i + 1}.status.json"))
        t0 = time.perf_counter()
        with ProcessSampler("RayTrainWorker") as sampler:  # the Train worker's CPU, from outside
            result = fit_phase(cfg, i, mix, loop_cfg, "bench", image_size)
        wall = time.perf_counter() - t0
        hist = {k: sorted(client.get_metric_history(run_id, k), key=lambda m: m.step)
                for k in ("train/samples_per_s", "train/data_wait_frac", "train/first_batch_s")}
        sps = [m.value for m in hist["train/samples_per_s"]]
        w = Windows(sps, [m.value for m in hist["train/data_wait_frac"]], [log_every * batch / s for s in sps])
        out.append({"windows": w, "fit_wall_s": wall, "cpu": steady_cpu(sampler, hist["train/samples_per_s"], log_every),
                    "first_batch_s": hist["train/first_batch_s"][0].value if hist["train/first_batch_s"] else None,
                    "startup_s": wall - sum(w.seconds), "threads": loop_cfg["torch_threads"]})
        ckpt = result.checkpoint
    return {"fits": out, "init_checkpoint": str(Path(work, "init")), "image_size": image_size,
            "train_dir": train_dir(cfg.data.root), "cfg": cfg}


def steady_cpu(sampler: ProcessSampler, window_metrics: list, log_every: int) -> dict:
    """CPU seconds per step of the sampled Train worker over its steady windows (from the end of the
    first logged window to the end of the last: MLflow timestamps are the windows' ends)."""
    if len(window_metrics) < 2 or not sampler.samples:
        return {"steps": 0, "thread_s_per_step": None, "process_s_per_step": None, "thread_cpu_share": None}
    t0, t1 = window_metrics[0].timestamp / 1e3, window_metrics[-1].timestamp / 1e3
    steps = (len(window_metrics) - 1) * log_every
    cpu = sampler.between(t0, t1)
    return {"steps": steps, "thread_s_per_step": cpu["busiest_thread"] / steps,
            "process_s_per_step": cpu["process"] / steps,
            # < 1: the training thread waited for a core (contention) or for data
            "thread_cpu_share": cpu["busiest_thread"] / max(cpu["wall"], 1e-9)}


def plain_cpu(w: Windows, log_every: int) -> dict:
    """The same figures as `steady_cpu`, from a plain loop's own clocks."""
    s = w.steady()
    steps = len(s.seconds) * log_every
    return {"steps": steps, "thread_s_per_step": sum(s.cpu_seconds) / steps,
            "process_s_per_step": sum(s.process_cpu_seconds) / steps,
            "thread_cpu_share": sum(s.cpu_seconds) / max(sum(s.seconds), 1e-9)}


def plain_in_worker(train_dir: str, model: str, threads: int, steps: int, batch: int, log_every: int,
                    total_steps: int, num_cpus: float, rows: int, runs: int = 2) -> dict:
    """The plain loop (and the fp32 matmul peak, before and after it) inside a Ray worker process that
    asks for the Train worker's CPUs: the same process start, environment and thread settings as the
    Ray side. `runs` plain loops, one after the other. Needs a connected Ray."""
    import ray

    @ray.remote(num_cpus=num_cpus)
    def job():
        from benchmarks import flops

        step = TrainStep(model, threads, total_steps=total_steps)
        images, text = predecode(train_dir, step.image_size, model, rows=rows)
        peaks = [flops.matmul_peak(threads)]
        loops = [plain_loop(step, images, text, steps, batch, log_every) for _ in range(runs)]
        peaks.append(flops.matmul_peak(threads))
        return {"windows": loops, "peaks": peaks, "torch_threads": torch.get_num_threads(),
                "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}}

    return ray.get(job.remote())


class _TimedBatches:
    """open_clip_train's `dataloader` contract (iterable, `num_batches`, `num_samples`) over batches held
    in memory, taking each side's clocks whenever the trainer asks for the next batch."""

    def __init__(self, batches: list, steps: int):
        self.batches, self.num_batches = batches, steps
        self.num_samples = steps * len(batches[0][0])
        self.marks: list[tuple[float, float, float]] = []

    def __len__(self):
        return self.num_batches

    def __iter__(self):
        for i in range(self.num_batches):
            self.marks.append((time.perf_counter(), time.thread_time(), time.process_time()))
            yield self.batches[i % len(self.batches)]
        self.marks.append((time.perf_counter(), time.thread_time(), time.process_time()))


def openclip_windows(marks: list, batch: int, log_every: int) -> Windows:
    """Log windows of `log_every` steps from the per-step clock marks of `_TimedBatches`."""
    sps, secs, cpu, pcpu = [], [], [], []
    for k in range(log_every, len(marks), log_every):
        (w0, c0, p0), (w1, c1, p1) = marks[k - log_every], marks[k]
        secs.append(w1 - w0)
        cpu.append(c1 - c0)
        pcpu.append(p1 - p0)
        sps.append(log_every * batch / secs[-1])
    return Windows(sps, [0.0] * len(sps), secs, cpu, pcpu)


def openclip_train_loop(model_name: str, threads: int, steps: int, batch: int, log_every: int,
                        lr: float = 1e-3, warmup: int = 10) -> Windows:
    """open_clip_train's `train_one_epoch` (fp32, 1 process, no accumulation) for `steps` steps on
    synthetic rows, with its own AdamW parameter groups (gains, biases, logit_scale without weight
    decay), cosine schedule, ClipLoss and grad clip, on the same model and weights (seed 0) as
    `TrainStep`. Images are normalised before the loop, as open_clip's DataLoader transform does."""
    from types import SimpleNamespace

    from open_clip.loss import ClipLoss
    from open_clip_train.scheduler import cosine_lr
    from open_clip_train.train import train_one_epoch

    from radisim.platform.config import TrainConfig
    from radisim.platform.models import load_clip
    from radisim.platform.train.loop import CLIP_MEAN, CLIP_STD, normalise

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t = TrainConfig()
    bundle = load_clip(model_name)
    model = bundle.model
    model.output_dict = True
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
    named = list(model.named_parameters())
    optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in named if exclude(n, p) and p.requires_grad], "weight_decay": 0.0},
         {"params": [p for n, p in named if not exclude(n, p) and p.requires_grad], "weight_decay": t.weight_decay}],
        lr=lr, betas=(t.beta1, t.beta2), eps=t.eps)
    g = torch.Generator().manual_seed(0)
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    batches = []
    for _ in range(2):
        images = torch.randint(0, 256, (batch, bundle.image_size, bundle.image_size), dtype=torch.uint8, generator=g)
        batches.append((normalise(images, mean, std), torch.randint(1, 49000, (batch, bundle.context_length), generator=g)))
    loader = _TimedBatches(batches, steps)
    args = SimpleNamespace(device="cpu", precision="fp32", distill=False, accum_freq=1, skip_scheduler=False,
                           horovod=False, grad_clip_norm=t.grad_clip or None, log_every_n_steps=10**9,
                           batch_size=batch, world_size=1, rank=0, local_rank=0, wandb=False, save_logs=False)
    scheduler = cosine_lr(optimizer, lr, warmup, steps)
    loss = ClipLoss(local_loss=False, gather_with_grad=False, cache_labels=True, rank=0, world_size=1)
    data = {"train": SimpleNamespace(dataloader=loader, set_epoch=lambda epoch: None)}  # open_clip_train's DataInfo
    train_one_epoch(model, data, loss, 0, optimizer, None, scheduler, None, args)
    return openclip_windows(loader.marks, batch, log_every)


def openclip_in_worker(model: str, threads: int, steps: int, batch: int, log_every: int, num_cpus: float) -> Windows:
    """`openclip_train_loop` in a Ray worker process started like the Train worker. Needs a connected Ray."""
    import ray

    return ray.get(ray.remote(num_cpus=num_cpus)(openclip_train_loop).remote(model, threads, steps, batch, log_every))
