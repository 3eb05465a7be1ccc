"""Image embeddings, computed once per (model, image split) with Ray Data and cached on disk.

Cache key = sha256 of the NOTE: the model fingerprint (hashes every weight), the pool fingerprint
(every image id and pixel, `ImagePool.fingerprint`), the model's `describe()` (family, open_clip /
transformers version, the eval preprocess as it prints) and `EMBED_CODE_VERSION` (bumped whenever the
code that turns pixels into embeddings changes). Entries are `<cache_dir>/<key>.npy` (float32, (n, D),
L2-normalised, pool row order) with the note as `<key>.json`; an entry is used only when its note
exists and equals the expected one field by field and the array has the pool's row count, else it is
recomputed and overwritten.

The Ray lines are marked `# [ray]`: the pool becomes a dataset of (row, image bytes) blocks, and
`map_batches` runs `_EmbedActor`s from an actor pool. Each actor builds the model itself from the
`ModelRef` (name, pretrained, checkpoint): models are never pickled. The caller owns `ray.init`.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datasets.base import ImagePool
from .models import DEFAULT_FAMILY, load_model

#: Version of the pixels -> embedding code (decode, RGB conversion, the family's encode_images).
EMBED_CODE_VERSION = "2"


@dataclass(frozen=True)
class ModelRef:
    """What to evaluate: a model of a `family` (`radisim.evals.models`; default open_clip: a bundled
    config, open_clip name or hf-hub id, with `pretrained` weights or one of our `checkpoint`
    directories; "transformers": a hub id or save_pretrained folder); `label` names it in reports."""

    name: str
    pretrained: str | None = None
    checkpoint: str | None = None
    siglip: bool = False
    label: str | None = None
    family: str = DEFAULT_FAMILY

    @property
    def display(self) -> str:
        if self.label:
            return self.label
        if self.family != DEFAULT_FAMILY:
            return f"{self.family}:{self.name}"
        return f"{self.name}@{Path(self.checkpoint).name}" if self.checkpoint else (
            f"{self.name}:{self.pretrained}" if self.pretrained else self.name)

    def load(self, device: str = "cpu"):
        """The model as a `radisim.evals.models.ZeroShotModel`."""
        return load_model(self, device)


def cache_note(model, model_ref: ModelRef, pool: ImagePool) -> dict[str, str]:
    """Everything an embedding depends on; its hash is the cache key and it is checked on read."""
    return {"model_fingerprint": model.fingerprint, "pool_fingerprint": pool.fingerprint, "n": str(len(pool)),
            "embed_code_version": EMBED_CODE_VERSION, **{f"model.{k}": v for k, v in model.describe().items()}}


def cache_key(note: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(note, sort_keys=True).encode()).hexdigest()[:24]


def _png(image: bytes | np.ndarray) -> bytes:
    if not isinstance(image, np.ndarray):
        return bytes(image)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class _EmbedActor:
    """Loads the model once per actor; embeds batches of encoded images with its eval transform.

    `compute_embeddings` subclasses it with `model_ref` / `expected_fingerprint` as class attributes
    (small, pickled with the class) instead of constructor arguments, which Ray would park in the
    object store and warn about for restartable actors.
    """

    model_ref: ModelRef
    expected_fingerprint: str | None = None

    def __init__(self):
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = self.model_ref.load(device)
        expected = self.expected_fingerprint
        if expected and self.model.fingerprint != expected:
            raise RuntimeError(f"model {self.model_ref.display} changed under the evaluation: fingerprint "
                               f"{self.model.fingerprint} != {expected}")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"row": batch["row"], "embedding": _embed_batch(self.model, batch["image"])}


def _embed_batch(model, images) -> np.ndarray:
    """Encoded images (bytes) or pixel arrays -> (n, D) L2-normalised float32, with the model's eval transform."""
    from PIL import Image

    def pil(im):
        return Image.fromarray(np.asarray(im, dtype=np.uint8)) if isinstance(im, np.ndarray) else Image.open(io.BytesIO(im))

    return model.encode_images([pil(im).convert("RGB") for im in images])


def _embed_in_driver(model, pool: ImagePool, batch_size: int) -> np.ndarray:
    return np.concatenate([_embed_batch(model, pool.images[i:i + batch_size]) for i in range(0, len(pool), batch_size)])


def compute_embeddings(
    model_ref: ModelRef, pool: ImagePool, expected_fingerprint: str | None = None,
    batch_size: int = 64, num_actors: int = 1, num_cpus_per_actor: float | None = None,
    bundle=None, driver_max_images: int = 0,
) -> np.ndarray:
    """(len(pool), D) L2-normalised image embeddings, through Ray Data (needs ray.init).

    On CPU an actor asks for `num_cpus_per_actor` (default min(2, cluster CPUs)): Ray sets the
    actor's OMP_NUM_THREADS from it, so torch in a 1-CPU actor would run on one thread.

    A pool of at most `driver_max_images` images on a cluster without GPUs, with one actor asked for,
    is embedded in this process with `bundle` (the model the caller already loaded): the actor would
    run the same code on the same kind of CPU, after a process start, a torch import and a model
    build that cost more than the work for such a pool (docs/performance.md).
    """
    import pyarrow as pa
    import ray

    resources = ray.cluster_resources()  # [ray]
    use_gpu = resources.get("GPU", 0) > 0
    if bundle is not None and not use_gpu and num_actors == 1 and len(pool) <= driver_max_images:
        return _embed_in_driver(bundle, pool, batch_size)
    table = pa.table({"row": np.arange(len(pool), dtype=np.int64),
                      "image": pa.array([_png(im) for im in pool.images], type=pa.binary())})
    blocks = [table.slice(i, batch_size) for i in range(0, len(pool), batch_size)]
    if num_cpus_per_actor is None:
        num_cpus_per_actor = float(min(2.0, max(1.0, resources.get("CPU", 1.0))))
    ds = ray.data.from_arrow(blocks)  # [ray]
    actor = type("EmbedActor", (_EmbedActor,), {"model_ref": model_ref, "expected_fingerprint": expected_fingerprint})
    ds = ds.map_batches(  # [ray]
        actor,
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        num_gpus=1 if use_gpu else 0,
        num_cpus=0 if use_gpu else num_cpus_per_actor,
    )
    rows, embeddings = [], []
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):  # [ray]
        rows.append(batch["row"])
        embeddings.append(batch["embedding"])
    out = np.empty((len(pool), embeddings[0].shape[1]), dtype=np.float32)
    out[np.concatenate(rows)] = np.concatenate(embeddings)
    return out


def embed_pool(
    model_ref: ModelRef, pool: ImagePool, model_fingerprint: str, cache_dir: str | Path | None,
    batch_size: int = 64, num_actors: int = 1, num_cpus_per_actor: float | None = None,
    bundle=None, driver_max_images: int = 0,
) -> tuple[np.ndarray, bool]:
    """Cached embeddings of a pool -> (embeddings, cache_hit). `cache_dir=None` disables the cache.
    `bundle` is the loaded model (a `ZeroShotModel`): its `describe()` is part of the key."""
    if bundle is None:
        bundle = model_ref.load("cpu")
    note = cache_note(bundle, model_ref, pool)
    path = Path(cache_dir) / f"{cache_key(note)}.npy" if cache_dir is not None else None
    if path is not None and path.is_file() and _note_matches(path.with_suffix(".json"), note):
        cached = np.load(path)
        if cached.shape[0] == len(pool):
            return cached, True
    embeddings = compute_embeddings(model_ref, pool, model_fingerprint, batch_size, num_actors, num_cpus_per_actor,
                                    bundle=bundle, driver_max_images=driver_max_images)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, embeddings)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old or the whole new file
        path.with_suffix(".json").write_text(json.dumps(
            {"note": note, "model": model_ref.display, "pool": pool.name, "dim": int(embeddings.shape[1])}, indent=2))
    return embeddings, False


def _note_matches(path: Path, note: dict[str, str]) -> bool:
    """The cached array's note says it was made from exactly this model, pool, preprocess and code."""
    try:
        return json.loads(path.read_text()).get("note") == note
    except (OSError, ValueError, AttributeError):
        return False
