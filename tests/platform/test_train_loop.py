"""The loop's pieces without Ray: frozen towers stay bit-identical (BatchNorm statistics included), no
accumulation crosses an epoch end, precision resolves against the device, resume state loads to CPU."""
from __future__ import annotations

import pytest
import torch

from radisim.platform.models import load_clip
from radisim.platform.train import loop
from radisim.platform.train.accumulate import MicroBatch, contrastive_step
from radisim.platform.train.collectives import Collectives
from radisim.platform.train.losses import build_loss
from radisim.platform.train.precision import resolve_precision


def _steps(model, n: int, accum: int = 2) -> None:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        micro = [MicroBatch(torch.randn(4, 3, 64, 64, generator=g), torch.randint(1, 1000, (4, 32), generator=g))
                 for _ in range(accum)]
        assert contrastive_step(model, micro, build_loss("clip", 0, 1, True, True), "clip",
                                Collectives(torch.device("cpu"), 1)).finite
        opt.step()
        opt.zero_grad(set_to_none=True)


def test_a_frozen_tower_is_bit_identical_after_training_batchnorm_buffers_included():
    torch.manual_seed(0)
    model = load_clip("radisim-tiny").model  # ResNet image tower: BatchNorm running statistics
    model.output_dict = True
    before = {k: v.clone() for k, v in model.visual.state_dict().items()}
    assert any("running_mean" in k for k in before)
    text_before = model.text_projection.detach().clone()
    frozen = loop.freeze_towers(model, ["visual"])
    loop.train_mode(model, frozen)
    assert model.training and not model.visual.training
    _steps(model, 1, accum=1)
    after = model.visual.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(text_before, model.text_projection)


def test_freeze_norm_stats_false_fixes_weights_and_lets_batchnorm_follow_the_data():
    """The phase option for random-init towers: weights bit-identical, running statistics updated."""
    from radisim.curriculum.spec import PhaseSpec

    assert PhaseSpec(name="modality", steps=1, freeze=["visual"]).freeze_norm_stats  # frozen means frozen
    torch.manual_seed(0)
    model = load_clip("radisim-tiny").model
    model.output_dict = True
    before = {k: v.clone() for k, v in model.visual.state_dict().items()}
    loop.freeze_towers(model, ["visual"])
    loop.train_mode(model, [])  # what the loop does with freeze_norm_stats: false
    _steps(model, 1, accum=1)
    after = model.visual.state_dict()
    stats = [k for k in before if "running_" in k]
    weights = [k for k in before if k not in stats and "num_batches_tracked" not in k]
    assert all(torch.equal(before[k], after[k]) for k in weights)
    assert any(not torch.equal(before[k], after[k]) for k in stats)


def test_lock_image_tower_alone_would_let_batchnorm_drift():
    """Why `train_mode` keeps the frozen tower in eval: open_clip's lock leaves BatchNorm in train mode."""
    torch.manual_seed(0)
    model = load_clip("radisim-tiny").model
    model.output_dict = True
    model.lock_image_tower()
    model.train()
    before = {k: v.clone() for k, v in model.visual.state_dict().items() if "running_mean" in k}
    _steps(model, 1, accum=1)
    assert any(not torch.equal(before[k], model.visual.state_dict()[k]) for k in before)


def test_frozen_text_tower_modules():
    model = load_clip("radisim-tiny").model
    frozen = loop.freeze_towers(model, ["text"])
    loop.train_mode(model, frozen)
    assert not model.transformer.training and model.visual.training
    assert not any(p.requires_grad for p in model.transformer.parameters()) and model.visual.conv1.weight.requires_grad


def test_no_accumulation_crosses_an_epoch_end():
    epochs = {0: list(range(5)), 1: list(range(10, 15))}  # 5 micro-batches per epoch, 2 per step
    groups = loop.step_groups(lambda e: iter(epochs[e]), accum=2, batch_size=8, name="p")
    assert [next(groups) for _ in range(4)] == [[0, 1], [2, 3], [10, 11], [12, 13]]  # 4 and 14 are dropped
    empty = loop.step_groups(lambda e: iter([1]), accum=2, batch_size=8, name="p")
    with pytest.raises(RuntimeError, match="no full step of 2 x 8"):
        next(empty)


def test_precision_against_the_device():
    assert resolve_precision("auto", torch.device("cpu")).name == "fp32"
    with pytest.raises(ValueError, match="mixed precision is for GPUs"):
        resolve_precision("bf16", torch.device("cpu"))
    gpu = torch.device("cuda", 0)
    bf16 = resolve_precision("auto", gpu, bf16_supported=lambda: True)
    assert bf16.name == "bf16" and bf16.dtype == torch.bfloat16 and not bf16.scaled
    fp16 = resolve_precision("auto", gpu, bf16_supported=lambda: False)
    assert fp16.name == "fp16" and fp16.scaled  # a GradScaler: fp16 gradients underflow without loss scaling
    with pytest.raises(ValueError, match="no bfloat16 support"):
        resolve_precision("bf16", gpu, bf16_supported=lambda: False)
    assert resolve_precision("fp32", gpu, bf16_supported=lambda: True).dtype is None
    assert not resolve_precision("fp32", torch.device("cpu")).grad_scaler().is_enabled()


def test_resume_state_is_loaded_onto_the_cpu(tmp_path, monkeypatch):
    seen = {}
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: (seen.update(kw), real(*a, **kw))[1])
    torch.save({"step": 3}, tmp_path / loop.TRAIN_STATE_FILE)
    assert loop.load_train_state(tmp_path)["step"] == 3 and seen["map_location"] == "cpu"


def test_every_torch_load_in_train_and_models_names_map_location():
    import ast
    from pathlib import Path

    import radisim.platform.models.factory as factory

    for folder in (Path(loop.__file__).parent, Path(factory.__file__).parent):
        for path in folder.glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("torch.load"):
                    assert any(k.arg == "map_location" for k in node.keywords), f"{path.name}:{node.lineno}"
