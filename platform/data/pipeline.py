"""Ray Data: phase-tagged Parquet manifests -> decoded, resized, tokenized batches streamed to Train workers.

One image-text pair travels: Parquet row (image bytes, caption, phase) -> phase/replay selection ->
`preprocess` tasks (decode, grayscale, resize, tokenize) -> each Train worker's shard (a streaming
split among several workers, the whole stream for one: `runner.data_config`) -> `iter_torch_batches`.
Images leave the pipeline as uint8: the trainer normalises them on its device, which moves 4x fewer
bytes through the object store than float32 would.
"""
from __future__ import annotations

import functools
import io
import logging
import math
import zlib
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


def _row_hash(image_id: str, caption: str, seed: int) -> float:
    """A stable pseudo-random number in [0, 1) per row: sampling is the same on every epoch and retry."""
    return zlib.crc32(f"{seed}|{image_id}|{caption}".encode()) / 2**32


def sample_mix(batch, mix: dict[str, float], seed: int):
    """Keep each row with its tag's keep-probability (1.0 = always), decided by a stable row hash."""
    import pyarrow as pa

    phases = batch.column("phase").to_pylist()
    ids = batch.column("image_id").to_pylist()
    captions = batch.column("caption").to_pylist()
    keep = [mix.get(p, 0.0) >= 1.0 or _row_hash(i, c, seed) < mix.get(p, 0.0) for p, i, c in zip(phases, ids, captions)]
    return batch.filter(pa.array(keep))


@functools.lru_cache(maxsize=4)
def _tokenizer(model_name: str):
    """Per worker process: Ray reuses task workers across batches and phases, so this loads once."""
    import open_clip

    from radisim.platform.models import register_configs

    register_configs()
    return open_clip.get_tokenizer(model_name)


def is_dicom(data: bytes) -> bool:
    """DICOM Part 10 bytes: a 128-byte preamble, then "DICM"."""
    return data[128:132] == b"DICM"


def decode_gray(data: bytes, size: int) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 [size, size] grayscale. DICOM bytes (a manifest that stores the files
    themselves) go through `imaging.read_dicom` (CT rescaled to HU and windowed, MR/DR percentile
    scaled, the middle frame of a multi-frame file), then the same resize."""
    from PIL import Image

    if is_dicom(data):
        from radisim.platform.data.imaging import read_dicom, resize_gray

        return resize_gray(read_dicom(data)[0], size)
    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("L")
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def preprocess(batch: dict, image_size: int, model_name: str, hard_negatives: int = 0, seed: int = 0,
               details: dict | None = None) -> dict:
    """Decode, grayscale, resize, tokenize. Undecodable images are dropped and counted in a warning
    that names a sample of their ids; they never stop the phase.

    `hard_negatives` = k > 0 adds k counterfactual captions per row (curriculum.counterfactuals, by the
    row's phase tag), tokenized as `neg_text` [B, k, context], and `neg_mask` [B, k] (False where no
    counterfactual exists, e.g. a caption with no vocabulary term to change), and `group` [B] (see
    `caption_groups`). `details` (`grading_details`): the real grading details that grading captions'
    counterfactuals draw from.

    A plain function rather than an actor: Ray runs it in pooled task workers that survive from one
    phase's Dataset to the next, where an actor pool would start new processes for every phase.
    """
    images, keep, bad = [], [], []
    for i, data in enumerate(batch["image"]):
        try:
            images.append(decode_gray(data, image_size))
            keep.append(i)
        except Exception:  # PIL raises many types for corrupt files
            bad.append(str(batch["image_id"][i]))
    if bad:
        log.warning("skipped %d undecodable images, e.g. %s", len(bad), bad[:3])
    tokenizer = _tokenizer(model_name)
    captions = [str(batch["caption"][i]) for i in keep]
    image = np.stack(images) if images else np.zeros((0, image_size, image_size), np.uint8)
    out = {"image": image, "text": _tokens(tokenizer, captions)}
    if hard_negatives:
        phases = [str(batch["phase"][i]) for i in keep]
        out["neg_text"], out["neg_mask"] = _counterfactual_tokens(captions, phases, hard_negatives, seed, tokenizer,
                                                                  details)
        out["group"] = caption_groups(captions)
    return out


def caption_groups(captions: list[str]) -> np.ndarray:
    """int64 id of each caption's (modality, body part), as the tagger reads them from its text: the
    loop's blind counterfactual check pairs images of one group (loop.counterfactual_hits). Read from
    the caption, not from tag columns, so that any manifest has it."""
    from radisim.curriculum.tagger import tag_caption

    tags = (tag_caption(c) for c in captions)
    return np.array([zlib.crc32(f"{t.modality}|{t.anatomy}".encode()) for t in tags], dtype=np.int64)


def _counterfactual_tokens(captions: list[str], phases: list[str], k: int, seed: int, tokenizer, details=None):
    from radisim.curriculum.counterfactuals import counterfactuals

    negs = [counterfactuals(c, p, k, seed, details) for c, p in zip(captions, phases)]
    mask = np.array([[n is not None for n in row] for row in negs], dtype=bool).reshape(len(captions), k)
    tokens = _tokens(tokenizer, [n or "" for row in negs for n in row])
    return tokens.reshape(len(captions), k, tokenizer.context_length), mask  # not -1: B may be 0


def grading_details(train_dir: str, max_captions: int = 50_000) -> dict:
    """The grading details (curriculum.counterfactuals.detail_pool) of the first `max_captions`
    grading-tagged captions: read once on the driver, a few KB, sent with every `preprocess` task."""
    import pyarrow.dataset as pads

    from radisim.curriculum.counterfactuals import detail_pool

    captions: list[str] = []
    dataset = pads.dataset(train_dir, format="parquet")
    scan = dataset.scanner(columns=["caption"], filter=pads.field("phase") == "grading")
    for batch in scan.to_batches():
        captions += batch.column("caption").to_pylist()
        if len(captions) >= max_captions:
            break
    return detail_pool(captions[:max_captions])


def _tokens(tokenizer, texts: list[str]) -> np.ndarray:
    """int64 [len(texts), context]; an empty list gives an empty array (the tokenizers reject one)."""
    if not texts:
        return np.zeros((0, tokenizer.context_length), np.int64)
    return tokenizer(texts).numpy().astype(np.int64)


def phase_dataset(
    train_dir: str,
    mix: dict[str, float],
    image_size: int,
    model_name: str,
    seed: int = 0,
    preprocess_cpus: float = 0.5,
    samples: int = 0,
    hard_negatives: int = 0,
    global_shuffle: bool = True,
):
    """A lazy Ray Dataset for one phase: rows whose tag is in `mix`, each kept with its tag's
    probability (curriculum.pacing.phase_mix). Nothing is read until a Train worker iterates.

    `samples`: how many rows the phase will consume. When one pass over the rows holds fewer, the
    stream chains `passes_needed` passes (each draws its own sample of the partial tags), so the
    phase never hits an epoch boundary, where a new streaming execution starts and the trainer waits
    on data (docs/performance.md).

    `global_shuffle`: each pass is put in its own seeded global order (`global_order`), so sources
    and files mix and no batch holds two captions of one image as mutual negatives."""
    import ray
    from ray.data.expressions import col

    counts = phase_counts(train_dir)
    wanted = [tag for tag, p in mix.items() if p > 0]
    missing = [tag for tag, p in mix.items() if p >= 1.0 and counts.get(tag, 0) == 0]
    if missing or not wanted:
        raise ValueError(f"{train_dir} has no rows tagged {missing or list(mix)} (rows per phase: {counts})")

    def one_pass(k: int):
        ds = ray.data.read_parquet(train_dir, columns=TRAIN_COLUMNS)
        ds = ds.filter(expr=col("phase").is_in(wanted))  # pushed down into the Parquet read
        if any(p < 1.0 for p in mix.values()):
            ds = ds.map_batches(sample_mix, batch_format="pyarrow", fn_kwargs={"mix": mix, "seed": seed + 7919 * k},
                                num_cpus=0.1)
        return global_order(ds, seed + 7919 * k, expected_rows(counts, mix)) if global_shuffle else ds

    # counterfactuals of grading captions take real details from the manifest (counterfactuals.detail_pool)
    details = grading_details(train_dir) if hard_negatives and mix.get("grading", 0) > 0 else None
    ds = one_pass(0)
    passes = passes_needed(expected_rows(counts, mix), samples)
    if passes > 1:
        ds = ds.union(*(one_pass(k) for k in range(1, passes)))
    return ds.map_batches(
        preprocess,
        fn_kwargs={"image_size": image_size, "model_name": model_name, "hard_negatives": hard_negatives, "seed": seed,
                   "details": details},
        num_cpus=preprocess_cpus,
        batch_size=256,
        batch_format="numpy",
    )


def passes_needed(rows_per_pass: int, samples: int) -> int:
    """Passes over a phase's rows that cover `samples` (with a 10% margin for the sampled tags and the
    batches each worker drops at the end)."""
    return max(1, math.ceil(1.1 * samples / max(rows_per_pass, 1)))


def expected_rows(counts: dict[str, int], mix: dict[str, float]) -> int:
    return round(sum(p * counts.get(tag, 0) for tag, p in mix.items()))


def train_dir(root: str) -> str:
    path = Path(root) / "train" if "://" not in root else f"{root.rstrip('/')}/train"
    return str(path)


# ---------------------------------------------------------------------------------- data order hygiene
ORDER_COLUMN = "_order"
#: Rows per sort partition: each partition is sorted in one task's memory (images included).
ROWS_PER_SORT_PARTITION = 5000


def _round_of(image_id: str, phase: str, seed: int) -> int:
    """The caption's round: its phase's index cyclically shifted by a per-image seeded offset. Captions
    of one image carry distinct phases (one row per image x phase caption), hence distinct rounds."""
    from radisim.curriculum.phases import PHASES

    n = len(PHASES)
    index = PHASES.index(phase) if phase in PHASES else zlib.crc32(phase.encode()) % n
    return (index + zlib.crc32(f"{seed}|{image_id}".encode())) % n


def order_keys(batch, seed: int):
    """Adds `_order` = round (see `_round_of`) + a stable per-row random number in [0, 1)."""
    import pyarrow as pa

    ids = batch.column("image_id").to_pylist()
    phases = batch.column("phase").to_pylist()
    captions = batch.column("caption").to_pylist()
    order = [_round_of(str(i), str(p), seed) + _row_hash(str(i), str(c), seed) for i, p, c in zip(ids, phases, captions)]
    return batch.append_column(ORDER_COLUMN, pa.array(order, pa.float64()))


def sort_boundaries(n_rows: int) -> list[float]:
    """Range boundaries of the `_order` sort: every round split into equal key ranges of about
    ROWS_PER_SORT_PARTITION rows (Ray Data's default would be 200 partitions whatever the size)."""
    from radisim.curriculum.phases import PHASES

    n = len(PHASES)
    per_round = max(1, math.ceil(n_rows / n / ROWS_PER_SORT_PARTITION))
    return [r + j / per_round for r in range(n) for j in range(per_round)][1:]


def global_order(ds, seed: int, n_rows: int = 0):
    """A seeded global shuffle that keeps an image's captions apart: rows sorted by (round, random key).
    Within a round each image appears at most once, so a batch can only hold two captions of one image
    where it straddles a round boundary (a few batches per pass, not one row in nine). The sort is one
    all-to-all exchange per pass, a full shuffle of every file and source (a local shuffle buffer only
    mixes neighbouring rows: of one file, and of one image whose captions are written side by side).
    `n_rows`: about how many rows the pass holds (sizes the sort's partitions)."""
    ds = ds.map_batches(order_keys, batch_format="pyarrow", fn_kwargs={"seed": seed}, num_cpus=0.1)
    return ds.sort(ORDER_COLUMN, boundaries=sort_boundaries(n_rows)).drop_columns([ORDER_COLUMN])


def twin_rate(image_ids: list[str], batch_size: int) -> float:
    """Share of the rows in full batches (consecutive `batch_size` rows) whose image appears more than
    once in their batch: rows the contrastive loss counts as negatives of their own image."""
    from collections import Counter

    n_batches = len(image_ids) // batch_size
    twins = 0
    for b in range(n_batches):
        counts = Counter(image_ids[b * batch_size:(b + 1) * batch_size])
        twins += sum(c for c in counts.values() if c > 1)
    return twins / max(1, n_batches * batch_size)


# ------------------------------------------------------------------------ device-side decode (GPU hosts)
# With `decode_on_device`, the CPU tasks ship JPEG bytes instead of pixels and the Train worker decodes
# them on its GPU (nvJPEG through torchvision), resizes there and normalises there: the host's cores
# then only read, tokenize and copy. Rows that are not JPEG (PNG, DICOM: windowing is host work) are
# decoded on the host as usual and travel as pixels in the same columns.

#: `image_kind` values: the row's `image_bytes` hold JPEG bytes / raw [size, size] uint8 pixels.
JPEG_BYTES, RAW_PIXELS = 0, 1


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def preprocess_encoded(batch: dict, image_size: int, model_name: str) -> dict:
    """The host half of device decode: `image_bytes` uint8 [B, L] (each row's JPEG bytes, or its
    host-decoded [image_size, image_size] pixels for other formats, zero-padded to the batch's longest
    row: a fixed-width array moves zero-copy through the object store and `iter_torch_batches`),
    `image_nbytes` int64 [B], `image_kind` int8 [B] (JPEG_BYTES / RAW_PIXELS), `text` as `preprocess`.
    Undecodable non-JPEG rows are dropped and counted as in `preprocess`; a corrupt JPEG fails on the
    device, where `device_decode` names the batch row."""
    payloads, kinds, keep, bad = [], [], [], []
    for i, data in enumerate(batch["image"]):
        data = bytes(data)
        try:
            if is_jpeg(data):
                payloads.append(np.frombuffer(data, np.uint8))
                kinds.append(JPEG_BYTES)
            else:
                payloads.append(decode_gray(data, image_size).reshape(-1))
                kinds.append(RAW_PIXELS)
            keep.append(i)
        except Exception:
            bad.append(str(batch["image_id"][i]))
    if bad:
        log.warning("skipped %d undecodable images, e.g. %s", len(bad), bad[:3])
    width = max((len(p) for p in payloads), default=0)
    packed = np.zeros((len(payloads), width), np.uint8)
    for row, p in zip(packed, payloads):
        row[: len(p)] = p
    captions = [str(batch["caption"][i]) for i in keep]
    return {"image_bytes": packed, "image_nbytes": np.array([len(p) for p in payloads], np.int64),
            "image_kind": np.array(kinds, np.int8), "text": _tokens(_tokenizer(model_name), captions)}


def device_decode(batch: dict, image_size: int, device=None):
    """The device half: a batch of `preprocess_encoded` tensors -> uint8 [B, image_size, image_size] on
    `device` (default: where `image_bytes` is). JPEG rows are decoded in one batched
    `torchvision.io.decode_jpeg(..., device=...)` call (nvJPEG on CUDA; libjpeg-turbo on CPU, which
    is what the tests run) and resized with antialiased bilinear interpolation (the same filter as
    the host path's PIL BILINEAR); raw rows are reshaped. Output as `preprocess`'s `image`, ready for
    `loop.normalise` on the same device."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    data, nbytes, kind = batch["image_bytes"], batch["image_nbytes"].tolist(), batch["image_kind"].tolist()
    device = torch.device(device) if device is not None else data.device
    out = torch.empty((len(nbytes), image_size, image_size), dtype=torch.uint8, device=device)
    jpeg_rows = [i for i, k in enumerate(kind) if k == JPEG_BYTES]
    for i, k in enumerate(kind):
        if k == RAW_PIXELS:
            out[i] = data[i, : image_size * image_size].view(image_size, image_size).to(device)
    if jpeg_rows:
        host = data.cpu()  # decode_jpeg reads its inputs from host memory, also for device decode
        encoded = [host[i, : nbytes[i]] for i in jpeg_rows]
        try:
            decoded = decode_jpeg(encoded, mode=ImageReadMode.GRAY, device=device)
        except RuntimeError as err:
            raise ValueError(f"a JPEG in this batch (rows {jpeg_rows}) cannot be decoded: {err}") from None
        for i, img in zip(jpeg_rows, decoded):
            out[i] = _resize_gray_tensor(img, image_size)
    return out


def _resize_gray_tensor(img, size: int):
    """uint8 [1, H, W] -> uint8 [size, size], antialiased bilinear (as PIL's BILINEAR resize)."""
    import torch.nn.functional as F

    if tuple(img.shape[-2:]) == (size, size):
        return img[0]
    x = F.interpolate(img[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x[0, 0].round_().clamp_(0, 255).to(img.dtype)


def device_batch_options(device) -> dict:
    """`iter_torch_batches` options that keep the step from waiting on host-to-device copies: batches
    land on `device` (Ray's collate thread moves them), through pinned host memory on CUDA (an
    asynchronous copy), with the next 2 batches fetched while the current one trains."""
    import torch

    device = torch.device(device)
    return {"device": device, "pin_memory": device.type == "cuda", "prefetch_batches": 2}
