"""Stage chunks with Ray Data, then deduplicate, split and write the manifests and the data card.

Resume: a chunk is finished when `DIR/_staging/<chunk>.json` exists (written after its Parquet, by
rename). Chunk ids hash the chunk's inputs (paths, sizes, mtimes, row ranges), the ingest options,
the vocabulary and the salt's digest, so a re-run redoes only new or changed chunks, and a re-run
with nothing new is a no-op (`DIR/_finalized.json` records the plan the manifests were written from).

Dedup keeps the first occurrence of each content hash (chunks in id order, rows in order); the
train/eval split is a hash of the row's group key (salted patient key, else salted study key, else
the volume/series, else the content hash) so one patient never lands in both splits.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from radisim.curriculum.phases import PHASES

from .phi import resolve_salt
from .records import process_chunk, schema
from .sources import chunk_id, discover

log = logging.getLogger(__name__)

#: Bump when the meaning of a staged row changes: every chunk is redone.
FORMAT_VERSION = "ingest-2"  # 2: one row per (image, phase caption), curriculum/reports.py
SAMPLE_KEYS = 10


@dataclass
class IngestResult:
    card: dict
    up_to_date: bool          # nothing was done: the manifests already matched the inputs
    staged_chunks: int        # chunks processed this run
    reused_chunks: int        # chunks finished by an earlier run


def _fingerprint(opts: dict, salt: str) -> str:
    vocab = Path(__file__).resolve().parents[3] / "curriculum" / "vocab"
    vocab_text = "".join(p.read_text() for p in sorted(vocab.glob("*.yaml"))) if vocab.is_dir() else ""
    text = json.dumps(opts, sort_keys=True) + vocab_text + hashlib.sha256(salt.encode()).hexdigest() + FORMAT_VERSION
    return hashlib.sha256(text.encode()).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _stage_batch(batch: dict, opts: dict, salt: str, staging: str) -> dict:
    """Ray Data task: process the chunks of a batch and stage each. Returns one summary row per chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = {"id": [], "rows": [], "items": []}
    for cid, spec in zip(batch["id"], batch["spec"]):
        chunk = json.loads(spec)
        rows, rejects, n_items, expanded = process_chunk(chunk, opts, salt)
        table = pa.Table.from_pylist(rows, schema=schema())
        parquet = Path(staging) / f"{cid}.parquet"
        tmp = parquet.with_name(parquet.name + f".tmp{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, parquet)
        summary = {"chunk": str(cid), "source": chunk["source"], "items": n_items, "expanded": expanded,
                   "rows": len(rows), "rejects": rejects}
        _atomic_write(Path(staging) / f"{cid}.json", json.dumps(summary).encode())
        out["id"].append(str(cid))
        out["rows"].append(len(rows))
        out["items"].append(n_items)
    return out


def _split_of(group_key: str, eval_fraction: float) -> str:
    h = int(hashlib.sha256(f"split|{group_key}".encode()).hexdigest()[:8], 16) / 2**32
    return "eval" if h < eval_fraction else "train"


def _reject_table(pairs) -> dict:
    counts: Counter = Counter()
    samples: dict[str, list[str]] = {}
    for key, reason in pairs:
        counts[reason] += 1
        s = samples.setdefault(reason, [])
        if len(s) < SAMPLE_KEYS:
            s.append(key)
    return {r: {"count": counts[r], "sample": samples[r]} for r in sorted(counts)}


def finalize(out: Path, chunk_ids: list[str], eval_fraction: float) -> dict:
    """Dedup + split the staged chunks into DIR/train and DIR/eval; returns the card's row stats."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    staging = out / "_staging"
    dirs = {s: out / s for s in ("train", "eval")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    seen: dict[str, tuple[str, str]] = {}  # content hash -> the (source, key) whose image it is
    duplicates: list[tuple[str, str]] = []
    counts: Counter = Counter()
    by_split = {s: Counter() for s in dirs}
    written = {s: [] for s in dirs}
    groups = {s: set() for s in dirs}
    for cid in sorted(chunk_ids):
        table = pq.read_table(staging / f"{cid}.parquet")
        keep, split = [], []
        for h, g, src, key in zip(*(table.column(c).to_pylist() for c in ("content_hash", "group_key", "source",
                                                                          "source_key"))):
            if seen.setdefault(h, (src, key)) != (src, key):  # an image's phase-caption rows share its hash
                duplicates.append((f"{src}:{key}", "duplicate"))  # per row: the card balances rows
                keep.append(False)
                split.append("")
                continue
            keep.append(True)
            split.append(_split_of(g, eval_fraction))
        split_col = pa.array(split)
        for s, d in dirs.items():
            part = table.filter(pc.and_(pa.array(keep), pc.equal(split_col, s)))
            target = d / f"part-{cid}.parquet"
            if part.num_rows == 0:
                target.unlink(missing_ok=True)
                continue
            tmp = target.with_name(target.name + ".tmp")
            pq.write_table(part, tmp)
            os.replace(tmp, target)
            written[s].append(target.name)
            for row in part.select(["phase", "modality", "anatomy", "source", "group_key"]).to_pylist():
                counts[(s, row["phase"], row["modality"], row["anatomy"], row["source"])] += 1
                by_split[s][row["phase"]] += 1
                groups[s].add(row["group_key"])
    wanted = {s: set(w) for s, w in written.items()}
    for s, d in dirs.items():  # shards of chunks that no longer exist
        for old in d.glob("part-*.parquet"):
            if old.name not in wanted[s]:
                old.unlink()
    leak = groups["train"] & groups["eval"]
    assert not leak, "a patient/study group landed in both splits"
    return {
        "duplicates": duplicates,
        "splits": {s: {"rows": sum(by_split[s].values()), "groups": len(groups[s]), "files": sorted(written[s]),
                       "by_phase": {p: by_split[s][p] for p in PHASES if by_split[s][p]}} for s in dirs},
        "counts": [{"split": k[0], "phase": k[1], "modality": k[2], "anatomy": k[3], "source": k[4], "rows": n}
                   for k, n in sorted(counts.items())],
    }


def run_ingest(sources: list[str], out_dir: str, ingest, ray_cfg=None, tracking=None,
               log_mlflow: bool = True) -> IngestResult:
    """Ingest `sources` into `out_dir` (local). `ingest` is an IngestConfig."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    opts = ingest.model_dump()
    salt, salt_from = resolve_salt(opts.pop("salt"), str(out))
    fingerprint = _fingerprint(opts, salt)

    chunks: dict[str, dict] = {}
    discovery_rejects: list[tuple[str, str]] = []
    for source in sources:
        found = discover(source, opts)
        discovery_rejects += found.rejects
        for spec in found.chunks:
            chunks[chunk_id(spec, fingerprint)] = spec
    staging = out / "_staging"
    staging.mkdir(exist_ok=True)
    todo = [cid for cid in sorted(chunks) if not (staging / f"{cid}.json").is_file()]
    plan = hashlib.sha256(json.dumps([sorted(chunks), sorted(discovery_rejects), opts["eval_fraction"]]).encode()
                          ).hexdigest()
    marker = out / "_finalized.json"
    card_path = out / "data_card.json"
    if not todo and marker.is_file() and card_path.is_file() and json.loads(marker.read_text()).get("plan") == plan:
        return IngestResult(json.loads(card_path.read_text()), True, 0, len(chunks))

    t0 = time.time()
    if todo:
        _stage_with_ray(todo, chunks, opts, salt, staging, ray_cfg)
    stage_s = time.time() - t0

    summaries = [json.loads((staging / f"{cid}.json").read_text()) for cid in sorted(chunks)]
    stats = finalize(out, list(chunks), opts["eval_fraction"])
    rejects = discovery_rejects + [tuple(r) for s in summaries for r in s["rejects"]] + stats.pop("duplicates")
    inputs = len(discovery_rejects) + sum(s["items"] for s in summaries)
    expanded = sum(s["expanded"] for s in summaries)
    kept = stats["splits"]["train"]["rows"] + stats["splits"]["eval"]["rows"]
    rejected = _reject_table(rejects)
    n_rejected = sum(r["count"] for r in rejected.values())
    card = {
        "kind": "ingested",
        "synthetic": False,
        "sources": list(sources),
        "inputs": inputs,
        "expanded": expanded,
        "kept": kept,
        "rejected": rejected,
        "rejected_total": n_rejected,
        "balanced": inputs + expanded == kept + n_rejected,
        "accounting": "inputs (images, manifest rows, tar samples, listed files; a volume or multi-frame "
                      "DICOM counts once) + expanded (its extra slices/frames) == kept + rejected_total",
        "splits": stats["splits"],
        "counts": stats["counts"],
        "by_source": _sum_by(stats["counts"], "source"),
        "salt_from": salt_from,
        "ingest": opts,
        "chunks": {"total": len(chunks), "staged_this_run": len(todo), "reused": len(chunks) - len(todo)},
        "stage_seconds": round(stage_s, 2),
    }
    _atomic_write(card_path, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    _atomic_write(marker, json.dumps({"plan": plan}).encode())
    if log_mlflow and tracking is not None:
        log_card(card, card_path, tracking)
    return IngestResult(card, False, len(todo), len(chunks) - len(todo))


def _stage_with_ray(todo: list[str], chunks: dict, opts: dict, salt: str, staging: Path, ray_cfg) -> None:
    import ray

    from radisim.platform.config import RayConfig
    from radisim.platform.raysession import ray_session

    with ray_session(ray_cfg or RayConfig()):
        items = [{"id": cid, "spec": json.dumps(chunks[cid])} for cid in todo]
        ds = ray.data.from_items(items, override_num_blocks=len(items))      # [ray] one block per chunk
        ds = ds.map_batches(_stage_batch, batch_size=1, num_cpus=opts["task_cpus"],   # [ray] scale-out
                            fn_kwargs={"opts": opts, "salt": salt, "staging": str(staging)})
        done = ds.take_all()                                                  # [ray] run it
    log.info("staged %d chunks, %d rows", len(done), sum(r["rows"] for r in done))


def _sum_by(counts: list[dict], field_: str) -> dict[str, int]:
    c: Counter = Counter()
    for row in counts:
        c[row[field_] or "unknown"] += row["rows"]
    return dict(sorted(c.items()))


def _metric_safe(name: str) -> str:
    import re

    return re.sub(r"[^\w\-. ]", "_", name)[:100]


def log_card(card: dict, card_path: Path, tracking) -> str:
    """A run in the tracking experiment: the card as artifact, its counts as metrics."""
    from radisim.platform.tracking import Tracker

    tracker = Tracker(tracking.experiment, tracking.tracking_uri)
    run_id = tracker.start_run(tracking.run_name or "prepare-data", tags={"radisim.job": "prepare-data"})
    tracker.log_params(run_id, {f"ingest.{k}": v for k, v in card["ingest"].items()}
                       | {"sources": len(card["sources"]), "salt_from": card["salt_from"]})
    metrics = {"inputs": card["inputs"], "kept": card["kept"], "rejected": card["rejected_total"],
               "expanded": card["expanded"]}
    metrics |= {f"rejected/{r}": v["count"] for r, v in card["rejected"].items()}
    for split, s in card["splits"].items():
        metrics[f"rows/{split}"] = s["rows"]
        metrics |= {f"rows/{split}/{p}": n for p, n in s["by_phase"].items()}
    for field_ in ("modality", "anatomy"):
        metrics |= {f"rows_by_{field_}/{_metric_safe(k)}": v for k, v in _sum_by(card["counts"], field_).items()}
    tracker.log_metrics(run_id, metrics)
    tracker.log_artifact(run_id, card_path)
    tracker.end(run_id)
    return run_id
