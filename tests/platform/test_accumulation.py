"""Contrastive accumulation is open_clip's `accum_freq`: k micro-batches of b give the gradient of one
batch of k*b (same samples), for CLIP and SigLIP, on 1 and 2 gloo workers (DDP, gather-with-grad)."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from radisim.platform.train.accumulate import MicroBatch, contrastive_step
from radisim.platform.train.collectives import Collectives
from radisim.platform.train.losses import build_loss

#: A ViT/transformer CLIP (LayerNorm only: per-sample, so the big batch's gradient is well defined).
TINY_VIT = {"embed_dim": 32,
            "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
            "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 64, "heads": 2, "layers": 2}}


def tiny_model(siglip: bool, seed: int = 0) -> torch.nn.Module:
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    model = CLIP(**TINY_VIT, init_logit_bias=-10.0 if siglip else None, output_dict=True)
    with torch.no_grad():  # a temperature away from the init, so that its gradient is not tiny
        model.logit_scale.fill_(2.0)
    return model.train()


def samples(n: int, seed: int = 0, neg: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 32, 32, generator=g)
    text = torch.randint(1, 1000, (n, 16), generator=g)
    if not neg:
        return images, text, None, None
    neg_text = torch.randint(1, 1000, (n, neg, 16), generator=g)
    mask = torch.rand(n, neg, generator=g) > 0.3
    group = torch.randint(0, 2, (n,), generator=g)
    return images, text, (neg_text, mask), group


def micro_batches(images, text, negs, group, k: int) -> list[MicroBatch]:
    b = len(images) // k
    out = []
    for j in range(k):
        s = slice(j * b, (j + 1) * b)
        t, mask, grp = text[s], None, None
        if negs is not None:
            t = torch.cat([t, negs[0][s].flatten(0, 1)])
            mask, grp = negs[1][s], group[s]
        out.append(MicroBatch(images[s], t, mask, grp))
    return out


def grads(model, micro, kind, rank=0, world=1) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss_fn = build_loss(kind, rank, world, True, True)
    step = contrastive_step(model, micro, loss_fn, kind, Collectives(torch.device("cpu"), world, strict=True))
    assert step.finite
    raw = getattr(model, "module", model)
    return {n: p.grad.clone() for n, p in raw.named_parameters() if p.grad is not None}, step.loss


def assert_same_gradient(a: dict, b: dict, rtol: float = 1e-5) -> None:
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        err = (a[name] - b[name]).norm() / b[name].norm().clamp_min(1e-12)
        assert err < rtol, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("kind", ["clip", "siglip"])
@pytest.mark.parametrize("neg", [0, 2])
def test_k_micro_batches_give_the_big_batch_gradient(kind, neg):
    model = tiny_model(kind == "siglip")
    images, text, negs, group = samples(12, neg=neg)
    big, big_loss = grads(model, micro_batches(images, text, negs, group, 1), kind)
    acc, acc_loss = grads(model, micro_batches(images, text, negs, group, 4), kind)
    assert_same_gradient(acc, big)
    assert torch.allclose(acc_loss, big_loss, rtol=1e-5)
    assert "logit_scale" in acc and (kind == "clip" or "logit_bias" in acc)


def test_per_micro_batch_losses_are_not_the_big_batch():
    """What accumulation replaced: summing k independent problems of b gives another gradient."""
    model = tiny_model(False)
    images, text, negs, group = samples(12)
    big, _ = grads(model, micro_batches(images, text, negs, group, 1), "clip")
    model.zero_grad(set_to_none=True)
    loss_fn = build_loss("clip", 0, 1, True, True)
    for mb in micro_batches(images, text, negs, group, 4):
        out = model(mb.images, mb.text)
        (loss_fn(out["image_features"], out["text_features"], out["logit_scale"]) / 4).backward()
    naive = {n: p.grad for n, p in model.named_parameters()}
    rel = (naive["text_projection"] - big["text_projection"]).norm() / big["text_projection"].norm()
    assert rel > 1e-2


def test_a_non_finite_loss_stops_before_any_backward():
    model = tiny_model(False)
    images, text, negs, group = samples(8)
    step = contrastive_step(model, micro_batches(images, text, negs, group, 2), build_loss("clip", 0, 1, True, True),
                            "clip", Collectives(torch.device("cpu"), 1), poison=True)
    assert not step.finite and all(p.grad is None for p in model.parameters())


def _ddp_worker(rank: int, world: int, init_file: str, kind: str, out: str) -> None:
    os.environ["RADISIM_STRICT_COLLECTIVES"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(tiny_model(kind == "siglip"))
        images, text, negs, group = samples(8, seed=100 + rank)  # each rank its own k*b = 8 samples
        big, _ = grads(model, micro_batches(images, text, negs, group, 1), kind, rank, world)
        acc, _ = grads(model, micro_batches(images, text, negs, group, 4), kind, rank, world)
        torch.save({"big": big, "acc": acc}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_two_gloo_workers_ddp_accumulation_equals_the_big_batch(tmp_path, kind):
    out = str(tmp_path / "grads")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), kind, out), nprocs=2, join=True)
    r0, r1 = (torch.load(f"{out}.{r}", map_location="cpu") for r in (0, 1))
    assert_same_gradient(r0["acc"], r0["big"])
    for name in r0["acc"]:  # DDP averaged: every rank holds the same gradient
        assert torch.equal(r0["acc"][name], r1["acc"][name])
