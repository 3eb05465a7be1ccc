"""The Train worker's loop for one curriculum phase.

Plain PyTorch except the lines marked `# [ray]`: the dataset shard, model preparation (DDP), the
device, checkpoint restore and `ray.train.report` (a barrier: every rank calls it equally often).
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
from typing import Any, Iterable, Iterator

import torch

from radisim.platform import storage

from .schedule import lr_factor

log = logging.getLogger(__name__)
STATE_FILE = "train_state.pt"
META_FILE = "radisim.json"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def build_loss(kind: str, rank: int, world: int, local_loss: bool, gather_with_grad: bool):
    from open_clip.loss import ClipLoss, SigLipLoss

    if kind == "siglip":
        return SigLipLoss(rank=rank, world_size=world)
    return ClipLoss(local_loss=local_loss and world > 1, gather_with_grad=gather_with_grad and world > 1,
                    cache_labels=True, rank=rank, world_size=world)


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
    of foreach's chain of elementwise ops; on radisim-tiny (12.4M params, 6.3M of them the token embedding)
    the optimizer step falls from ~44 to ~9 ms of CPU time (measured by `python -m benchmarks.run`)."""
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


def _compute_loss(loss_fn, out: dict, kind: str, neg_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The phase's contrastive loss, and its counterfactual part: with `neg_mask` [B, k], the text
    features hold the B captions followed by their B*k counterfactuals, and `counterfactual_loss` is added."""
    image, text, scale = out["image_features"], out["text_features"], out["logit_scale"]
    bias = out.get("logit_bias")
    text, negatives = split_counterfactuals(image, text, neg_mask)
    loss = loss_fn(image, text, scale, bias) if kind == "siglip" else loss_fn(image, text, scale)
    if negatives is None:
        return loss, None
    counterfactual = counterfactual_loss(image, text, negatives, neg_mask, scale, bias if kind == "siglip" else None)
    return loss + counterfactual, counterfactual


def split_counterfactuals(image: torch.Tensor, text: torch.Tensor, neg_mask: torch.Tensor | None):
    """Text features [B + B*k, D] -> the B captions' [B, D] and their counterfactuals' [B, k, D] (None without)."""
    if neg_mask is None:
        return text, None
    n = image.shape[0]
    return text[:n], text[n:].view(n, neg_mask.shape[1], -1)


@torch.no_grad()
def counterfactual_hits(image: torch.Tensor, text: torch.Tensor, negatives: torch.Tensor,
                        mask: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """[hits, pairs, blind hits, blind pairs]: of the (caption, counterfactual) pairs, how often the true
    caption scores higher with its own image, and "blind", with another image of the batch from the
    same `group` (modality and body part; pairs without one are not counted blind).

    A blind rate as high as the real one means the term is solved without looking at the image: by
    wording, or by what is typical of the body part. Another body part's image would not show that:
    with the batch's next image the demo logged 0.83 against 0.55 blind in its abnormality phase, while
    in a plain-PyTorch copy of it held-out images of the same body part, shuffled, preferred the true
    caption as often as their own images did (0.726 against 0.729).
    A grounded term still wins blind whenever the partner happens to share what is taught (another
    normal study), so blind sits between ~0.5 and the real rate, not at 0.5.
    A tensor on the features' device: the loop sums it per log window and reads it once, at the report."""
    def hits(img, valid):
        margin = (img * text).sum(-1, keepdim=True) - torch.einsum("bd,bkd->bk", img, negatives)
        return ((margin > 0) & valid).sum()

    partner, has = same_group_partner(group)
    blind_mask = mask & has.unsqueeze(1)
    return torch.stack([hits(image, mask), mask.sum(), hits(image[partner], blind_mask), blind_mask.sum()])


def same_group_partner(group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row, the next row (cyclically) of its group, and whether there is one."""
    n = group.shape[0]
    idx = torch.arange(n, device=group.device)
    ahead = (idx.unsqueeze(0) - idx.unsqueeze(1)) % n  # [i, j]: how far j is after i
    ahead = torch.where((group.unsqueeze(0) == group.unsqueeze(1)) & (ahead > 0), ahead, n)
    distance, partner = ahead.min(1)
    return partner, distance < n


def counterfactual_loss(image: torch.Tensor, text: torch.Tensor, negatives: torch.Tensor, mask: torch.Tensor,
                        logit_scale: torch.Tensor, logit_bias: torch.Tensor | None = None) -> torch.Tensor:
    """Each image against its own caption and that caption's counterfactuals [B, k, D] (masked where
    none exists). CLIP: cross-entropy of the true caption among the k + 1; SigLIP (`logit_bias` given):
    each counterfactual is one more negative pair, normalised per image as SigLIP's loss is.
    Per-sample and local to the rank: no gather, so DDP needs nothing extra."""
    neg = logit_scale * torch.einsum("bd,bkd->bk", image, negatives)
    if logit_bias is not None:
        pairs = torch.nn.functional.logsigmoid(-(neg + logit_bias))
        return -(pairs * mask).sum() / image.shape[0]
    pos = logit_scale * (image * text).sum(-1, keepdim=True)
    logits = torch.cat([pos, neg.masked_fill(~mask, float("-inf"))], dim=1)
    return torch.nn.functional.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


def train_phase(cfg: dict[str, Any]) -> None:
    """Ray Train `train_loop_per_worker` for one phase; `cfg` is built by `runner.phase_loop_config`."""
    import ray.train
    import ray.train.torch

    from radisim.platform.models import load_clip, save_checkpoint
    from radisim.platform.tracking import RunLogger

    ctx = ray.train.get_context()  # [ray]
    quiet_report_lines(cfg["train"]["ray_log_level"])
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()  # [ray]
    torch.set_num_threads(cfg["torch_threads"])
    torch.manual_seed(cfg["seed"] + rank)

    phase = cfg["phase"]
    tcfg = cfg["train"]
    dtypes = {"image": torch.uint8, "text": torch.long}
    if phase["hard_negatives"]:
        dtypes.update(neg_text=torch.long, neg_mask=torch.bool, group=torch.long)
    shard = ray.train.get_dataset_shard("train")  # [ray]

    def epoch_batches(epoch: int, step: int):  # [ray] streams this worker's split of the phase dataset
        return shard.iter_torch_batches(
            batch_size=tcfg["batch_size"], dtypes=dtypes, device=device,
            drop_last=True, local_shuffle_buffer_size=cfg["shuffle_buffer"] or None,
            local_shuffle_seed=cfg["seed"] * 1000 + epoch + step, prefetch_batches=2,
        )

    resume = ray.train.get_checkpoint()  # [ray] a retry of this phase resumes from its own checkpoint
    start = resume or cfg["init_checkpoint"]
    with start.as_directory() as ckpt_dir:
        state = torch.load(Path(ckpt_dir) / STATE_FILE, weights_only=True) if resume else None
        step = int(state["step"]) if state is not None else 0
        phase_t0 = time.perf_counter()
        first_epoch = fetch_ahead(epoch_batches(0, step))  # the stream starts while the model loads
        bundle = load_clip(cfg["model_name"], checkpoint=ckpt_dir, siglip=cfg["siglip"])
    model = bundle.model
    model.output_dict = True
    if "visual" in phase["freeze"]:
        model.lock_image_tower()
    if "text" in phase["freeze"]:
        model.lock_text_tower()
    layout = use_channels_last(model) if tcfg["channels_last"] else torch.contiguous_format
    model = ray.train.torch.prepare_model(model)  # [ray] DDP + device placement
    raw = getattr(model, "module", model)
    if cfg["compile"]:
        model = torch.compile(model)

    optimizer = build_optimizer(raw, phase["lr"], tcfg, device)
    total, accum = phase["steps"], tcfg["grad_accum"]
    sched = cfg["schedule"]
    factor = lambda s: lr_factor(sched["offset"] + s, sched["total"], sched["warmup"], sched["kind"], sched["min_ratio"])  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    resumed = {}
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        align_optimizer_state(optimizer)
        resumed = {"train/resumed_from_step": step}
        if rank == 0:
            say(f"[{phase['name']}] resumed from the checkpoint at step {step}")
    loss_fn = build_loss(phase["loss"], rank, world, tcfg["local_loss"], tcfg["gather_with_grad"])
    use_bf16 = device.type == "cuda" and tcfg["precision"] in ("auto", "bf16")
    mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)

    logger = RunLogger(cfg["tracking_uri"], cfg["phase_run_id"]) if rank == 0 and cfg["phase_run_id"] else None
    parent_logger = RunLogger(cfg["tracking_uri"], cfg["parent_run_id"]) if logger and cfg["parent_run_id"] else None
    window = {"loss": 0.0, "n": 0, "wait": 0.0, "t0": time.perf_counter(), "samples": 0}
    first_batch_s = None
    epoch = 0
    model.train()
    while step < total:
        it = first_epoch if epoch == 0 else iter(epoch_batches(epoch, step))
        micro = 0
        while step < total:
            t_wait = time.perf_counter()
            batch = next(it, None)
            if first_batch_s is None:
                # Pipeline start-up (actor/task spawn, first reads; counted from the stream's start, which
                # overlaps the model load) is reported on its own, not as steady-state data wait: it is
                # paid once per phase, however long the phase.
                first_batch_s = time.perf_counter() - phase_t0
                window["t0"] = time.perf_counter()
            else:
                window["wait"] += time.perf_counter() - t_wait
            if batch is None:
                break
            images, text, neg_mask = normalise(batch["image"], mean, std, layout), batch["text"], batch.get("neg_mask")
            if neg_mask is not None:  # one text-tower pass over captions and counterfactuals together
                text = torch.cat([text, batch["neg_text"].flatten(0, 1)])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                out = model(images, text)
                loss, counterfactual = _compute_loss(loss_fn, out, phase["loss"], neg_mask)
            if tcfg["debug_nan_at_step"] == step + 1:  # fault injection: exercises the guard below
                loss = loss * float("nan")
            if _any_rank(not torch.isfinite(loss).item(), world):
                # Retrying would hit the same NaN: stop the phase cleanly (no checkpoint of the bad
                # state) and let the driver raise, naming phase and step. The last good checkpoint stays.
                if rank == 0:
                    say(f"[{phase['name']}] non-finite loss at step {step + 1}: stopping the phase")
                    # Result.metrics only carries checkpointed reports: tell the driver through storage.
                    storage.write_json(cfg["status_path"], {"nonfinite_step": step + 1})
                break
            (loss / accum).backward()
            window["loss"] += loss.item()
            if counterfactual is not None:
                window["counterfactual"] = window.get("counterfactual", 0.0) + counterfactual.item()
                feats = out["image_features"]
                counts = counterfactual_hits(feats, *split_counterfactuals(feats, out["text_features"], neg_mask),
                                             neg_mask, batch["group"])
                window["cf_hits"] = window.get("cf_hits", 0) + counts
            window["n"] += 1
            window["samples"] += images.shape[0]
            micro += 1
            if micro % accum:
                continue
            if tcfg["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["grad_clip"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            with torch.no_grad():  # open_clip clamps the temperature the same way
                raw.logit_scale.clamp_(0, math.log(100))
            step += 1
            if step % tcfg["log_every"] == 0 or step == total:
                extra = {"train/first_batch_s": first_batch_s, **resumed} if first_batch_s is not None and not window.get("reported") else {}
                window["reported"] = True
                _report(cfg, raw, step, total, window, world, optimizer, scheduler, logger, parent_logger, rank, extra)
        epoch += 1
        if batch is not None and step < total:  # left the inner loop on a non-finite loss
            break
        if batch is None and micro == 0:
            raise RuntimeError(f"phase {phase['name']!r}: the dataset shard yielded no full batch of {tcfg['batch_size']}")
    for lg in (logger, parent_logger):
        if lg:
            lg.flush()


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


def _any_rank(flag: bool, world: int) -> bool:
    """True on every rank if `flag` is True on any: all ranks must take the same branch at a barrier."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    torch.distributed.all_reduce(t)
    return t.item() > 0


def _report(cfg, raw, step, total, window, world, optimizer, scheduler, logger, parent_logger, rank, extra) -> None:
    import ray.train

    from radisim.platform.models import save_checkpoint

    elapsed = time.perf_counter() - window["t0"]
    metrics = {
        "train/loss": window["loss"] / max(1, window["n"]),
        "train/lr": optimizer.param_groups[0]["lr"],
        "train/samples_per_s": window["samples"] * world / max(elapsed, 1e-9),
        "train/data_wait_frac": window["wait"] / max(elapsed, 1e-9),
        "train/logit_scale": float(raw.logit_scale.detach().exp()),
        "train/step": step,
        **extra,
    }
    if "counterfactual" in window:  # the part of train/loss that the counterfactual captions add
        metrics["train/counterfactual_loss"] = window.pop("counterfactual") / max(1, window["n"])
        hits, pairs, blind, blind_pairs = window.pop("cf_hits").tolist()
        if pairs:  # is the term learned from the image, or without looking at it?
            metrics["train/counterfactual_acc"] = hits / pairs
        if blind_pairs:
            metrics["train/counterfactual_blind_acc"] = blind / blind_pairs
    phase = cfg["phase"]
    if rank == 0:
        say(f"[{phase['name']}] step {step}/{total} loss {metrics['train/loss']:.3f} "
            f"lr {metrics['train/lr']:.2e} {metrics['train/samples_per_s']:.0f} samples/s "
            f"data-wait {metrics['train/data_wait_frac']:.1%}")
    if logger:
        logger.log(metrics, step)
        parent_logger and parent_logger.log(metrics, cfg["step_offset"] + step)
    window.update(loss=0.0, n=0, wait=0.0, samples=0, t0=time.perf_counter())
    if step % cfg["train"]["checkpoint_every"] and step != total:
        ray.train.report(metrics)  # [ray]
        return
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:  # one writer; the others report None at the same barrier
            save_checkpoint(raw, cfg["model_name"], tmp, extra={"phase": phase["name"], "step": step})
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step},
                       os.path.join(tmp, STATE_FILE))
            Path(tmp, META_FILE).write_text(json.dumps(
                {"model_name": cfg["model_name"], "phase": phase["name"], "step": step, "steps": total, "complete": step == total}))
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)  # [ray]
