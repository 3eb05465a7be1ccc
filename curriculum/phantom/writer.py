"""The dataset writer: Parquet shards for the train split (one row per image-caption pair, tagged with
its phase) and the eval split (one row per image, a caption column per phase), plus `data_card.json`.

Identical inputs give byte-identical files. Every row carries `synthetic = True` and its `source`.
"""
from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np

from radisim.curriculum.phases import PHASE_INDEX, PHASES

from .case import PhantomCase, generate_case
from .catalog import COHORT_INDEX_OFFSET, COHORTS, EVAL_INDEX_OFFSET, catalog

_META = ("modality", "anatomy", "view", "organs", "target_organ", "target_region", "finding",
         "finding_region", "subtype", "grade")
_STATS = ("by_phase", "by_modality", "by_anatomy", "by_view", "by_finding", "by_cohort")


def _schema(split: str):
    import pyarrow as pa
    cols = [("image_id", pa.string()), ("image", pa.binary())]
    if split == "train":
        cols += [("caption", pa.string()), ("phase", pa.string()), ("phase_index", pa.int8())]
    cols += [(k, pa.list_(pa.string()) if k == "organs" else pa.string()) for k in _META]
    cols += [("source", pa.string()), ("synthetic", pa.bool_())]
    if split == "eval":
        cols += [(f"caption_{p}", pa.string()) for p in PHASES]
    return pa.schema(cols)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _split_cases(split: str, n: int, n_cohort: int) -> list[tuple[int, str, str | None]]:
    """(generator index, image_id, cohort) of a split: `n` general cases, then `n_cohort` cohort cases
    taking the COHORTS in turn."""
    offset = 0 if split == "train" else EVAL_INDEX_OFFSET
    names = list(COHORTS)
    return ([(offset + i, f"phantom-{split}-{i:06d}", None) for i in range(n)]
            + [(COHORT_INDEX_OFFSET + offset + j, f"phantom-{split}-cohort-{j:06d}", names[j % len(names)])
               for j in range(n_cohort)])


class _Shards:
    """Column buffers flushed to `part-NNNNN.parquet` files of at most `rows_per_shard` rows; a case's
    rows never straddle two shards."""

    def __init__(self, out: Path, schema, rows_per_shard: int):
        self.out, self.schema, self.rows_per_shard = out, schema, rows_per_shard
        self.files: list[str] = []
        self.rows = self._empty()

    def _empty(self) -> dict[str, list]:
        return {name: [] for name in self.schema.names}

    def add(self, rows: list[dict]) -> None:
        if self.rows["image_id"] and len(self.rows["image_id"]) + len(rows) > self.rows_per_shard:
            self.flush()
        for row in rows:
            for key, val in row.items():
                self.rows[key].append(val)

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        if not self.rows["image_id"]:
            return
        name = f"part-{len(self.files):05d}.parquet"
        pq.write_table(pa.table(self.rows, schema=self.schema), self.out / name)
        self.files.append(name)
        self.rows = self._empty()


def _case_rows(split: str, case: PhantomCase, image_id: str, cohort: str | None) -> list[dict]:
    """Train: one row per phase caption of the case; eval: one row with a caption column per phase
    (None where the case has no caption of that phase)."""
    base = {"image_id": image_id, "image": _png(case.image),
            **{k: (list(case.organs) if k == "organs" else getattr(case, k)) for k in _META},
            "source": "phantom" if cohort is None else f"phantom/{cohort}", "synthetic": True}
    if split == "train":
        return [{**base, "caption": case.captions[p], "phase": p, "phase_index": PHASE_INDEX[p]}
                for p in PHASES if p in case.captions]
    return [{**base, **{f"caption_{p}": case.captions.get(p) for p in PHASES}}]


def _count(stats: dict[str, Counter], case: PhantomCase, cohort: str | None) -> None:
    stats["by_phase"].update(p for p in PHASES if p in case.captions)
    stats["by_modality"][case.modality] += 1
    stats["by_anatomy"][case.anatomy] += 1
    stats["by_view"][case.view] += 1
    stats["by_finding"][case.finding] += 1
    stats["by_cohort"][cohort or "general"] += 1


def _write_split(out: Path, split: str, n: int, seed: int, size: int, rows_per_shard: int,
                 bar, n_cohort: int = 0) -> dict:
    """Write one split's shards (replacing any old ones) and return its data-card entry."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*.parquet"):
        old.unlink()
    shards = _Shards(out, _schema(split), rows_per_shard)
    stats = {k: Counter() for k in _STATS}
    n_rows = 0
    for index, image_id, cohort in _split_cases(split, n, n_cohort):
        case = generate_case(seed, index, size, cohort)
        rows = _case_rows(split, case, image_id, cohort)
        shards.add(rows)
        n_rows += len(rows)
        _count(stats, case, cohort)
        if bar is not None:
            bar.update(1)
    shards.flush()
    return {"images": n, "cohort_images": n_cohort, "rows": n_rows, "files": shards.files,
            **{k: dict(sorted(v.items())) for k, v in stats.items()}}


def write_phantom_dataset(out_dir, n_train_images: int = 2000, n_eval_images: int = 600,
                          seed: int = 0, size: int = 64, rows_per_shard: int = 4096,
                          progress: bool = True, cohort_fraction: float = 0.0) -> dict:
    """Write train (one row per image-caption pair) and eval (one row per image) parquet shards
    and ``data_card.json``; return the card. Identical inputs give byte-identical files.
    `cohort_fraction`: each split also gets round(fraction x its size) disease-cohort cases (COHORTS)."""
    from tqdm.auto import tqdm
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sizes = {"train": n_train_images, "eval": n_eval_images}
    extra = {split: round(cohort_fraction * n) for split, n in sizes.items()}
    bar = tqdm(total=sum(sizes.values()) + sum(extra.values()), desc="phantom", unit="img", disable=not progress)
    try:
        splits = {split: _write_split(out / split, split, n, seed, size, rows_per_shard, bar, extra[split])
                  for split, n in sizes.items()}
    finally:
        bar.close()
    card = {
        "synthetic": True,
        "generator": "radisim.curriculum.phantom",
        "seed": seed,
        "size": size,
        "eval_index_offset": EVAL_INDEX_OFFSET,
        "cohort_fraction": cohort_fraction,
        "cohorts": {name: dict(zip(("modality", "anatomy", "finding"), v)) for name, v in COHORTS.items()},
        "splits": splits,
        "catalog": catalog(),
        "note": "SYNTHETIC phantom data, not patient images",
    }
    (out / "data_card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card
