"""Build open_clip models from the bundled JSON configs, open_clip names, hf-hub ids or our checkpoints.

Contract: `load_clip(name, pretrained=..., checkpoint=...)` returns a `ClipBundle` holding an open_clip
model, its eval preprocess transform, its tokenizer and a fingerprint that changes whenever the weights
change (the evaluation's embedding cache is keyed by it).

Checkpoints are directories in open_clip's `local-dir:` layout, which plain open_clip loads unchanged
(`open_clip.create_model_and_transforms("local-dir:<dir>")`), hub models and SigLIP included:
  open_clip_config.json          {"model_cfg": ..., "preprocess_cfg": ...}; `init_logit_bias` iff the
                                 model has a SigLIP bias; a hub model's config as the hub gave it
  open_clip_pytorch_model.bin    {"state_dict": ...} (also loadable by create_model(name, pretrained=<file>))
  tokenizer files                for models with an HF tokenizer (open_clip's local-dir tokenizer reads them)
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

CONFIG_DIR = Path(__file__).parent / "configs"
WEIGHTS_FILE = "open_clip_pytorch_model.bin"
CONFIG_FILE = "open_clip_config.json"
SIGLIP_INIT_LOGIT_BIAS = -10.0
SIGLIP_INIT_LOGIT_SCALE = math.log(10.0)
HF_HUB = "hf-hub:"

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
    #: open_clip's {"model_cfg", "preprocess_cfg"} the model was built from (saved with each checkpoint)
    config: dict = None  # type: ignore[assignment]

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

    A checkpoint is loaded the way plain open_clip loads it, `local-dir:<checkpoint>` (its own model
    config, preprocess config and tokenizer files): its weights are read once, and an `hf-hub:` model
    needs no hub access after its initial checkpoint. `hf-hub:` names count as pretrained.

    With `siglip=True` the model gets a `logit_bias` and, if its weights come from a CLIP-style
    checkpoint without one (or with open_clip's 0 from loading CLIP weights into a SigLIP config),
    SigLIP's initial bias -10 and scale log(10): otherwise the sigmoid loss starts saturated
    (open_clip issues #712/#650). Random-init models are built with that bias already.
    """
    register_configs()
    if checkpoint is not None:
        model, preprocess, tokenizer, config, state_has_bias = _from_checkpoint(Path(checkpoint), name, device)
        from_weights = True
    else:
        model, preprocess, tokenizer, config = _from_name(name, pretrained, device)
        from_weights = pretrained is not None or name.startswith(HF_HUB)
        state_has_bias = from_weights and getattr(model, "logit_bias", None) is not None
    if siglip:
        ensure_logit_bias(model)
        if from_weights and not state_has_bias:
            reset_siglip_logits(model)
    return ClipBundle(model, preprocess, tokenizer, name, fingerprint_model(model, name), config)


def _from_name(name: str, pretrained: str | None, device):
    import open_clip

    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
    except (RuntimeError, OSError, ValueError) as err:  # hub/network errors arrive as any of these
        if pretrained or name.startswith(HF_HUB):
            raise RuntimeError(_offline_hint(name, pretrained)) from err
        raise
    config = {"model_cfg": open_clip.get_model_config(name), "preprocess_cfg": dict(model.visual.preprocess_cfg)}
    return model, preprocess, open_clip.get_tokenizer(name), config


@contextmanager
def _open_clip_quiet():
    """open_clip logs every step of a `local-dir:` load (config, weights, tokenizer) at INFO on the root
    logger; jobs run the root logger at INFO. Only open_clip's calls are made quieter."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def _from_checkpoint(ckpt: Path, name: str, device):
    """(model, preprocess, tokenizer, open_clip config, whether the weights carried a SigLIP bias)."""
    import open_clip

    weights = ckpt / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt} has no {WEIGHTS_FILE}")
    if not (ckpt / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"checkpoint {ckpt} has no {CONFIG_FILE} (open_clip's local-dir layout)")
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    try:
        with _open_clip_quiet():
            model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{ckpt}", device=device)
            tokenizer = open_clip.get_tokenizer(f"local-dir:{ckpt}")
    except RuntimeError as err:  # strict state-dict load: another architecture's weights
        raise RuntimeError(f"checkpoint {ckpt} does not fit its config (model {name!r}): {err}") from err
    bias = getattr(model, "logit_bias", None)
    state_has_bias = bias is not None and float(bias.detach()) != 0.0  # open_clip fills a missing bias with 0 (#712)
    return model, preprocess, tokenizer, config, state_has_bias


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
    """The open_clip model config of a registered name (bundled or open_clip's) or an hf-hub: id."""
    import open_clip

    register_configs()
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise KeyError(f"no open_clip config named {name!r}; bundled: {available_models()}")
    return cfg


def save_checkpoint(model: torch.nn.Module, name: str, directory: str | os.PathLike, extra: dict | None = None,
                    config: dict | None = None, tokenizer: Any = None) -> Path:
    """Write weights + config in open_clip's own layout (see module docstring).

    `config` is the `ClipBundle.config` the model was built from (default: the registered config of
    `name`); its `init_logit_bias` follows the model (present iff the model has a bias), so that
    `local-dir:` rebuilds SigLIP models with their bias. An HF tokenizer (`tokenizer.save_pretrained`)
    writes its files next to it, where open_clip's `local-dir:` tokenizer looks for them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DDP
    # contiguous: training keeps the image tower channels-last (loop.use_channels_last); files keep torch's default
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, **(extra or {})}, directory / WEIGHTS_FILE)
    if config is None:
        config = {"model_cfg": model_config(name), "preprocess_cfg": dict(getattr(model.visual, "preprocess_cfg", {}))}
    model_cfg = dict(config["model_cfg"])
    model_cfg.pop("init_logit_bias", None)
    if getattr(model, "logit_bias", None) is not None:
        model_cfg["init_logit_bias"] = SIGLIP_INIT_LOGIT_BIAS  # the value comes from the weights
    out = {"model_cfg": model_cfg, "preprocess_cfg": dict(config.get("preprocess_cfg") or {})}
    (directory / CONFIG_FILE).write_text(json.dumps(out, indent=2))
    if hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(str(directory))
    return directory
