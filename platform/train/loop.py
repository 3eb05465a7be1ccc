"""The Train worker's loop for one curriculum phase.

Plain PyTorch except the lines marked `# [ray]`: the dataset shard, model preparation (DDP), the
device, checkpoint restore and `ray.train.report` (a barrier: every rank calls it equally often).
Collectives the loop issues itself go through `collectives.Collectives` (device-checked for NCCL);
gradient accumulation is open_clip's (`accumulate.contrastive_step`).
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import torch

from radisim.platform import storage

from .accumulate import MicroBatch, StepLoss, contrastive_step
from .collectives import Collectives
from .losses import (  # noqa: F401  (re-exported: the loop's losses, by their old address)
    _compute_loss, build_loss, counterfactual_hits, counterfactual_loss, same_group_partner, split_counterfactuals,
)
from .precision import resolve_precision
from .schedule import lr_factor

log = logging.getLogger(__name__)
#: A phase checkpoint's optimizer, scheduler, GradScaler state and step (resume within a phase).
TRAIN_STATE_FILE = "train_state.pt"
META_FILE = "radisim.json"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """open_clip's rule: no decay on gains, biases, norms, embeddings-like 1-D params and the logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exclude = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exclude else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def build_optimizer(model: torch.nn.Module, lr: float, tcfg: dict, device: torch.device) -> torch.optim.AdamW:
    """AdamW over `param_groups`. Fused where torch has the kernel (CPU, CUDA): one pass per step instead
    of foreach's chain of elementwise ops, which matters where the token embedding is a large share of
    the parameters (figures: docs/performance.md)."""
    return torch.optim.AdamW(param_groups(model, tcfg["weight_decay"]), lr=lr, betas=(tcfg["beta1"], tcfg["beta2"]),
                             eps=tcfg["eps"], fused=torch.device(device).type in ("cpu", "cuda"))


def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """uint8 [B, H, W] grayscale -> float [B, 3, H, W] in CLIP's normalisation, in `memory_format`."""
    x = images.float().div_(255.0).unsqueeze(1)
    return ((x - mean) / std).contiguous(memory_format=memory_format)


def use_channels_last(model: torch.nn.Module) -> torch.memory_format:
    """The image tower's 4-D weights in NHWC (`torch.channels_last`), the layout oneDNN's CPU and
    cuDNN's convolutions run fastest in; its inputs must follow (`normalise(..., memory_format)`). The
    model computes the same (image features within 2e-6). Measured on 2 cores, radisim-tiny, batch 64:
    a training step 9% shorter with 2 or 3 counterfactuals per caption (0.65 s against 0.72, 0.74 against
    0.81), the image tower's forward and backward alone 23% (0.27 s against 0.35). Returns the format."""
    model.visual.to(memory_format=torch.channels_last)
    return torch.channels_last


def align_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Each state tensor (Adam's moments) in its parameter's memory layout. `load_state_dict` keeps the
    layout the state was saved in, and torch's fused AdamW steps parameter, gradient and moments by
    their memory order: a channels-last weight with contiguous moments (a checkpoint written with
    `train.channels_last` off) would be updated with another element's moments, silently."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def freeze_towers(model: torch.nn.Module, towers: list[str]) -> list[torch.nn.Module]:
    """Lock the named towers (no gradient) and return their modules, which `train_mode` keeps in eval
    mode for the whole phase: `lock_image_tower()` alone leaves BatchNorm updating its running
    statistics and dropout active in train mode, so a "frozen" tower would still change."""
    frozen: list[torch.nn.Module] = []
    if "visual" in towers:
        model.lock_image_tower()
        frozen.append(model.visual)
    if "text" in towers:
        model.lock_text_tower()
        text = getattr(model, "text", None)  # CustomTextCLIP (HF text towers) keeps it in one module
        frozen += [text] if text is not None else [model.transformer, model.token_embedding, model.ln_final]
    return frozen


def train_mode(model: torch.nn.Module, frozen: list[torch.nn.Module]) -> None:
    model.train()
    for module in frozen:
        module.eval()


def unused_logit_bias(model: torch.nn.Module, loss: str) -> None:
    """A SigLIP curriculum's model carries `logit_bias` in every phase; a CLIP phase does not use it.
    DDP (find_unused_parameters=False) would wait forever for its gradient: it is fixed in such a phase."""
    if loss != "siglip" and getattr(model, "logit_bias", None) is not None:
        model.logit_bias.requires_grad_(False)


def load_train_state(ckpt_dir: str | os.PathLike) -> dict[str, Any]:
    """Optimizer/scheduler/scaler state and step of a resumed phase; onto the CPU first (`map_location`):
    without it every rank of a node would load onto the device the tensors were saved from (cuda:0)."""
    return torch.load(Path(ckpt_dir) / TRAIN_STATE_FILE, map_location="cpu", weights_only=True)


def step_groups(epoch_stream: Callable[[int], Iterator[dict]], accum: int, batch_size: int, name: str) -> Iterator[list[dict]]:
    """The micro-batches of one optimizer step at a time, epoch after epoch, for ever. An epoch's tail
    shorter than `accum` micro-batches is dropped, never carried into the next epoch's first step (a
    step then mixes no two shuffles and the step count per epoch is what the plan says)."""
    epoch = 0
    while True:
        group: list[dict] = []
        full = 0
        for batch in epoch_stream(epoch):
            group.append(batch)
            if len(group) == accum:
                yield group
                full, group = full + 1, []
        if full == 0:
            raise RuntimeError(f"phase {name!r}: the dataset shard yielded no full step of {accum} x {batch_size} rows")
        epoch += 1


class Window:
    """What is logged per log window: loss, data wait, samples, counterfactual counts."""

    def __init__(self):
        self.reset()
        self.reported = False

    def reset(self) -> None:
        self.loss, self.n, self.wait, self.samples, self.t0 = 0.0, 0, 0.0, 0, time.perf_counter()
        self.counterfactual, self.cf_hits = None, None

    def add(self, out: StepLoss, samples: int) -> None:
        self.loss += float(out.loss)
        self.n += 1
        self.samples += samples
        if out.counterfactual is not None:
            self.counterfactual = float(out.counterfactual) + (self.counterfactual or 0.0)
            self.cf_hits = out.cf_hits if self.cf_hits is None else self.cf_hits + out.cf_hits

    def metrics(self, world: int) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        out = {"train/loss": self.loss / max(1, self.n), "train/samples_per_s": self.samples * world / elapsed,
               "train/data_wait_frac": self.wait / elapsed}
        if self.counterfactual is not None:  # the part of train/loss that the counterfactual captions add
            out["train/counterfactual_loss"] = self.counterfactual / max(1, self.n)
            hits, pairs, blind, blind_pairs = self.cf_hits.tolist()
            if pairs:  # is the term learned from the image, or without looking at it?
                out["train/counterfactual_acc"] = hits / pairs
            if blind_pairs:
                out["train/counterfactual_blind_acc"] = blind / blind_pairs
        return out


def train_phase(cfg: dict[str, Any]) -> None:
    """Ray Train `train_loop_per_worker` for one phase; `cfg` is built by `runner.phase_loop_config`.
    One loop of four named steps: fetch, forward/loss/backward (accumulated), optimizer step,
    report/checkpoint; it ends when the phase's steps are done or a loss is non-finite."""
    import ray.train
    import ray.train.torch

    from radisim.platform.tracking import RunLogger

    ctx = ray.train.get_context()  # [ray]
    quiet_report_lines(cfg["train"]["ray_log_level"])
    device = ray.train.torch.get_device()  # [ray]
    torch.set_num_threads(cfg["torch_threads"])
    torch.manual_seed(cfg["seed"] + ctx.get_world_rank())
    run = PhaseRun(cfg, ctx.get_world_rank(), ctx.get_world_size(), device)
    logger = RunLogger(cfg["tracking_uri"], cfg["phase_run_id"]) if run.rank == 0 and cfg["phase_run_id"] else None
    parent = RunLogger(cfg["tracking_uri"], cfg["parent_run_id"]) if logger and cfg["parent_run_id"] else None
    try:
        groups = run.start(ray.train.get_dataset_shard("train"), ray.train.get_checkpoint())  # [ray]
        finite = True
        while run.step < run.total and finite:
            group = run.fetch(groups)
            out = run.forward_backward(group)
            finite = out.finite
            if finite:
                run.optimizer_step()
                run.window.add(out, sum(len(b["image"]) for b in group))
                run.report(logger, parent)
            else:
                run.stop_nonfinite()
    finally:  # queued metrics reach MLflow even when the phase raises
        for lg in (logger, parent):
            if lg:
                lg.flush()


class PhaseRun:
    """The state of one worker's phase: model (DDP-wrapped), optimizer, schedule, scaler, step, window."""

    def __init__(self, cfg: dict[str, Any], rank: int, world: int, device: torch.device):
        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device
        self.phase, self.tcfg = cfg["phase"], cfg["train"]
        self.total, self.accum = self.phase["steps"], self.tcfg["grad_accum"]
        self.step = 0
        self.window = Window()
        self.first_batch_s: Optional[float] = None
        self.resumed: dict[str, int] = {}
        self.comms = Collectives(device, world)
        self.precision = resolve_precision(self.tcfg["precision"], device)
        self.mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)

    # ------------------------------------------------------------------ start: model, state, stream
    def start(self, shard, resume) -> Iterator[list[dict]]:
        import ray.train.torch

        from radisim.platform.models import load_clip

        cfg, tcfg, phase = self.cfg, self.tcfg, self.phase
        dtypes = {"image": torch.uint8, "text": torch.long}
        if phase["hard_negatives"]:
            dtypes.update(neg_text=torch.long, neg_mask=torch.bool, group=torch.long)

        def epoch_batches(epoch: int):  # [ray] streams this worker's split of the phase dataset
            return shard.iter_torch_batches(
                batch_size=tcfg["batch_size"], dtypes=dtypes, device=self.device,
                drop_last=True, local_shuffle_buffer_size=cfg["shuffle_buffer"] or None,
                local_shuffle_seed=cfg["seed"] * 1000 + epoch + self.step, prefetch_batches=tcfg["prefetch_batches"],
            )

        start = resume or cfg["init_checkpoint"]  # a retry of this phase resumes from its own checkpoint
        self.t0 = time.perf_counter()
        with start.as_directory() as ckpt_dir:
            state = load_train_state(ckpt_dir) if resume else None
            self.step = int(state["step"]) if state is not None else 0
            first_epoch = fetch_ahead(epoch_batches(0))  # the stream starts while the model loads
            # the weights come from the checkpoint, once: no hub download for a phase's workers
            bundle = load_clip(cfg["model_name"], checkpoint=ckpt_dir, siglip=cfg["siglip"])
        model = bundle.model
        model.output_dict = True
        self.bundle_config, self.tokenizer = bundle.config, bundle.tokenizer
        frozen = freeze_towers(model, phase["freeze"])  # weights locked either way
        self.frozen = frozen if phase.get("freeze_norm_stats", True) else []  # eval mode: statistics too
        unused_logit_bias(model, phase["loss"])
        self.layout = use_channels_last(model) if tcfg["channels_last"] else torch.contiguous_format
        model = ray.train.torch.prepare_model(model)  # [ray] DDP + device placement
        self.raw = getattr(model, "module", model)
        self.model = torch.compile(model) if cfg["compile"] else model
        self.optimizer = build_optimizer(self.raw, phase["lr"], tcfg, self.device)
        sched = cfg["schedule"]
        factor = lambda s: lr_factor(sched["offset"] + s, sched["total"], sched["warmup"], sched["kind"], sched["min_ratio"])  # noqa: E731
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.scaler = self.precision.grad_scaler()
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            align_optimizer_state(self.optimizer)
            self.resumed = {"train/resumed_from_step": self.step}
            if self.rank == 0:
                say(f"[{phase['name']}] resumed from the checkpoint at step {self.step}")
        self.loss_fn = build_loss(phase["loss"], self.rank, self.world, tcfg["local_loss"], tcfg["gather_with_grad"])
        train_mode(self.model, self.frozen)
        if self.rank == 0:
            say(f"[{phase['name']}] {self.world} worker(s), process group {self.comms.backend or 'none'}, device "
                f"{self.device}, precision {self.precision.name}, contrastive batch "
                f"{tcfg['batch_size'] * self.accum * self.world} ({tcfg['batch_size']} x {self.accum} x {self.world})")
        return step_groups(lambda e: first_epoch if e == 0 else iter(epoch_batches(e)), self.accum,
                           tcfg["batch_size"], phase["name"])

    # ------------------------------------------------------------------ 1. fetch
    def fetch(self, groups: Iterator[list[dict]]) -> list[dict]:
        t = time.perf_counter()
        group = next(groups)
        if self.first_batch_s is None:
            # Pipeline start-up (actor/task spawn, first reads; counted from the stream's start, which
            # overlaps the model load) is reported on its own, not as steady-state data wait.
            self.first_batch_s = time.perf_counter() - self.t0
            self.window.t0 = time.perf_counter()
        else:
            self.window.wait += time.perf_counter() - t
        return group

    # ------------------------------------------------------------------ 2. forward, loss, backward
    def forward_backward(self, group: list[dict]) -> StepLoss:
        micro = []
        for b in group:
            text, neg_mask = b["text"], b.get("neg_mask")
            if neg_mask is not None:  # one text-tower pass over captions and counterfactuals together
                text = torch.cat([text, b["neg_text"].flatten(0, 1)])
            micro.append(MicroBatch(normalise(b["image"], self.mean, self.std, self.layout), text, neg_mask, b.get("group")))
        poison = self.tcfg["debug_nan_at_step"] == self.step + 1  # fault injection: exercises the guard
        return contrastive_step(self.model, micro, self.loss_fn, self.phase["loss"], self.comms,
                                autocast=self.precision.autocast(), backward=lambda loss: self.scaler.scale(loss).backward(),
                                poison=poison)

    # ------------------------------------------------------------------ 3. optimizer step
    def optimizer_step(self) -> None:
        if self.tcfg["grad_clip"]:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.raw.parameters(), self.tcfg["grad_clip"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        with torch.no_grad():  # open_clip clamps the temperature the same way
            self.raw.logit_scale.clamp_(0, math.log(100))
        self.step += 1

    def stop_nonfinite(self) -> None:
        """Retrying would hit the same NaN: the phase stops cleanly (no checkpoint of the bad state) and
        the driver raises, naming phase and step. The last good checkpoint stays."""
        if self.rank == 0:
            say(f"[{self.phase['name']}] non-finite loss at step {self.step + 1}: stopping the phase")
            # Result.metrics only carries checkpointed reports: tell the driver through storage.
            storage.write_json(self.cfg["status_path"], {"nonfinite_step": self.step + 1})

    # ------------------------------------------------------------------ 4. report / checkpoint
    def report(self, logger, parent) -> None:
        """Log every `log_every` steps, checkpoint every `checkpoint_every` steps, each on its own
        cadence (and both at the phase's last step). `ray.train.report` is a barrier: every rank takes
        the same branches (they depend on the step only)."""
        import ray.train

        tcfg, last = self.tcfg, self.step == self.total
        log_now = self.step % tcfg["log_every"] == 0 or last
        ckpt_now = self.step % tcfg["checkpoint_every"] == 0 or last
        if not (log_now or ckpt_now):
            return
        metrics: dict[str, Any] = {"train/step": self.step}
        if log_now:
            metrics = self._log_window(logger, parent)
        checkpoint = None
        with tempfile.TemporaryDirectory() as tmp:
            if ckpt_now and self.rank == 0:  # one writer; the others report None at the same barrier
                self._save(tmp)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)  # [ray]

    def _log_window(self, logger, parent) -> dict[str, Any]:
        metrics = {**self.window.metrics(self.world), "train/lr": self.optimizer.param_groups[0]["lr"],
                   "train/logit_scale": float(self.raw.logit_scale.detach().exp()), "train/step": self.step}
        if not self.window.reported:
            metrics.update({"train/first_batch_s": self.first_batch_s, **self.resumed})
            self.window.reported = True
        if self.rank == 0:
            say(f"[{self.phase['name']}] step {self.step}/{self.total} loss {metrics['train/loss']:.3f} "
                f"lr {metrics['train/lr']:.2e} {metrics['train/samples_per_s']:.0f} samples/s "
                f"data-wait {metrics['train/data_wait_frac']:.1%}")
        if logger:
            logger.log(metrics, self.step)
            parent and parent.log(metrics, self.cfg["step_offset"] + self.step)
        self.window.reset()
        return metrics

    def _save(self, directory: str) -> None:
        from radisim.platform.models import save_checkpoint

        cfg, phase = self.cfg, self.phase
        save_checkpoint(self.raw, cfg["model_name"], directory, extra={"phase": phase["name"], "step": self.step},
                        config=self.bundle_config, tokenizer=self.tokenizer)
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "scaler": self.scaler.state_dict(), "step": self.step}, os.path.join(directory, TRAIN_STATE_FILE))
        Path(directory, META_FILE).write_text(json.dumps(
            {"model_name": cfg["model_name"], "phase": phase["name"], "step": self.step, "steps": self.total,
             "complete": self.step == self.total, "precision": self.precision.name}))


def fetch_ahead(batches: Iterable[Any]) -> Iterator[Any]:
    """iter(batches), its first item already being fetched in a helper thread: Ray Data starts a phase's
    stream (coordinator and reader processes, first reads: 5-12 s on 2 cores) only when a batch is asked
    for, and the model load (2-4 s) need not wait for it. Errors surface at the first next()."""
    it = iter(batches)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="radisim-first-batch")
    first = pool.submit(next, it, _END)
    pool.shutdown(wait=False)

    def chained() -> Iterator[Any]:
        item = first.result()
        if item is not _END:
            yield item
            yield from it

    return chained()


_END = object()


def quiet_report_lines(level: str) -> None:
    """`train.ray_log_level` for the one Ray Train logger that RunConfig's LoggingConfig misses: Ray 2.60
    names the logger of `ray.train.report` ("Reporting training result N: <every metric>" per report)
    after its file path, outside `ray.train`, so it reaches the console through the root logger."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # Ray moved it: the lines show, nothing breaks
        return
    if isinstance(getattr(context, "logger", None), logging.Logger):
        context.logger.setLevel(level)


def say(line: str) -> None:
    """Progress for the driver's console. Not `print`: Ray Train V2 patches print into its logger
    and also tees it to stdout, which shows every line twice."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
