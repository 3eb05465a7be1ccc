"""Stage chunks with Ray Data, then deduplicate, split and write the manifests and the data card.

Resume: a chunk is staged when `DIR/_staging/<chunk>.json` and its Parquet exist (written by rename).
Chunk ids hash the chunk's inputs (paths, sizes, mtimes, byte ranges / row groups), the ingest
options, the vocabulary and the salt's digest, so an interrupted run redoes only unfinished chunks,
and a re-run with nothing new is a no-op (`DIR/_finalized.json` records the plan the manifests were
written from). Once the manifests are written the staged rows are deleted (the summaries stay); a
later run with changed inputs stages again.

Dedup keeps the first occurrence of each (image content, caption) pair (chunks in id order, rows in
order): one image with two different captions keeps both rows. The train/eval split follows the
dataset's official split where the source gives one (`split_hint`), else a hash of the row's group
key (salted patient key, else salted study key, else the volume/series, else the content hash); the
first split a group gets is the split of all its rows, so a patient never lands in both splits.
Both run as one streaming pass over the staged chunks with the seen keys and groups in an on-disk
SQLite table: the driver holds one chunk at a time, whatever the number of rows.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from radisim.curriculum.phases import PHASES

from .adapters import discover_source
from .phi import check_outside, public_key, resolve_salt
from .records import STAGED_FIELDS, process_chunk, schema
from .sources import chunk_id

log = logging.getLogger(__name__)

#: Bump when the meaning of a staged row changes: every chunk is redone.
FORMAT_VERSION = "ingest-3"  # 2: one row per (image, phase caption); 3: + split_hint, dedup_key
#: Options that say where things go, not what the rows are: left out of chunk ids, the card and MLflow.
PRIVATE_OPTIONS = ("salt", "salt_file", "key_map")
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


def _reject_summary(pairs) -> dict:
    """{reason: {"count": n, "sample": [up to SAMPLE_KEYS keys]}} (keys are salted hashes)."""
    out: dict[str, dict] = {}
    for key, reason in pairs:
        entry = out.setdefault(reason, {"count": 0, "sample": []})
        entry["count"] += 1
        if len(entry["sample"]) < SAMPLE_KEYS:
            entry["sample"].append(key)
    return out


def _merge_rejects(into: dict, more: dict) -> None:
    for reason, entry in more.items():
        target = into.setdefault(reason, {"count": 0, "sample": []})
        target["count"] += entry["count"]
        target["sample"] = (target["sample"] + entry["sample"])[:SAMPLE_KEYS]


def _write_key_map(folder: str, cid: str, pairs: list) -> None:
    path = Path(folder) / f"{cid}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps({"key": k, "path": raw}) + "\n" for k, raw in pairs)
    _atomic_write(path, text.encode())
    os.chmod(path, 0o600)


def _stage_batch(batch: dict, opts: dict, salt: str, staging: str, key_map: Optional[str]) -> dict:
    """Ray Data task: process the chunks of a batch and stage each. Returns one summary row per chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = {"id": [], "rows": [], "items": []}
    for cid, spec in zip(batch["id"], batch["spec"]):
        chunk = json.loads(spec)
        pairs: Optional[list] = [] if key_map else None
        rows, rejects, n_items, expanded = process_chunk(chunk, opts, salt, pairs)
        table = pa.Table.from_pylist(rows, schema=schema(staged=True))
        parquet = Path(staging) / f"{cid}.parquet"
        tmp = parquet.with_name(parquet.name + f".tmp{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, parquet)
        if key_map:
            _write_key_map(key_map, str(cid), pairs)
        summary = {"chunk": str(cid), "source": chunk["source"], "items": n_items, "expanded": expanded,
                   "rows": len(rows), "rejects": _reject_summary(rejects)}
        _atomic_write(Path(staging) / f"{cid}.json", json.dumps(summary).encode())
        out["id"].append(str(cid))
        out["rows"].append(len(rows))
        out["items"].append(n_items)
    return out


def _split_of(group_key: str, eval_fraction: float) -> str:
    h = int(hashlib.sha256(f"split|{group_key}".encode()).hexdigest()[:8], 16) / 2**32
    return "eval" if h < eval_fraction else "train"


class _Seen:
    """Dedup keys and group -> split, on disk (SQLite), so the driver's memory stays flat."""

    def __init__(self, path: Path):
        path.unlink(missing_ok=True)
        self.db = sqlite3.connect(str(path))
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("CREATE TABLE seen (k TEXT PRIMARY KEY)")
        self.db.execute("CREATE TABLE groups (g TEXT PRIMARY KEY, split TEXT)")

    def _known(self, table: str, col: str, keys: list[str]) -> dict:
        found: dict = {}
        sel = "split" if table == "groups" else "1"
        for a in range(0, len(keys), 500):
            part = keys[a: a + 500]
            q = f"SELECT {col}, {sel} FROM {table} WHERE {col} IN ({','.join('?' * len(part))})"
            found.update(self.db.execute(q, part).fetchall())
        return found

    def assign(self, dedup: list[str], groups: list[str], hints: list[str], eval_fraction: float):
        """-> (keep flags, split per row, rows whose official split yielded to their group's)."""
        seen = self._known("seen", "k", sorted(set(dedup)))
        known = self._known("groups", "g", sorted(set(groups)))
        keep, split, overridden, new_keys, new_groups = [], [], 0, [], {}
        for k, g, hint in zip(dedup, groups, hints):
            if k in seen:
                keep.append(False)
                split.append("")
                continue
            seen[k] = 1
            new_keys.append((k,))
            s = known.get(g) or new_groups.get(g)
            if s is None:
                s = hint or _split_of(g, eval_fraction)
                new_groups[g] = s
            elif hint and hint != s:
                overridden += 1
            keep.append(True)
            split.append(s)
        self.db.executemany("INSERT INTO seen VALUES (?)", new_keys)
        self.db.executemany("INSERT INTO groups VALUES (?, ?)", list(new_groups.items()))
        return keep, split, overridden

    def groups_in(self, split: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM groups WHERE split = ?", (split,)).fetchone()[0]

    def close(self) -> None:
        self.db.close()


def finalize(out: Path, chunk_ids: list[str], eval_fraction: float) -> dict:
    """Dedup + split the staged chunks into DIR/train and DIR/eval; returns the card's row stats."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    staging = out / "_staging"
    dirs = {s: out / s for s in ("train", "eval")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    seen = _Seen(staging / "finalize.sqlite")
    duplicates: list[tuple[str, str]] = []
    n_duplicates = overridden = 0
    counts: Counter = Counter()
    by_split = {s: Counter() for s in dirs}
    written = {s: [] for s in dirs}
    for cid in sorted(chunk_ids):
        table = pq.read_table(staging / f"{cid}.parquet")
        keep, split, over = seen.assign(*(table.column(c).to_pylist() for c in ("dedup_key", "group_key", "split_hint")),
                                        eval_fraction)
        overridden += over
        for src, key, k in zip(table.column("source").to_pylist(), table.column("source_key").to_pylist(), keep):
            if not k:
                n_duplicates += 1
                if len(duplicates) < SAMPLE_KEYS:
                    duplicates.append(f"{src}:{key}")
        table = table.drop_columns(list(STAGED_FIELDS))
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
            for row in part.select(["phase", "modality", "anatomy", "source"]).to_pylist():
                counts[(s, row["phase"], row["modality"], row["anatomy"], row["source"])] += 1
                by_split[s][row["phase"]] += 1
    wanted = {s: set(w) for s, w in written.items()}
    for s, d in dirs.items():  # shards of chunks that no longer exist
        for old in d.glob("part-*.parquet"):
            if old.name not in wanted[s]:
                old.unlink()
    groups = {s: seen.groups_in(s) for s in dirs}
    seen.close()
    return {
        "duplicates": {"count": n_duplicates, "sample": duplicates},
        "official_split_overridden": overridden,
        "splits": {s: {"rows": sum(by_split[s].values()), "groups": groups[s], "files": sorted(written[s]),
                       "by_phase": {p: by_split[s][p] for p in PHASES if by_split[s][p]}} for s in dirs},
        "counts": [{"split": k[0], "phase": k[1], "modality": k[2], "anatomy": k[3], "source": k[4], "rows": n}
                   for k, n in sorted(counts.items())],
    }


def _clean_staging(staging: Path) -> None:
    """The staged rows are in the manifests now: keep only the small per-chunk summaries."""
    for p in list(staging.glob("*.parquet")) + list(staging.glob("*.tmp*")) + list(staging.glob("*.sqlite")):
        p.unlink(missing_ok=True)


@dataclass
class _Options:
    """The ingest options resolved for one output folder."""
    opts: dict
    salt: str
    salt_from: str
    key_map: Optional[str]
    public: dict          # what the rows are, without where things go (PRIVATE_OPTIONS)
    fingerprint: str


@dataclass
class _Discovered:
    """Every source's chunks (by chunk id), its rejects found while listing, and its labels."""
    chunks: dict[str, dict]
    rejects: list[tuple[str, str]]
    labels: list[dict]


def run_ingest(sources: list[str], out_dir: str, ingest, ray_cfg=None, tracking=None,
               log_mlflow: bool = True) -> IngestResult:
    """Ingest `sources` (`KIND:PATH` or a bare path/URI) into `out_dir` (local). `ingest` is an IngestConfig."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    o = _resolve_options(ingest, out)
    found = _discover(sources, o)
    staging = out / "_staging"
    staging.mkdir(exist_ok=True)
    plan = hashlib.sha256(json.dumps([sorted(found.chunks), sorted(found.rejects), o.opts["eval_fraction"]]).encode()
                          ).hexdigest()
    marker = out / "_finalized.json"
    card_path = out / "data_card.json"
    if marker.is_file() and card_path.is_file() and json.loads(marker.read_text()).get("plan") == plan:
        return IngestResult(json.loads(card_path.read_text()), True, 0, len(found.chunks))
    todo = [cid for cid in sorted(found.chunks)
            if not ((staging / f"{cid}.json").is_file() and (staging / f"{cid}.parquet").is_file())]
    t0 = time.time()
    if todo:
        _stage_with_ray(todo, found.chunks, o.opts, o.salt, staging, ray_cfg, o.key_map)
    card = _data_card(out, staging, o, found, len(todo), time.time() - t0)
    _atomic_write(card_path, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    _atomic_write(marker, json.dumps({"plan": plan}).encode())
    _clean_staging(staging)
    if log_mlflow and tracking is not None:
        log_card(card, card_path, tracking)
    return IngestResult(card, False, len(todo), len(found.chunks) - len(todo))


def _resolve_options(ingest, out: Path) -> _Options:
    """The options as a dict, the salt (and where it came from), the key map's path (checked to lie
    outside `out`) and the fingerprint that chunk ids hash."""
    opts = ingest.model_dump()
    salt, salt_from = resolve_salt(opts["salt"], opts.get("salt_file"), str(out))
    key_map = opts.get("key_map")
    if key_map:
        key_map = os.path.expanduser(key_map)
        check_outside(key_map, str(out), "key map (hash -> original path)")
    public_opts = {k: v for k, v in opts.items() if k not in PRIVATE_OPTIONS}
    return _Options(opts, salt, salt_from, key_map, public_opts, _fingerprint(public_opts, salt))


def _discover(sources: list[str], o: _Options) -> _Discovered:
    """List every source into chunks; its listing rejects are keyed by salted hash (mapped back in the key map)."""
    found = _Discovered({}, [], [])
    for source in sources:
        kind, label, listed = discover_source(source, o.opts, o.salt)
        found.labels.append({"label": label, "kind": kind, "chunks": len(listed.chunks)})
        found.rejects += [(public_key(k, o.salt), r) for k, r in listed.rejects]
        if o.key_map and listed.rejects:
            _write_key_map(o.key_map, f"discovery-{label}", [(public_key(k, o.salt), k) for k, _ in listed.rejects])
        for spec in listed.chunks:
            found.chunks[chunk_id(spec, o.fingerprint)] = spec
    return found


def _tally_staged(staging: Path, found: _Discovered) -> tuple[dict, int, int]:
    """(rejects by reason, inputs, expanded) over the listing and every staged chunk's summary."""
    rejected: dict = _reject_summary(found.rejects)
    inputs, expanded = len(found.rejects), 0
    for cid in sorted(found.chunks):
        summary = json.loads((staging / f"{cid}.json").read_text())
        inputs += summary["items"]
        expanded += summary["expanded"]
        _merge_rejects(rejected, summary["rejects"])
    return rejected, inputs, expanded


def _data_card(out: Path, staging: Path, o: _Options, found: _Discovered, staged: int, stage_s: float) -> dict:
    """Write the manifests (`finalize`: dedup and split) and return the data card that accounts for them."""
    rejected, inputs, expanded = _tally_staged(staging, found)
    stats = finalize(out, list(found.chunks), o.opts["eval_fraction"])
    dup = stats.pop("duplicates")
    if dup["count"]:
        _merge_rejects(rejected, {"duplicate": dup})
    rejected = dict(sorted(rejected.items()))
    kept = stats["splits"]["train"]["rows"] + stats["splits"]["eval"]["rows"]
    n_rejected = sum(r["count"] for r in rejected.values())
    total = len(found.chunks)
    return {
        "kind": "ingested",
        "synthetic": False,
        "sources": found.labels,
        "inputs": inputs,
        "expanded": expanded,
        "kept": kept,
        "rejected": rejected,
        "rejected_total": n_rejected,
        "balanced": inputs + expanded == kept + n_rejected,
        "accounting": "inputs (images, manifest rows, tar samples and members, listed files; a volume or "
                      "multi-frame DICOM counts once) + expanded (its extra slices, frames and phase-caption "
                      "rows) == kept + rejected_total",
        "keys": "source labels, source_key, image_id and reject samples are salted hashes (data.ingest.key_map "
                "maps them back, outside this folder)",
        "official_split_overridden": stats.pop("official_split_overridden"),
        "splits": stats["splits"],
        "counts": stats["counts"],
        "by_source": _sum_by(stats["counts"], "source"),
        "salt_from": o.salt_from,
        "ingest": o.public,
        "chunks": {"total": total, "staged_this_run": staged, "reused": total - staged},
        "stage_seconds": round(stage_s, 2),
    }


def _stage_with_ray(todo: list[str], chunks: dict, opts: dict, salt: str, staging: Path, ray_cfg,
                    key_map: Optional[str]) -> None:
    import ray

    from radisim.platform.config import RayConfig
    from radisim.platform.raysession import ray_session

    with ray_session(ray_cfg or RayConfig()):
        items = [{"id": cid, "spec": json.dumps(chunks[cid])} for cid in todo]
        ds = ray.data.from_items(items, override_num_blocks=len(items))      # [ray] one block per chunk
        ds = ds.map_batches(_stage_batch, batch_size=1, num_cpus=opts["task_cpus"],   # [ray] scale-out
                            fn_kwargs={"opts": opts, "salt": salt, "staging": str(staging), "key_map": key_map})
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
                       | {"sources": ",".join(s["label"] for s in card["sources"]), "salt_from": card["salt_from"]})
    metrics = {"inputs": card["inputs"], "kept": card["kept"], "rejected": card["rejected_total"],
               "expanded": card["expanded"]}
    metrics |= {f"rejected/{_metric_safe(r)}": v["count"] for r, v in card["rejected"].items()}
    for split, s in card["splits"].items():
        metrics[f"rows/{split}"] = s["rows"]
        metrics |= {f"rows/{split}/{p}": n for p, n in s["by_phase"].items()}
    for field_ in ("modality", "anatomy"):
        metrics |= {f"rows_by_{field_}/{_metric_safe(k)}": v for k, v in _sum_by(card["counts"], field_).items()}
    tracker.log_metrics(run_id, metrics)
    tracker.log_artifact(run_id, card_path)
    tracker.end(run_id)
    return run_id
