"""Zero-shot classifiers from prompt sets (the data files in `prompts/`) and the scores they give.

A class (or one side of a finding / organ pair) is the mean of the L2-normalised text embeddings of
its prompts, renormalised. Scores per kind, with s = cosine(image, class) and t = the model's logit
scale (capped at 100):
  single-label / localization   softmax(t * s) over the classes (localization: the regions, with the
                                prompts of each example's queried organ)
  binary                        P(positive) = softmax(t * [s_negative, s_positive])[1]
  multi-label                   per label, P(present) = softmax(t * [s_absent, s_present])[1]
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from .models import MAX_LOGIT_SCALE  # one cap for every model family
from .tasks import Subtask

PROMPTS_DIR = Path(__file__).with_name("prompts")

#: list of prompts -> (len(prompts), D) L2-normalised embeddings
TextEncoder = Callable[[list[str]], np.ndarray]


class PromptBook:
    """The prompt data files: templates, class synonyms, finding pairs, organ pairs, localization."""

    def __init__(self, directory: str | Path = PROMPTS_DIR):
        self.directory = Path(directory)
        load = lambda name: yaml.safe_load((self.directory / f"{name}.yaml").read_text())  # noqa: E731
        self.templates: dict[str, list[str]] = load("templates")
        self.class_sets: dict[str, dict[str, list[str]]] = load("classes")
        self.findings: dict[str, dict[str, list[str]]] = load("findings")
        self.organs: dict = load("organs")
        self.localization: dict = load("localization")

    def _lookup(self, table: dict, key: str, file: str):
        try:
            return table[key]
        except KeyError:
            raise KeyError(f"{self.directory / file}: no entry {key!r} (has: {', '.join(map(str, table))})") from None

    def _wrap(self, subtask: Subtask, phrases: list[str]) -> list[str]:
        templates = self._lookup(self.templates, subtask.templates, "templates.yaml")
        return [t.format(p) for p in phrases for t in templates]

    def class_prompts(self, subtask: Subtask) -> list[list[str]]:
        """Prompts per class in class order (single-label: class set; binary: [negative, positive])."""
        if subtask.kind == "binary":
            pair = self._lookup(self.findings, subtask.prompts, "findings.yaml")
            return [self._wrap(subtask, pair["negative"]), self._wrap(subtask, pair["positive"])]
        if subtask.kind != "single-label":
            raise ValueError(f"class prompts are for single-label/binary subtasks, {subtask.id} is {subtask.kind}")
        synonyms = self._lookup(self.class_sets, subtask.prompts, "classes.yaml")
        return [self._wrap(subtask, self._lookup(synonyms, c, f"classes.yaml:{subtask.prompts}")) for c in subtask.classes]

    def organ_synonyms(self, organ: str) -> list[str]:
        return self._lookup(self.organs["organs"], organ, "organs.yaml:organs")

    def organ_prompts(self, organ: str) -> list[list[str]]:
        """[absent prompts, present prompts] of one organ."""
        names = self.organ_synonyms(organ)
        return [[t.format(organ=n) for n in names for t in self.organs[side]] for side in ("absent", "present")]

    def region_prompts(self, subtask: Subtask, organ: str) -> list[list[str]]:
        """Prompts per region (subtask.classes order) for 'where is <organ>'."""
        names = self.organ_synonyms(organ)
        regions = self.localization["regions"]
        return [
            [t.format(organ=n, region=r) for n in names for r in self._lookup(regions, region, "localization.yaml")
             for t in self.localization["templates"]]
            for region in subtask.classes
        ]


@lru_cache(maxsize=2)
def default_book() -> PromptBook:
    return PromptBook()


def make_text_encoder(model, batch_size: int = 256) -> TextEncoder:
    """A memoising text encoder of a `radisim.evals.models.ZeroShotModel` (or an open_clip `ClipBundle`)."""
    from .models import OpenClipModel, ZeroShotModel

    model = model if isinstance(model, ZeroShotModel) else OpenClipModel(model)
    cache: dict[str, np.ndarray] = {}

    def encode(prompts: list[str]) -> np.ndarray:
        todo = [p for p in dict.fromkeys(prompts) if p not in cache]
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            cache.update(zip(chunk, model.encode_texts(chunk)))
        return np.stack([cache[p] for p in prompts]) if prompts else np.zeros((0, 0), np.float32)

    return encode


def logit_scale_of(model) -> float:
    """The scores' temperature: a ZeroShotModel's `logit_scale`, or exp(logit_scale) of a torch CLIP, capped."""
    from .models import ZeroShotModel

    if isinstance(model, ZeroShotModel):
        return model.logit_scale
    return float(min(float(model.logit_scale.detach().exp()), MAX_LOGIT_SCALE))


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def class_embeddings(encoder: TextEncoder, prompt_sets: list[list[str]]) -> np.ndarray:
    """(K, D): per class, the renormalised mean of its L2-normalised prompt embeddings."""
    emb = _normalise(encoder([p for prompts in prompt_sets for p in prompts]))  # one encoder call
    bounds = np.cumsum([0] + [len(p) for p in prompt_sets])
    return np.stack([_normalise(emb[a:b].mean(0)) for a, b in zip(bounds[:-1], bounds[1:])])


def prompts_of(subtask: Subtask, queries: np.ndarray | None = None, book: PromptBook | None = None) -> list[str]:
    """Every prompt a subtask's classifiers use (to encode them all in one batch up front)."""
    book = book or default_book()
    if subtask.kind == "multi-label":
        sets = [s for c in subtask.classes for s in book.organ_prompts(c)]
    elif subtask.kind == "localization":
        sets = [s for q in np.unique(queries) for s in book.region_prompts(subtask, str(q))]
    else:
        sets = book.class_prompts(subtask)
    return [p for prompts in sets for p in prompts]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def classifier(subtask: Subtask, encoder: TextEncoder, book: PromptBook | None = None, query: str | None = None) -> np.ndarray:
    """Class embeddings of a subtask: (K, D); multi-label: (K, 2, D) = per label [absent, present];
    localization: (4, D) for the organ `query`."""
    book = book or default_book()
    if subtask.kind == "multi-label":
        return np.stack([class_embeddings(encoder, book.organ_prompts(c)) for c in subtask.classes])
    if subtask.kind == "localization":
        if query is None:
            raise ValueError(f"localization subtask {subtask.id} needs the queried organ")
        return class_embeddings(encoder, book.region_prompts(subtask, query))
    return class_embeddings(encoder, book.class_prompts(subtask))


def score(
    subtask: Subtask,
    image_embeddings: np.ndarray,
    encoder: TextEncoder,
    logit_scale: float,
    queries: np.ndarray | None = None,
    book: PromptBook | None = None,
) -> np.ndarray:
    """Scores of the examples (rows of `image_embeddings`, L2-normalised) in the metrics' input shape."""
    img = _normalise(np.asarray(image_embeddings, dtype=np.float64))
    if subtask.kind == "multi-label":
        pairs = classifier(subtask, encoder, book)  # (K, 2, D)
        return softmax(logit_scale * np.einsum("nd,ksd->nks", img, pairs))[..., 1]
    if subtask.kind == "localization":
        out = np.zeros((len(img), len(subtask.classes)))
        for organ in np.unique(queries):
            mask = queries == organ
            out[mask] = softmax(logit_scale * img[mask] @ classifier(subtask, encoder, book, organ).T)
        return out
    probs = softmax(logit_scale * img @ classifier(subtask, encoder, book).T)
    return probs[:, 1] if subtask.kind == "binary" else probs
