"""Ray Data: phase-tagged Parquet manifests -> decoded, resized, tokenized batches streamed to Train workers.

One image-text pair travels: Parquet row (image bytes, caption, phase) -> phase/replay selection ->
`Preprocess` actor (decode, grayscale, resize, tokenize) -> streaming split into each Train worker's
shard -> `iter_torch_batches`. Images leave the pipeline as uint8: the trainer normalises them on its
device, which moves 4x fewer bytes through the object store than float32 would.
"""
from __future__ import annotations

import io
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TRAIN_COLUMNS = ["image_id", "image", "caption", "phase"]


def phase_counts(train_dir: str) -> dict[str, int]:
    """Rows per phase tag, from the `phase` column alone (cheap: Parquet reads one column)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    table = pads.dataset(train_dir, format="parquet").to_table(columns=["phase"])
    counts = pc.value_counts(table.column("phase"))
    return {str(item["values"]): int(item["counts"]) for item in counts.to_pylist()}


def replay_keep_probability(counts: dict[str, int], own: list[str], earlier: list[str], share: float) -> float:
    """Probability of keeping an earlier-phase row so that replay rows are `share` of the phase's stream."""
    if share <= 0 or not earlier:
        return 0.0
    n_own = sum(counts.get(p, 0) for p in own)
    n_earlier = sum(counts.get(p, 0) for p in earlier)
    if n_earlier == 0:
        return 0.0
    wanted = share / (1 - share) * n_own
    return min(1.0, wanted / n_earlier)


def _row_hash(image_id: str, caption: str, seed: int) -> float:
    """A stable pseudo-random number in [0, 1) per row: replay sampling is the same on every epoch/retry."""
    return zlib.crc32(f"{seed}|{image_id}|{caption}".encode()) / 2**32


def sample_replay(batch, own: list[str], keep_p: float, seed: int):
    """Keep every row of the phase's own data and a `keep_p` fraction of earlier phases' rows."""
    import pyarrow as pa

    phases = batch.column("phase").to_pylist()
    ids = batch.column("image_id").to_pylist()
    captions = batch.column("caption").to_pylist()
    keep = [p in own or _row_hash(i, c, seed) < keep_p for p, i, c in zip(phases, ids, captions)]
    return batch.filter(pa.array(keep))


class Preprocess:
    """Ray Data actor: decode PNG/JPEG bytes, grayscale, resize, tokenize. Undecodable images are
    dropped and counted, never fatal (a warning names how many and a sample of ids)."""

    def __init__(self, image_size: int, model_name: str):
        import open_clip

        from radisim.platform.models import register_configs

        register_configs()
        self.size = image_size
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.rejected = 0

    def _decode(self, data: bytes) -> np.ndarray:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("L")
            if img.size != (self.size, self.size):
                img = img.resize((self.size, self.size), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)

    def __call__(self, batch: dict) -> dict:
        images, keep, bad = [], [], []
        for i, data in enumerate(batch["image"]):
            try:
                images.append(self._decode(data))
                keep.append(i)
            except Exception:  # PIL raises many types for corrupt files
                bad.append(str(batch["image_id"][i]))
        if bad:
            self.rejected += len(bad)
            log.warning("skipped %d undecodable images (total %d), e.g. %s", len(bad), self.rejected, bad[:3])
        captions = [str(batch["caption"][i]) for i in keep]
        text = self.tokenizer(captions).numpy() if captions else np.zeros((0, self.tokenizer.context_length), np.int64)
        image = np.stack(images) if images else np.zeros((0, self.size, self.size), np.uint8)
        return {"image": image, "text": text.astype(np.int64)}


@dataclass(frozen=True)
class PhaseData:
    """What one curriculum phase streams: its own data tags and a replay share of earlier ones."""

    own: list[str]
    earlier: list[str]
    replay: float


def phase_dataset(
    train_dir: str,
    phase: PhaseData,
    image_size: int,
    model_name: str,
    seed: int = 0,
    preprocess_actors: int = 1,
    preprocess_cpus: float = 0.5,
):
    """A lazy Ray Dataset for one phase; nothing is read until a Train worker iterates its shard."""
    import ray
    from ray.data.expressions import col

    counts = phase_counts(train_dir)
    missing = [p for p in phase.own if counts.get(p, 0) == 0]
    if missing:
        raise ValueError(f"{train_dir} has no rows tagged {missing} (rows per phase: {counts})")
    keep_p = replay_keep_probability(counts, phase.own, phase.earlier, phase.replay)
    wanted = phase.own + (phase.earlier if keep_p > 0 else [])

    ds = ray.data.read_parquet(train_dir, columns=TRAIN_COLUMNS)
    ds = ds.filter(expr=col("phase").is_in(wanted))
    if keep_p > 0:
        ds = ds.map_batches(
            sample_replay,
            batch_format="pyarrow",
            fn_kwargs={"own": phase.own, "keep_p": keep_p, "seed": seed},
            num_cpus=0.1,
        )
    return ds.map_batches(
        Preprocess,
        fn_constructor_kwargs={"image_size": image_size, "model_name": model_name},
        compute=ray.data.ActorPoolStrategy(size=preprocess_actors),
        num_cpus=preprocess_cpus,
        batch_size=256,
        batch_format="numpy",
    )


def expected_rows(train_dir: str, phase: PhaseData) -> int:
    counts = phase_counts(train_dir)
    keep_p = replay_keep_probability(counts, phase.own, phase.earlier, phase.replay)
    return sum(counts.get(p, 0) for p in phase.own) + round(keep_p * sum(counts.get(p, 0) for p in phase.earlier))


def train_dir(root: str) -> str:
    path = Path(root) / "train" if "://" not in root else f"{root.rstrip('/')}/train"
    return str(path)
