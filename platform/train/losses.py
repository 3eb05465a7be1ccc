"""The phase's losses: open_clip's CLIP and SigLIP losses, and the counterfactual-caption term.

Pure PyTorch (no Ray). `compute_loss` is what one forward's outputs cost; `accumulate.contrastive_step`
builds the accumulated step from the same pieces.
"""
from __future__ import annotations

import torch


def build_loss(kind: str, rank: int, world: int, local_loss: bool, gather_with_grad: bool):
    from open_clip.loss import ClipLoss, SigLipLoss

    if kind == "siglip":
        return SigLipLoss(rank=rank, world_size=world)
    return ClipLoss(local_loss=local_loss and world > 1, gather_with_grad=gather_with_grad and world > 1,
                    cache_labels=True, rank=rank, world_size=world)


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
