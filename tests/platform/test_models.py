"""open_clip factory: bundled configs, checkpoints that plain open_clip loads, SigLIP logit bias."""
from __future__ import annotations

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
