"""Tiny random Hugging Face CLIP and SigLIP models, built from configs offline and written with
save_pretrained: the layout `--model transformers:PATH` reads (config.json, model.safetensors, the
tokenizer files and preprocessor_config.json). The tokenizer is CLIP's BPE built from the vocabulary
that ships in open_clip's wheel (open_clip's special tokens renamed to Hugging Face's)."""
from __future__ import annotations

import json
from pathlib import Path

TEXT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=24)
VISION = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2)


def _tokenizer(root: Path):
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPTokenizer

    simple = SimpleTokenizer()
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {rename.get(k, k): v for k, v in simple.encoder.items()}
    (root / "vocab.json").write_text(json.dumps(vocab))
    merges = sorted(simple.bpe_ranks.items(), key=lambda kv: kv[1])
    (root / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m, _ in merges) + "\n")
    return CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"), model_max_length=TEXT["max_position_embeddings"]), vocab


def build(root: Path, kind: str, seed: int = 0) -> Path:
    """`kind` "clip" (CLIPModel) or "siglip" (SiglipModel), random weights from `seed`."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, SiglipConfig, SiglipImageProcessor, SiglipModel

    root.mkdir(parents=True, exist_ok=True)
    tokenizer, vocab = _tokenizer(root)
    text = {**TEXT, "vocab_size": len(vocab), "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"], "pad_token_id": vocab["<|endoftext|>"]}
    torch.manual_seed(seed)
    if kind == "clip":
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=VISION, projection_dim=16))
        processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=VISION))
        processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    processor.save_pretrained(root)
    return root


def build_pmc_clip(root: Path, seed: int = 0) -> Path:
    """A tiny random model in the PMC-CLIP release's file layout (the three .pth files + text_model/),
    its sizes in pmc_clip.json (the release's own sizes are the loader's defaults)."""
    import torch
    from open_clip.modified_resnet import ModifiedResNet
    from transformers import BertConfig, BertModel, BertTokenizer

    from radisim.evals.models import PMC_CLIP_ARCH_FILE, PMC_CLIP_FILES, PMC_CLIP_TEXT_DIR

    arch = {"layers": [1, 1, 1, 1], "width": 8, "heads": 2, "embed_dim": 16, "image_size": 32, "context_length": 24}
    text_dir = root / PMC_CLIP_TEXT_DIR
    text_dir.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "an", "of", "the", "mr", "ct", "scan", "image", "brain",
             "tumor", "no", "knee", "tear", "liver", "photo", "showing", "with", "without", "mri"]
    (text_dir / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(str(text_dir / "vocab.txt")).save_pretrained(text_dir)
    torch.manual_seed(seed)
    bert = BertModel(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=32))
    bert.config.save_pretrained(text_dir)
    image = ModifiedResNet(layers=arch["layers"], output_dim=arch["embed_dim"], heads=arch["heads"],
                           image_size=arch["image_size"], width=arch["width"])
    torch.save(image.state_dict(), root / PMC_CLIP_FILES["image"])
    torch.save(bert.state_dict(), root / PMC_CLIP_FILES["text"])
    torch.save(torch.randn(16, arch["embed_dim"]), root / PMC_CLIP_FILES["projection"])
    (root / PMC_CLIP_ARCH_FILE).write_text(json.dumps(arch))
    return root


def build_medclip(root: Path, seed: int = 0) -> Path:
    """A tiny random model in MedCLIP-ViT's release layout: one pytorch_model.bin with MedCLIPModel's
    keys, the Swin and BERT configs (and BERT's tokenizer) in vision_model/ and text_model/."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer, SwinConfig, SwinModel

    from radisim.evals.models import MEDCLIP_DIRS, MEDCLIP_WEIGHTS

    torch.manual_seed(seed)
    text_dir, vision_dir = root / MEDCLIP_DIRS["text"], root / MEDCLIP_DIRS["vision"]
    text_dir.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "an", "of", "the", "mr", "ct", "scan", "image", "brain",
             "tumor", "no", "knee", "tear", "photo", "showing", "with", "without", "mri"]
    (text_dir / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(str(text_dir / "vocab.txt")).save_pretrained(text_dir)
    bert = BertModel(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=80))
    swin = SwinModel(SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=2))
    bert.config.save_pretrained(text_dir)
    swin.config.save_pretrained(vision_dir)
    state = {**{f"text_model.model.{k}": v for k, v in bert.state_dict().items()},
             **{f"vision_model.model.{k}": v for k, v in swin.state_dict().items()},
             "text_model.projection_head.weight": torch.randn(12, 16), "vision_model.projection_head.weight": torch.randn(12, 16),
             "logit_scale": torch.tensor(2.6593)}
    torch.save(state, root / MEDCLIP_WEIGHTS)
    return root
