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
