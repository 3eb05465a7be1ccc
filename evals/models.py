"""Model families the suite can evaluate zero-shot, keyed by the prefix of `--model`.

Contract of a family (register it with `@register_family(prefix)`): a loader

    loader(ref: ModelRef, device: str) -> ZeroShotModel

that builds the model offline from what is on disk (a hub id resolves through the local Hugging Face
cache only when the network is off) and raises `RuntimeError` naming what to download and where when
it cannot. A `ZeroShotModel` has
  fingerprint        hashes every weight: a new checkpoint is a new embedding-cache key
  describe()         {field: str} that also keys the cache: family, library version, preprocess
  logit_scale        the temperature the scores use (capped at MAX_LOGIT_SCALE)
  encode_images(pil) (n, D) L2-normalised float32 of a list of RGB PIL images (eval preprocess)
  encode_texts(txt)  (n, D) L2-normalised float32 of a list of prompts

Families:
  open_clip      (no prefix) bundled configs, open_clip names with a pretrained tag or weights file,
                 `hf-hub:` ids, and our checkpoints (`radisim.platform.models.load_clip`)
  transformers   `transformers:ID_OR_PATH`: a Hugging Face CLIP or SigLIP model (AutoModel; the
                 config's `model_type` says which, never the name), its AutoTokenizer and
                 AutoImageProcessor from the same folder or hub id. Covers PubMedCLIP
                 (flaviagiammarino/pubmed-clip-vit-base-patch32), SigLIP (google/siglip-*),
                 MedSigLIP (google/medsiglip-448) and any CLIPModel / SiglipModel checkpoint.
                 SigLIP text is padded to max_length, as it was trained.
  pmc-clip       `pmc-clip:DIR`: the published PMC-CLIP files (`PMC_CLIP_FILES`, ModifiedResNet-50 +
                 BiomedBERT + projection) with the BiomedBERT config/tokenizer in DIR/text_model/.
  medclip        `medclip:DIR`: MedCLIP-ViT's released pytorch_model.bin (Swin-tiny + Bio_ClinicalBERT +
                 projections) with the backbones' configs in DIR/vision_model/ and DIR/text_model/.
"""
from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .embed import ModelRef

Loader = Callable[["ModelRef", str], "ZeroShotModel"]
_FAMILIES: dict[str, Loader] = {}
DEFAULT_FAMILY = "open_clip"
MAX_LOGIT_SCALE = 100.0


def register_family(prefix: str) -> Callable[[Loader], Loader]:
    def decorate(fn: Loader) -> Loader:
        if prefix in _FAMILIES and _FAMILIES[prefix] is not fn:
            raise ValueError(f"model family {prefix!r} registered twice")
        _FAMILIES[prefix] = fn
        return fn

    return decorate


def family_names() -> list[str]:
    return sorted(_FAMILIES)


def split_spec(spec: str) -> tuple[str, str]:
    """`transformers:ID` -> ("transformers", "ID"); anything else is open_clip's (hf-hub: included)."""
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in _FAMILIES and prefix != DEFAULT_FAMILY:
        return prefix, rest
    return DEFAULT_FAMILY, spec


def load_model(ref: "ModelRef", device: str = "cpu") -> "ZeroShotModel":
    try:
        loader = _FAMILIES[ref.family]
    except KeyError:
        raise KeyError(f"no model family {ref.family!r} (registered: {', '.join(family_names())})") from None
    return loader(ref, device)


def _normalise(x):
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class ZeroShotModel:
    """Base of the families: holds the torch module for `.parameters()` / `.eval()`."""

    family = ""
    fingerprint = ""

    def describe(self) -> dict[str, str]:
        raise NotImplementedError

    @property
    def logit_scale(self) -> float:
        raise NotImplementedError

    def encode_images(self, images: list) -> np.ndarray:
        raise NotImplementedError

    def encode_texts(self, prompts: list[str]) -> np.ndarray:
        raise NotImplementedError


# ------------------------------------------------------------------------------------------- open_clip
class OpenClipModel(ZeroShotModel):
    """An open_clip `ClipBundle` (model, preprocess, tokenizer, fingerprint)."""

    family = "open_clip"

    def __init__(self, bundle):
        self.bundle = bundle
        self.model, self.preprocess, self.tokenizer = bundle.model, bundle.preprocess, bundle.tokenizer
        self.fingerprint = bundle.fingerprint
        self.device = next(self.model.parameters()).device

    def describe(self) -> dict[str, str]:
        import open_clip

        return {"family": self.family, "open_clip": open_clip.__version__, "preprocess": repr(self.preprocess)}

    @property
    def logit_scale(self) -> float:
        return float(min(float(self.model.logit_scale.detach().exp()), MAX_LOGIT_SCALE))

    def encode_images(self, images: list) -> np.ndarray:
        import torch

        pixels = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        self.model.eval()
        with torch.inference_mode():
            return self.model.encode_image(pixels, normalize=True).float().cpu().numpy()

    def encode_texts(self, prompts: list[str]) -> np.ndarray:
        import torch

        self.model.eval()
        with torch.inference_mode():
            emb = self.model.encode_text(self.tokenizer(prompts).to(self.device), normalize=True)
        return emb.float().cpu().numpy()


@register_family("open_clip")
def _load_open_clip(ref: "ModelRef", device: str) -> ZeroShotModel:
    from radisim.platform.models import load_clip

    return OpenClipModel(load_clip(ref.name, pretrained=ref.pretrained,
                                   checkpoint=None if ref.checkpoint is None else str(ref.checkpoint),
                                   device=device, siglip=ref.siglip))


# ---------------------------------------------------------------------------------------- transformers
def _fingerprint_state(model, name: str) -> str:
    import torch

    digest = hashlib.sha256(name.encode())
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _features(output):
    """transformers 5 returns a ModelOutput whose pooler_output is the projected embedding; 4.x a tensor."""
    return getattr(output, "pooler_output", output)


class TransformersModel(ZeroShotModel):
    """A Hugging Face CLIPModel / SiglipModel with its tokenizer and image processor."""

    family = "transformers"
    SIGLIP_TYPES = ("siglip", "siglip2")

    def __init__(self, model, tokenizer, image_processor, name: str):
        self.model, self.tokenizer, self.image_processor, self.name = model, tokenizer, image_processor, name
        self.model_type = str(model.config.model_type)
        if self.model_type not in ("clip", *self.SIGLIP_TYPES):
            raise RuntimeError(f"transformers:{name} is a {self.model_type!r} model; CLIP and SigLIP models are supported")
        self.device = next(model.parameters()).device
        self.fingerprint = _fingerprint_state(model, f"transformers:{name}")

    def describe(self) -> dict[str, str]:
        import transformers

        return {"family": self.family, "transformers": transformers.__version__, "model_type": self.model_type,
                "preprocess": repr(self.image_processor.to_dict())}

    @property
    def logit_scale(self) -> float:
        return float(min(float(self.model.logit_scale.detach().exp()), MAX_LOGIT_SCALE))

    def encode_images(self, images: list) -> np.ndarray:
        import torch

        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        self.model.eval()
        with torch.inference_mode():
            return _normalise(_features(self.model.get_image_features(pixel_values=pixels))).float().cpu().numpy()

    def encode_texts(self, prompts: list[str]) -> np.ndarray:
        import torch

        if self.model_type in self.SIGLIP_TYPES:  # SigLIP was trained on text padded to max_length
            length = int(self.model.config.text_config.max_position_embeddings)
            tokens = self.tokenizer(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        else:
            tokens = self.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        if self.model_type in self.SIGLIP_TYPES:
            tokens.pop("attention_mask", None)  # SigLIP pools the last token of the padded sequence
        self.model.eval()
        with torch.inference_mode():
            return _normalise(_features(self.model.get_text_features(**tokens))).float().cpu().numpy()


@register_family("transformers")
def _load_transformers(ref: "ModelRef", device: str) -> ZeroShotModel:
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    name = ref.name
    try:
        model = AutoModel.from_pretrained(name).to(device)
        tokenizer = AutoTokenizer.from_pretrained(name)
        processor = AutoImageProcessor.from_pretrained(name)
    except (OSError, ValueError) as err:  # offline / missing files arrive as OSError (EnvironmentError)
        cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
        raise RuntimeError(
            f"could not load transformers model {name!r} from disk ({type(err).__name__}: {str(err).splitlines()[0]}). "
            f"Download it once where there is network (`huggingface-cli download {name}`) and copy the Hugging Face "
            f"cache ({cache}) here, or pass a local folder written by save_pretrained: --model transformers:/path") from None
    return TransformersModel(model, tokenizer, processor, name)


# ------------------------------------------------------------------------------------------- PMC-CLIP
#: The published PMC-CLIP release (Lin et al. 2023, github.com/WeixiongLin/PMC-CLIP; the files of
#: huggingface.co/datasets/axiong/pmc_oa): a CLIP ModifiedResNet-50 image tower, a BiomedBERT text
#: tower and a text projection, as three files in one folder, plus the BiomedBERT config + tokenizer
#: (microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract, save_pretrained layout) in `text_model/`.
PMC_CLIP_FILES = {"image": "image_encoder(resnet50).pth", "text": "text_encoder.pth", "projection": "text_projection_layer.pth"}
PMC_CLIP_TEXT_DIR = "text_model"
#: The release's architecture and temperature (its zero-shot code: logit scale exp(4.4292), 77 tokens).
PMC_CLIP_DEFAULTS = {"layers": [3, 4, 6, 3], "width": 64, "heads": 8, "embed_dim": 768, "image_size": 224,
                     "context_length": 77, "log_logit_scale": 4.4292}
PMC_CLIP_ARCH_FILE = "pmc_clip.json"  # optional: other sizes of the same architecture (tests use tiny ones)


class PmcClipModel(ZeroShotModel):
    """PMC-CLIP: image = ModifiedResNet features; text = BERT pooler output @ the projection."""

    family = "pmc-clip"

    def __init__(self, image_encoder, text_encoder, projection, tokenizer, arch: dict, name: str):
        from open_clip.transform import image_transform

        self.image_encoder, self.text_encoder, self.projection, self.tokenizer = image_encoder, text_encoder, projection, tokenizer
        self.arch, self.name = arch, name
        self.preprocess = image_transform(arch["image_size"], is_train=False)
        self.device = next(image_encoder.parameters()).device
        import torch

        holder = torch.nn.ModuleDict({"image": image_encoder, "text": text_encoder})
        holder.register_buffer("projection", projection)
        self.fingerprint = _fingerprint_state(holder, f"pmc-clip:{name}")

    def describe(self) -> dict[str, str]:
        import open_clip
        import transformers

        return {"family": self.family, "open_clip": open_clip.__version__, "transformers": transformers.__version__,
                "arch": repr(sorted(self.arch.items())), "preprocess": repr(self.preprocess)}

    @property
    def logit_scale(self) -> float:
        import math

        return float(min(math.exp(self.arch["log_logit_scale"]), MAX_LOGIT_SCALE))

    def encode_images(self, images: list) -> np.ndarray:
        import torch

        pixels = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        self.image_encoder.eval()
        with torch.inference_mode():
            return _normalise(self.image_encoder(pixels)).float().cpu().numpy()

    def encode_texts(self, prompts: list[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.arch["context_length"],
                                return_tensors="pt")
        self.text_encoder.eval()
        with torch.inference_mode():
            out = self.text_encoder(input_ids=tokens["input_ids"].to(self.device),
                                    attention_mask=tokens["attention_mask"].to(self.device))
            return _normalise(out.pooler_output @ self.projection).float().cpu().numpy()


@register_family("pmc-clip")
def _load_pmc_clip(ref: "ModelRef", device: str) -> ZeroShotModel:
    import json
    from pathlib import Path

    import torch
    from open_clip.modified_resnet import ModifiedResNet
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    root = Path(ref.name).expanduser()
    missing = [f for f in [*PMC_CLIP_FILES.values(), f"{PMC_CLIP_TEXT_DIR}/config.json"] if not (root / f).is_file()]
    if missing:
        raise RuntimeError(
            f"pmc-clip:{root}: missing {missing}. Put the PMC-CLIP release files {sorted(PMC_CLIP_FILES.values())} "
            f"(huggingface.co/datasets/axiong/pmc_oa) in that folder and the BiomedBERT config + tokenizer "
            f"(microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract, save_pretrained) in {root / PMC_CLIP_TEXT_DIR}")
    arch = dict(PMC_CLIP_DEFAULTS)
    if (root / PMC_CLIP_ARCH_FILE).is_file():
        arch.update(json.loads((root / PMC_CLIP_ARCH_FILE).read_text()))
    image_encoder = ModifiedResNet(layers=list(arch["layers"]), output_dim=arch["embed_dim"], heads=arch["heads"],
                                   image_size=arch["image_size"], width=arch["width"])
    image_encoder.load_state_dict(torch.load(root / PMC_CLIP_FILES["image"], map_location="cpu", weights_only=True))
    text_encoder = AutoModel.from_config(AutoConfig.from_pretrained(root / PMC_CLIP_TEXT_DIR))
    missing, unexpected = text_encoder.load_state_dict(
        torch.load(root / PMC_CLIP_FILES["text"], map_location="cpu", weights_only=True), strict=False)
    if bad := [k for k in [*missing, *unexpected] if not k.endswith("position_ids")]:  # a buffer older BERTs saved
        raise RuntimeError(f"pmc-clip:{root}: {PMC_CLIP_FILES['text']} does not fit the text model config: {bad[:5]}")
    projection = torch.load(root / PMC_CLIP_FILES["projection"], map_location="cpu", weights_only=True)
    tokenizer = AutoTokenizer.from_pretrained(root / PMC_CLIP_TEXT_DIR)
    return PmcClipModel(image_encoder.to(device), text_encoder.to(device), projection.to(device), tokenizer, arch, str(root))


# -------------------------------------------------------------------------------------------- MedCLIP
#: The published MedCLIP-ViT checkpoint (Wang et al. 2022, github.com/RyanWangZf/MedCLIP, the
#: `medclip-vit-pretrained` zip): one `pytorch_model.bin` holding MedCLIPModel's state dict
#: (vision_model.model = Swin-tiny, vision_model.projection_head, text_model.model = Bio_ClinicalBERT,
#: text_model.projection_head, logit_scale). The backbones' configs (and BERT's tokenizer) go beside it
#: in save_pretrained layout: `vision_model/` (microsoft/swin-tiny-patch4-window7-224) and
#: `text_model/` (emilyalsentzer/Bio_ClinicalBERT).
MEDCLIP_WEIGHTS = "pytorch_model.bin"
MEDCLIP_DIRS = {"vision": "vision_model", "text": "text_model"}
#: MedCLIP's image normalisation (medclip/constants.py: IMG_MEAN, IMG_STD) of a grey image.
MEDCLIP_MEAN, MEDCLIP_STD = 0.5862785803043838, 0.27950088968644304
MEDCLIP_MAX_LOGIT = 4.6052  # MedCLIPModel.compute_logits clamps log(scale) to [0, log 100]


def _medclip_preprocess(size: int):
    """MedCLIP's feature extractor: grey, padded to a square, resized, normalised, three equal channels."""
    from torchvision import transforms

    def pad_square(im):
        from PIL import Image

        side = max(im.size)
        canvas = Image.new("L", (side, side), 0)
        canvas.paste(im, ((side - im.size[0]) // 2, (side - im.size[1]) // 2))
        return canvas

    return transforms.Compose([transforms.Grayscale(1), transforms.Lambda(pad_square), transforms.Resize((size, size)),
                               transforms.ToTensor(), transforms.Normalize([MEDCLIP_MEAN], [MEDCLIP_STD]),
                               transforms.Lambda(lambda x: x.repeat(3, 1, 1))])


class MedClipModel(ZeroShotModel):
    """MedCLIP-ViT: image = Swin pooler output @ projection; text = mean over the tokens of the mean of
    BERT's hidden states 1, 2 and last, @ projection (MedCLIPTextModel.forward). Each prompt is encoded
    alone, so its embedding does not depend on how much padding its batch had (MedCLIP's own code
    averages over a padded batch)."""

    family = "medclip"

    def __init__(self, vision, text, vision_proj, text_proj, log_scale: float, tokenizer, image_size: int, name: str):
        import torch

        self.vision, self.text, self.vision_proj, self.text_proj = vision, text, vision_proj, text_proj
        self.tokenizer, self.name, self.log_scale = tokenizer, name, log_scale
        self.preprocess = _medclip_preprocess(image_size)
        self.device = next(vision.parameters()).device
        holder = torch.nn.ModuleDict({"vision": vision, "text": text, "vp": vision_proj, "tp": text_proj})
        self.fingerprint = _fingerprint_state(holder, f"medclip:{name}:{log_scale}")

    def describe(self) -> dict[str, str]:
        import transformers

        return {"family": self.family, "transformers": transformers.__version__, "preprocess": f"medclip-grey-pad-{self.preprocess}"}

    @property
    def logit_scale(self) -> float:
        import math

        return float(min(math.exp(min(max(self.log_scale, 0.0), MEDCLIP_MAX_LOGIT)), MAX_LOGIT_SCALE))

    def encode_images(self, images: list) -> np.ndarray:
        import torch

        pixels = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        self.vision.eval()
        with torch.inference_mode():
            return _normalise(self.vision_proj(self.vision(pixel_values=pixels).pooler_output)).float().cpu().numpy()

    def encode_texts(self, prompts: list[str]) -> np.ndarray:
        import torch

        self.text.eval()
        out = []
        with torch.inference_mode():
            for prompt in prompts:
                tokens = self.tokenizer(prompt, truncation=True, max_length=77, return_tensors="pt")
                hidden = self.text(input_ids=tokens["input_ids"].to(self.device), output_hidden_states=True,
                                   attention_mask=tokens["attention_mask"].to(self.device)).hidden_states
                pooled = torch.stack([hidden[1], hidden[2], hidden[-1]]).permute(1, 0, 2, 3).mean(2).mean(1)
                out.append(_normalise(self.text_proj(pooled))[0])
        return torch.stack(out).float().cpu().numpy()


@register_family("medclip")
def _load_medclip(ref: "ModelRef", device: str) -> ZeroShotModel:
    from pathlib import Path

    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    root = Path(ref.name).expanduser()
    needed = [MEDCLIP_WEIGHTS, f"{MEDCLIP_DIRS['vision']}/config.json", f"{MEDCLIP_DIRS['text']}/config.json"]
    if missing := [f for f in needed if not (root / f).is_file()]:
        raise RuntimeError(
            f"medclip:{root}: missing {missing}. Unzip MedCLIP's medclip-vit-pretrained release (pytorch_model.bin) "
            f"there, with the configs of microsoft/swin-tiny-patch4-window7-224 in {root / MEDCLIP_DIRS['vision']} and "
            f"of emilyalsentzer/Bio_ClinicalBERT (+ tokenizer) in {root / MEDCLIP_DIRS['text']} (save_pretrained)")
    state = torch.load(root / MEDCLIP_WEIGHTS, map_location="cpu", weights_only=True)
    vision = AutoModel.from_config(AutoConfig.from_pretrained(root / MEDCLIP_DIRS["vision"]))
    text = AutoModel.from_config(AutoConfig.from_pretrained(root / MEDCLIP_DIRS["text"]))
    projections = {}
    for part, model in (("vision_model", vision), ("text_model", text)):
        sub = {k.removeprefix(f"{part}.model."): v for k, v in state.items() if k.startswith(f"{part}.model.")}
        missing, unexpected = model.load_state_dict(sub, strict=False)
        if bad := [k for k in [*missing, *unexpected] if not k.endswith("position_ids")]:
            raise RuntimeError(f"medclip:{root}: {part} weights do not fit its config: {bad[:5]}")
        weight = state[f"{part}.projection_head.weight"]
        projections[part] = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        projections[part].weight.data.copy_(weight)
    image_size = int(getattr(vision.config, "image_size", 224))
    return MedClipModel(vision.to(device), text.to(device), projections["vision_model"].to(device),
                        projections["text_model"].to(device), float(state["logit_scale"]),
                        AutoTokenizer.from_pretrained(root / MEDCLIP_DIRS["text"]), image_size, str(root))
