"""open_clip factory: bundled configs, checkpoints that plain open_clip loads, SigLIP logit bias."""
from __future__ import annotations

import json
import math

import open_clip
import pytest
import torch

from radisim.platform.models import available_models, load_clip, save_checkpoint
from radisim.platform.models.factory import SIGLIP_INIT_LOGIT_BIAS, WEIGHTS_FILE, fingerprint_model


def test_bundled_configs_registered():
    assert {"radisim-tiny", "radisim-vit-b16"} <= set(available_models())
    b = load_clip("radisim-tiny")
    assert b.image_size == 64 and b.context_length == 32
    n = sum(p.numel() for p in b.model.parameters())
    assert 11e6 < n < 14e6  # ResNet image tower (5.3M, most of it the attention pool) + text tower


def test_checkpoint_loads_in_plain_open_clip(tmp_path):
    torch.manual_seed(1)
    b = load_clip("radisim-tiny")
    save_checkpoint(b.model, "radisim-tiny", tmp_path)
    # another tool (e.g. CLIP_benchmark) only knows open_clip: both the weights file and local-dir work
    plain = open_clip.create_model("radisim-tiny", pretrained=str(tmp_path / WEIGHTS_FILE))
    for (k, v), (k2, v2) in zip(b.model.state_dict().items(), plain.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert (tmp_path / "open_clip_config.json").is_file()
    again = load_clip("radisim-tiny", checkpoint=tmp_path)
    assert again.fingerprint == b.fingerprint


def test_fingerprint_changes_with_weights():
    b = load_clip("radisim-tiny")
    before = b.fingerprint
    with torch.no_grad():
        b.model.logit_scale.add_(0.1)
    assert fingerprint_model(b.model, "radisim-tiny") != before


def test_siglip_from_clip_checkpoint_gets_bias_minus_10(tmp_path):
    b = load_clip("radisim-tiny")
    assert getattr(b.model, "logit_bias", None) is None
    save_checkpoint(b.model, "radisim-tiny", tmp_path)
    s = load_clip("radisim-tiny", checkpoint=tmp_path, siglip=True)
    assert float(s.model.logit_bias) == pytest.approx(SIGLIP_INIT_LOGIT_BIAS)
    assert float(s.model.logit_scale) == pytest.approx(math.log(10))
    # a SigLIP checkpoint keeps its learned bias
    with torch.no_grad():
        s.model.logit_bias.fill_(-7.5)
    save_checkpoint(s.model, "radisim-tiny", tmp_path / "siglip")
    s2 = load_clip("radisim-tiny", checkpoint=tmp_path / "siglip", siglip=True)
    assert float(s2.model.logit_bias) == pytest.approx(-7.5)


def test_missing_weights_offline_error(monkeypatch):
    import huggingface_hub.constants

    # huggingface_hub reads HF_HUB_OFFLINE once, at import: set both, or the download is attempted and
    # this machine's closed network answers only after ~45 s of retries.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="Download them once"):
        load_clip("ViT-B-16", pretrained="openai")


def test_checkpoint_mismatch_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        load_clip("radisim-tiny", checkpoint=tmp_path)


# ------------------------------------------------------------------ open_clip's local-dir: round trip

def _features(model, image_size=64, context=32):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, image_size, image_size, generator=g)
    text = torch.randint(1, 1000, (3, context), generator=g)
    model.eval()
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(text)


@pytest.mark.parametrize("siglip", [False, True])
def test_each_checkpoint_loads_unchanged_with_local_dir(tmp_path, siglip):
    torch.manual_seed(3)
    b = load_clip("radisim-tiny", siglip=siglip)
    if siglip:
        with torch.no_grad():
            b.model.logit_bias.fill_(-6.25)
    save_checkpoint(b.model, "radisim-tiny", tmp_path, config=b.config, tokenizer=b.tokenizer)
    cfg = json.loads((tmp_path / "open_clip_config.json").read_text())
    assert ("init_logit_bias" in cfg["model_cfg"]) == siglip and cfg["preprocess_cfg"]["size"] in (64, [64, 64])
    plain, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp_path}")
    ours = load_clip("radisim-tiny", checkpoint=tmp_path, siglip=siglip)
    for a, c in zip(_features(plain), _features(ours.model)):
        assert torch.equal(a, c)
    if siglip:
        assert float(plain.logit_bias.detach()) == float(ours.model.logit_bias.detach()) == -6.25
    else:
        assert plain.logit_bias is None


HUB_ID = "radisim-test/tiny-hub"
HUB_PREPROCESS = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bicubic", "resize_mode": "squash"}


@pytest.fixture
def tiny_hub(tmp_path, monkeypatch):
    """An hf-hub: model served offline from a Hugging Face cache laid out as huggingface_hub writes it
    (models--org--name/{refs/main, snapshots/<sha>/...}); HF_HUB_OFFLINE=1, so nothing is downloaded."""
    import huggingface_hub.constants

    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
    torch.manual_seed(7)
    weights = open_clip.model.CLIP(**cfg).state_dict()
    cache = tmp_path / "hf"
    sha = "0" * 39 + "1"
    snap = cache / f"models--{HUB_ID.replace('/', '--')}" / "snapshots" / sha
    snap.mkdir(parents=True)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text(sha)
    (snap / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": HUB_PREPROCESS}))
    torch.save(weights, snap / "open_clip_pytorch_model.bin")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return {"cache": cache, "weights": weights}


def test_a_hub_model_is_pretrained_and_its_checkpoint_needs_no_hub(tiny_hub, tmp_path, monkeypatch):
    import huggingface_hub.constants

    name = f"hf-hub:{HUB_ID}"
    b = load_clip(name, siglip=True)
    assert torch.equal(b.model.visual.conv1.weight, tiny_hub["weights"]["visual.conv1.weight"])  # the hub's weights
    # pretrained CLIP weights for SigLIP: bias -10 and scale log(10), on purpose (open_clip #712/#650)
    assert float(b.model.logit_bias.detach()) == SIGLIP_INIT_LOGIT_BIAS
    assert float(b.model.logit_scale.detach()) == pytest.approx(math.log(10))
    save_checkpoint(b.model, name, tmp_path / "ckpt", config=b.config, tokenizer=b.tokenizer)
    saved = json.loads((tmp_path / "ckpt" / "open_clip_config.json").read_text())
    assert saved["model_cfg"]["vision_cfg"]["patch_size"] == 8 and saved["model_cfg"]["init_logit_bias"] == -10
    assert saved["preprocess_cfg"]["mean"] == HUB_PREPROCESS["mean"]
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))  # hub gone
    ours = load_clip(name, checkpoint=tmp_path / "ckpt", siglip=True)
    plain, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp_path / 'ckpt'}")
    for a, c in zip(_features(plain, 32, 16), _features(ours.model, 32, 16)):
        assert torch.equal(a, c)
    assert float(ours.model.logit_bias.detach()) == SIGLIP_INIT_LOGIT_BIAS  # a SigLIP checkpoint keeps its bias
    assert list(preprocess.transforms[-1].mean) == HUB_PREPROCESS["mean"]
    with pytest.raises(RuntimeError, match="Download them once"):
        load_clip(name)  # no checkpoint and no hub cache: the offline hint
