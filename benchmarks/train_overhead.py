"""Train overhead and data wait: the platform's Ray Train phase loop vs a plain PyTorch loop.

Ray side: one real `TorchTrainer.fit()` of `platform.train.runner.fit_phase` (the worker runs
`platform.train.loop.train_phase`, the Ray Data phase stream feeds it) in the demo configuration:
radisim-tiny, batch 64, 1 worker, 1 CPU/thread per worker, preprocess_cpus 0.5, shuffle buffer 1024.
Its per-window metrics (train/samples_per_s, train/data_wait_frac, train/first_batch_s) are read back
from the MLflow store the worker logs to, exactly as a user sees them.

Plain side: the same step in one process — same checkpoint, loss, AdamW groups, LR schedule, grad
clip, logit-scale clamp, normalisation, thread count and batch — over the same Parquet rows
pre-decoded in memory by the pipeline's own `preprocess` (so it measures compute only; no DataLoader).

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

    def steady(self) -> "Windows":
        n = 1 if len(self.seconds) > 1 else 0
        return Windows(self.samples_per_s[n:], self.data_wait_frac[n:], self.seconds[n:],
                       self.cpu_seconds[n:] if self.cpu_seconds else None)

    def rate(self) -> float:
        """Time-weighted samples/s over the windows (= samples / seconds)."""
        return sum(s * t for s, t in zip(self.samples_per_s, self.seconds)) / max(sum(self.seconds), 1e-9)

    def wait(self) -> float:
        return sum(w * t for w, t in zip(self.data_wait_frac, self.seconds)) / max(sum(self.seconds), 1e-9)


def plain_loop(step: TrainStep, images: torch.Tensor, text: torch.Tensor, steps: int, batch: int,
               log_every: int) -> Windows:
    """`steps` optimizer steps over the in-memory rows (in order, wrapping), timed in log windows."""
    n = images.shape[0] // batch
    sps, secs, cpu = [], [], []
    t0, c0 = time.perf_counter(), time.thread_time()
    for s in range(steps):
        i = (s % n) * batch
        step(images[i:i + batch], text[i:i + batch])
        if (s + 1) % log_every == 0:
            now, c = time.perf_counter(), time.thread_time()
            secs.append(now - t0)
            cpu.append(c - c0)
            sps.append(log_every * batch / secs[-1])
            t0, c0 = now, c
    return Windows(sps, [0.0] * len(sps), secs, cpu)


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
    sets = [f"curriculum.phases.{i}.{k}={v}" for i in range(fits) for k, v in (("steps", steps), ("warmup_steps", min(10, steps)))]
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
        result = fit_phase(cfg, i, mix, loop_cfg, "bench", image_size)
        wall = time.perf_counter() - t0
        hist = {k: sorted(client.get_metric_history(run_id, k), key=lambda m: m.step)
                for k in ("train/samples_per_s", "train/data_wait_frac", "train/first_batch_s")}
        sps = [m.value for m in hist["train/samples_per_s"]]
        w = Windows(sps, [m.value for m in hist["train/data_wait_frac"]], [log_every * batch / s for s in sps])
        out.append({"windows": w, "fit_wall_s": wall,
                    "first_batch_s": hist["train/first_batch_s"][0].value if hist["train/first_batch_s"] else None,
                    "startup_s": wall - sum(w.seconds), "threads": loop_cfg["torch_threads"]})
        ckpt = result.checkpoint
    return {"fits": out, "init_checkpoint": str(Path(work, "init")), "image_size": image_size,
            "train_dir": train_dir(cfg.data.root), "cfg": cfg}
