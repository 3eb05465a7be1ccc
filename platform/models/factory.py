"""Build open_clip models from the bundled JSON configs, open_clip names, hf-hub ids or our checkpoints.

Contract: `load_clip(name, pretrained=..., checkpoint=...)` returns a `ClipBundle` holding an open_clip
model, its eval preprocess transform, its tokenizer and a fingerprint that changes whenever the weights
change (the evaluation's embedding cache is keyed by it).

Checkpoints are directories that plain open_clip can read too:
  open_clip_config.json          the model config (open_clip's `local-dir:` layout)
  open_clip_pytorch_model.bin    {"state_dict": ...}, loadable by create_model(name, pretrained=<file>)
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

CONFIG_DIR = Path(__file__).parent / "configs"
WEIGHTS_FILE = "open_clip_pytorch_model.bin"
CONFIG_FILE = "open_clip_config.json"
SIGLIP_INIT_LOGIT_BIAS = -10.0
SIGLIP_INIT_LOGIT_SCALE = math.log(10.0)

_registered = False


def register_configs() -> None:
    """Register the bundled configs with open_clip. Needed once per process (driver and each Ray worker)."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def available_models() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


@dataclass
class ClipBundle:
    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable
    name: str
    fingerprint: str

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def context_length(self) -> int:
        return int(self.tokenizer.context_length)


def _offline_hint(name: str, pretrained: str | None) -> str:
    cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
    return (
        f"could not load weights for model {name!r} (pretrained={pretrained!r}) without the network. "
        f"Download them once on a machine with internet access (e.g. `python -c \"import open_clip; "
        f"open_clip.create_model('{name}', pretrained={pretrained!r})\"`) and copy the Hugging Face cache "
        f"({cache}) here, or pass a local weights file as pretrained=/path/to/{WEIGHTS_FILE}."
    )


def load_clip(
    name: str,
    pretrained: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    siglip: bool = False,
) -> ClipBundle:
    """Build a model; `checkpoint` (a directory written by `save_checkpoint`) overrides `pretrained`.

    With `siglip=True` the model gets a `logit_bias` and, if its weights come from a CLIP-style
    checkpoint without one, SigLIP's initial bias -10 and scale log(10) instead of the 0 that
    open_clip would leave (open_clip issues #712/#650): otherwise the sigmoid loss starts saturated.
    """
    import open_clip

    register_configs()
    weights_path = None
    if checkpoint is not None:
        weights_path = Path(checkpoint) / WEIGHTS_FILE
        if not weights_path.is_file():
            raise FileNotFoundError(f"checkpoint {checkpoint} has no {WEIGHTS_FILE}")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=None if weights_path else pretrained, device=device
        )
    except (RuntimeError, OSError, ValueError) as err:  # hub/network errors arrive as any of these
        if pretrained or name.startswith("hf-hub:"):
            raise RuntimeError(_offline_hint(name, pretrained)) from err
        raise
    had_bias = getattr(model, "logit_bias", None) is not None
    state_has_bias = had_bias and pretrained is not None
    if weights_path is not None:
        state = torch.load(weights_path, map_location=device, weights_only=True)
        state = state.get("state_dict", state)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        state_has_bias = "logit_bias" in state and float(state["logit_bias"]) != 0.0
        if siglip:
            ensure_logit_bias(model)  # so that a SigLIP checkpoint's bias has a place to load into
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if k != "logit_bias"]:
            raise RuntimeError(f"checkpoint {checkpoint} does not fit {name}: missing={missing} unexpected={unexpected}")
    if siglip:
        ensure_logit_bias(model)
        if (weights_path is not None or pretrained is not None) and not state_has_bias:
            reset_siglip_logits(model)
    tokenizer = open_clip.get_tokenizer(name)
    return ClipBundle(model, preprocess, tokenizer, name, fingerprint_model(model, name))


def ensure_logit_bias(model: torch.nn.Module) -> None:
    """Give a CLIP model SigLIP's learnable bias (open_clip only creates it with `init_logit_bias`)."""
    if getattr(model, "logit_bias", None) is None:
        model.logit_bias = torch.nn.Parameter(torch.tensor(SIGLIP_INIT_LOGIT_BIAS, device=model.logit_scale.device))


def reset_siglip_logits(model: torch.nn.Module) -> None:
    """CLIP weights carry no (or a zero) bias and a CLIP-sized scale: start the sigmoid loss where SigLIP does."""
    with torch.no_grad():
        model.logit_bias.fill_(SIGLIP_INIT_LOGIT_BIAS)
        model.logit_scale.fill_(SIGLIP_INIT_LOGIT_SCALE)


def fingerprint_model(model: torch.nn.Module, name: str) -> str:
    """A short hash of the architecture name and every weight: equal iff the model computes the same."""
    digest = hashlib.sha256(name.encode())
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def model_config(name: str) -> dict[str, Any]:
    import open_clip

    register_configs()
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise KeyError(f"no open_clip config named {name!r}; bundled: {available_models()}")
    return cfg


def save_checkpoint(model: torch.nn.Module, name: str, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write weights + config in open_clip's own layouts (see module docstring)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DDP
    # contiguous: training keeps the image tower channels-last (loop.use_channels_last); files keep torch's default
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, **(extra or {})}, directory / WEIGHTS_FILE)
    try:
        cfg = model_config(name)
    except KeyError:
        cfg = None  # hf-hub models keep their config on the hub
    if cfg is not None:
        (directory / CONFIG_FILE).write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}, indent=2))
    return directory
