"""Real Ray Train fits of the phase loop on 2 gloo workers: a CLIP phase with the image tower frozen,
then a SigLIP phase, with open_clip accumulation, under DDP; strict collectives (every tensor handed to
torch.distributed checked against the rank's device, as NCCL needs). The checkpoints are read back with
plain open_clip."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from radisim.platform.config import load_job_config

SPEC = ("{name: mixed, phases: [{name: modality, steps: 3, loss: clip, freeze: [visual]},"
        " {name: anatomy, steps: 2, loss: siglip}]}")


def _state(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "open_clip_pytorch_model.bin", map_location="cpu", weights_only=True)["state_dict"]


def _checkpoints(run_dir: Path) -> dict[int, Path]:
    return {json.loads(p.read_text())["step"]: p.parent for p in run_dir.glob("checkpoint_*/radisim.json")}


@pytest.mark.slow
def test_mixed_losses_frozen_tower_and_accumulation_on_two_ddp_workers(tmp_path, monkeypatch):
    import open_clip

    from radisim.curriculum.phantom import write_phantom_dataset
    from radisim.platform.raysession import ray_session
    from radisim.platform.train.runner import run_curriculum

    monkeypatch.setenv("RADISIM_STRICT_COLLECTIVES", "1")  # inherited by the Train workers
    write_phantom_dataset(tmp_path / "data", n_train_images=60, n_eval_images=10, progress=False)
    cfg = load_job_config(overrides=[
        f"curriculum={SPEC}", f"data.root={tmp_path / 'data'}", f"train.storage_path={tmp_path / 'store'}",
        f"tracking.tracking_uri=sqlite:///{tmp_path / 'm.db'}", "train.num_workers=2", "train.batch_size=4",
        "train.grad_accum=2", "train.log_every=3", "train.checkpoint_every=2", "train.cpus_per_worker=0.5",
        "data.shuffle_buffer=0", "eval.enabled=false", "tracking.run_name=mixed"]).resolved()
    with ray_session(cfg.ray):
        result = run_curriculum(cfg)
    assert result.budget["budget/contrastive_batch"] == 4 * 2 * 2
    store = tmp_path / "store"
    init = _state(store / "mixed" / "init")
    p1 = _checkpoints(next(store.glob("mixed-p1-*")))
    # checkpoint cadence (every 2) is independent of the log window (every 3): steps 2 and 3 (the last)
    assert sorted(p1) == [2, 3]
    after = _state(p1[3])
    visual = [k for k in init if k.startswith("visual.")]
    assert visual and all(torch.equal(init[k], after[k]) for k in visual)  # params AND BatchNorm buffers
    assert any("running_mean" in k for k in visual)
    assert not torch.equal(init["text_projection"], after["text_projection"])
    assert torch.equal(init["logit_bias"], after["logit_bias"])  # a CLIP phase leaves SigLIP's bias alone
    p2 = _checkpoints(next(store.glob("mixed-p2-*")))
    final = max(p2)
    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{p2[final]}")
    assert model.logit_bias is not None
    assert float(model.logit_bias.detach()) == pytest.approx(float(_state(p2[final])["logit_bias"]))
    assert float(model.logit_bias.detach()) != float(init["logit_bias"])  # SigLIP's phase trained it
