"""One optimizer step's gradients over k micro-batches, as open_clip's `accum_freq` computes them.

Contract of `contrastive_step(model, micro_batches, ...)`: it leaves in `.grad` the gradient of ONE
contrastive problem over all k x b x world samples (the same gradient, up to float rounding, as a
single batch of k x b per rank would give), and returns the step's loss. It does not step the optimizer.

How (open_clip_train/train.py, `accum_freq`):
  pass 1: the features of every micro-batch, under `no_grad`, cached;
  pass 2: each micro-batch j again, with grad; the loss is built from its fresh features with the cached
          features of the other micro-batches in their places, and back-propagated; only micro-batch
          j's features carry gradient, so the k backward passes add up to the full batch's gradient.
Two things are exact here that open_clip leaves approximate: the temperature and the SigLIP bias
enter the contrastive loss of every pass, so their gradient would be counted k times; they carry
gradient in the last pass only (where DDP all-reduces). The counterfactual term is per sample: pass
j adds micro-batch j's share (1/k of its mean).

DDP: `no_sync()` on every backward but the last, so the gradient is all-reduced once per step.
Gather-with-grad (ClipLoss) and SigLIP's neighbour exchange run inside the loss on the concatenated
features of each rank, so the problem spans every rank's k x b samples.

Where the gradient is NOT the big batch's: layers whose output depends on the batch (BatchNorm in
train mode sees micro-batch statistics and updates its running stats in both passes) and dropout
(pass 1 and pass 2 draw different masks). The bundled ViT configs have neither; open_clip behaves the same.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Optional

import torch

from .collectives import Collectives, no_sync
from .losses import counterfactual_hits, counterfactual_loss, split_counterfactuals


@dataclass
class MicroBatch:
    images: torch.Tensor                      # [b, 3, H, W], normalised
    text: torch.Tensor                        # [b, L] tokens, followed by [b*k, L] counterfactual tokens with neg_mask
    neg_mask: Optional[torch.Tensor] = None   # [b, k] bool: which counterfactual exists
    group: Optional[torch.Tensor] = None      # [b] long: modality x body part (blind counterfactual hits)


@dataclass
class StepLoss:
    loss: torch.Tensor                               # detached scalar: contrastive (+ counterfactual) loss of the step
    counterfactual: Optional[torch.Tensor] = None    # detached: the counterfactual part
    cf_hits: Optional[torch.Tensor] = None           # [hits, pairs, blind hits, blind pairs] summed over micro-batches
    finite: bool = True                              # False: some rank's loss was NaN/inf; no backward was run


def contrastive_step(model: torch.nn.Module, micro: list[MicroBatch], loss_fn, kind: str, comms: Collectives,
                     autocast: Callable[[], ContextManager] = nullcontext,
                     backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
                     poison: bool = False) -> StepLoss:
    """See the module docstring. `poison`: fault injection, the loss made NaN (exercises the guard).
    The finiteness check is one collective per step (all ranks agree before any backward)."""
    k = len(micro)
    cached = _cache_features(model, micro, autocast) if k > 1 else None
    result = StepLoss(loss=torch.zeros(()))
    cf_total, hits = None, None
    for j, mb in enumerate(micro):
        last = j == k - 1
        with no_sync(model, skip=not last):
            with autocast():
                out = model(mb.images, mb.text)
                image, text, negatives = _split(out, mb)
                scale, bias = out["logit_scale"], out.get("logit_bias") if kind == "siglip" else None
                image_all, text_all = _with_cached(cached, j, image, text)
                # the temperature/bias once per step (see module docstring)
                c_scale = scale if last else scale.detach()
                c_bias = bias if (last or bias is None) else bias.detach()
                loss = loss_fn(image_all, text_all, c_scale, c_bias) if kind == "siglip" else \
                    loss_fn(image_all, text_all, c_scale)
                if negatives is not None:
                    cf = counterfactual_loss(image, text, negatives, mb.neg_mask, scale, bias) / k
                    loss = loss + cf
            if j == 0:
                if poison:
                    loss = loss * float("nan")
                if comms.any(~torch.isfinite(loss.detach())):
                    return StepLoss(loss=loss.detach(), finite=False)
                result.loss = (loss - cf).detach() if negatives is not None else loss.detach()
            if negatives is not None:
                cf_total = cf.detach() if cf_total is None else cf_total + cf.detach()
                counts = counterfactual_hits(image.detach(), text.detach(), negatives.detach(), mb.neg_mask, mb.group)
                hits = counts if hits is None else hits + counts
            backward(loss)
    if cf_total is not None:
        result.loss = result.loss + cf_total
        result.counterfactual, result.cf_hits = cf_total, hits
    return result


def _split(out: dict, mb: MicroBatch):
    image = out["image_features"]
    text, negatives = split_counterfactuals(image, out["text_features"], mb.neg_mask)
    return image, text, negatives


@torch.no_grad()
def _cache_features(model, micro: list[MicroBatch], autocast) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pass 1: (image features, caption features) of every micro-batch, without grad."""
    cached = []
    for mb in micro:
        with autocast():
            out = model(mb.images, mb.text)
        image, text, _ = _split(out, mb)
        cached.append((image, text))
    return cached


def _with_cached(cached, j: int, image: torch.Tensor, text: torch.Tensor):
    """Micro-batch j's fresh features in their place among the cached ones (the whole step's batch)."""
    if cached is None:
        return image, text
    images = [c[0] for c in cached[:j]] + [image] + [c[0] for c in cached[j + 1:]]
    texts = [c[1] for c in cached[:j]] + [text] + [c[1] for c in cached[j + 1:]]
    return torch.cat(images), torch.cat(texts)
