"""Generic sources -> chunks (units of work and resume) -> items (one image sample each), and the
chunk readers every adapter (`adapters/`) builds on: "files", "manifest", "tar", "records".

A generic `--source` (kind "auto", or an explicit csv/parquet/jsonl/wds/folder prefix) is one of:

- a CSV/TSV, JSON Lines or Parquet manifest: one row per image, with an image column (a path
  relative to the manifest, an absolute path or URI, or — in Parquet — the image bytes) and a
  caption column, plus optional tag columns; chunked by byte ranges / row groups (`manifests`);
- a WebDataset tar shard, or a brace pattern of shards (`shards-{000..009}.tar`): samples grouped by
  key, image member png/jpg/jpeg/dcm/nii/nii.gz, caption in `.txt` or in `.json` ("caption"/"text",
  other JSON keys are tag columns); one chunk per shard;
- a folder: images found by extension (PNG, JPEG, DICOM, NIfTI), each with its caption in a sidecar
  `<stem>.txt`; manifests and tar shards inside the folder are sources of their own (the files a
  manifest names are not scanned again); other files are rejected as "unsupported_file", captions
  without an image as "orphan_caption", and files under a `_`/`.` path component as "hidden_path",
  so nothing in the folder goes uncounted.

Keys: an item's `key` is `<source label>:<path or row>` here, inside the task; `records.process_chunk`
replaces it by its salted hash (`phi.public_key`) before it reaches a row, a reject or a log line.
Text (captions, reports) must be UTF-8: anything else is the reject "caption_not_utf8".

Local paths and remote URIs (s3://, gs://, ...) alike, through pyarrow filesystems.

WebDataset shards are read with `tarfile` inside the chunk task rather than `ray.data.read_webdataset`:
that reader decodes members itself and one corrupt image fails the whole read, and its blocks have no
stable identity to resume from. A shard per task gives both per-sample reject reasons and resume.
"""
from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
import tarfile
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

IMAGE_EXTS = {".png": "image", ".jpg": "image", ".jpeg": "image", ".dcm": "dicom", ".dicom": "dicom",
              ".nii": "nifti", ".nii.gz": "nifti"}
MANIFEST_EXTS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".jsonl": "jsonl"}
TAG_NAMES = ("phase", "modality", "anatomy", "view", "finding", "subtype", "grade", "patient", "study")
#: Item metadata an adapter may set besides the tag columns: body part, the dataset's official split.
META_NAMES = ("body_part", "split")


def ext_of(name: str) -> str:
    low = name.lower()
    if low.endswith(".nii.gz"):
        return ".nii.gz"
    return posixpath.splitext(low)[1]


def stem_of(name: str) -> str:
    base = posixpath.basename(name)
    ext = ext_of(base)
    return base[: len(base) - len(ext)] if ext else base


# ------------------------------------------------------------------------------------- filesystems


def filesystem(uri: str):
    """(pyarrow filesystem, path) for a local path or a URI."""
    import pyarrow.fs as pafs

    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    import os

    return pafs.LocalFileSystem(), os.path.abspath(uri)


def read_bytes(uri: str) -> bytes:
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        from radisim.platform.data.imaging import ImagingError

        raise ImagingError("missing_file")
    with fs.open_input_stream(path, compression=None) as f:  # the bytes as stored (no .gz detection)
        return f.read()


def join(base: str, rel: str) -> str:
    if "://" in rel or rel.startswith("/"):
        return rel
    if "://" in base:
        scheme, rest = base.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(rest, rel))}"
    return posixpath.normpath(posixpath.join(base, rel))


def expand_braces(pattern: str) -> list[str]:
    """`a-{000..003}.tar` and `{x,y}` -> concrete names (WebDataset's brace notation)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    body, head, tail = m.group(1), pattern[: m.start()], pattern[m.end():]
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        a, b = rng.groups()
        options = [str(i).zfill(len(a)) for i in range(int(a), int(b) + 1)]
    else:
        options = body.split(",")
    return [name for opt in options for name in expand_braces(head + opt + tail)]


# ------------------------------------------------------------------------------------------ chunks


@dataclass
class Discovery:
    chunks: list[dict] = field(default_factory=list)
    #: (key, reason) for files rejected while listing (unsupported, orphan captions, missing sources)
    rejects: list[tuple[str, str]] = field(default_factory=list)


def chunk_id(spec: dict, fingerprint: str) -> str:
    text = json.dumps(spec, sort_keys=True) + "|" + fingerprint
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _info(uri: str):
    fs, path = filesystem(uri)
    return fs, path, fs.get_file_info(path)


def manifest_chunks(label: str, uri: str, fmt: str, opts: dict, stat: str, columns: Optional[dict] = None,
                    image_base: Optional[str] = None, given: Optional[dict] = None, row: Optional[str] = None,
                    row_args: Optional[dict] = None) -> list[dict]:
    """Chunks of one manifest (streamed planning, see `manifests`). `columns` maps "image"/"caption"
    (and tag names) to the manifest's column names; `image_base` is where relative image paths start
    (default: the manifest's folder); `given` are tags every row of this manifest shares; `row` names
    a `ROW_TRANSFORMS` entry that turns each row into (image, caption, given) and gets `row_args`."""
    from . import manifests as mf

    cols = {"image": opts["image_column"], "caption": opts["caption_column"], **(columns or {})}
    base = {"kind": "manifest", "source": label, "uri": uri, "format": fmt, "stat": stat, "columns": cols,
            "image_base": image_base or posixpath.dirname(uri), "given": given or {},
            "tag_columns": opts.get("tag_columns") or {}, "row": row, "row_args": row_args or {}}
    if fmt == "parquet":
        return [{**base, "group": [g, a, b]} for g, a, b in mf.plan_parquet(uri, opts["rows_per_chunk"])]
    ranges, _ = mf.plan_text(uri, fmt, opts["rows_per_chunk"])
    extra = {}
    if fmt == "csv":
        sep = mf.separator_for(uri, opts["csv_separator"])
        extra = {"sep": sep, "header": mf.csv_header(uri, sep)}
    return [{**base, **extra, "range": [a, b]} for a, b in ranges]


def manifest_image_refs(uri: str, fmt: str, image_column: str, separator: Optional[str]) -> set[str]:
    """Absolute locations of the images a manifest names (to keep a folder scan from counting them twice)."""
    from . import manifests as mf

    base = posixpath.dirname(uri)
    refs: set[str] = set()
    try:
        if fmt == "parquet":
            for g, a, b in mf.plan_parquet(uri, 1 << 30):
                refs |= {join(base, r.get(image_column)) for r in mf.read_parquet_slice(uri, g, a, b, [image_column])
                         if isinstance(r.get(image_column), str) and r.get(image_column)}
        elif fmt == "csv":
            sep = mf.separator_for(uri, separator)
            header = mf.csv_header(uri, sep)
            for a, b in mf.plan_text(uri, fmt, 1 << 30)[0]:
                rows, _ = mf.read_csv_range(uri, a, b, header, sep)
                refs |= {join(base, r[image_column]) for r in rows if r.get(image_column)}
        else:
            for a, b in mf.plan_text(uri, fmt, 1 << 30)[0]:
                refs |= {join(base, r[image_column]) for r in mf.read_jsonl_range(uri, a, b)
                         if r and isinstance(r.get(image_column), str) and r.get(image_column)}
    except Exception:
        return set()
    return refs


def discover(label: str, source: str, opts: dict) -> Discovery:
    """List one generic --source (file, folder, tar or brace pattern) into chunks."""
    import pyarrow.fs as pafs

    out = Discovery()
    if "{" in source:
        for i, shard in enumerate(expand_braces(source)):
            _, _, info = _info(shard)
            if info.type != pafs.FileType.File:
                out.rejects.append((f"{label}:{shard}", "missing_file"))
            else:
                out.chunks.append({"kind": "tar", "source": label, "uri": shard, "stat": f"{info.size}:{info.mtime_ns}"})
        return out
    fs, path, info = _info(source)
    uri = source if "://" in source else path
    if info.type == pafs.FileType.NotFound:
        out.rejects.append((label, "missing_file"))
        return out
    if info.type == pafs.FileType.File:
        ext = ext_of(path)
        stat = f"{info.size}:{info.mtime_ns}"
        if ext in MANIFEST_EXTS:
            out.chunks += manifest_chunks(label, uri, MANIFEST_EXTS[ext], opts, stat)
        elif ext == ".tar":
            out.chunks.append({"kind": "tar", "source": label, "uri": uri, "stat": stat})
        else:
            out.rejects.append((label, "unsupported_source"))
        return out
    return _discover_folder(label, uri, fs, path, opts, out)


def hidden(rel: str) -> bool:
    """A path with a `_` or `.` component (`.DS_Store`, `__MACOSX/`, `_staging/`): skipped, and counted."""
    return any(p.startswith((".", "_")) for p in rel.split("/"))


def _discover_folder(name: str, uri: str, fs, path: str, opts: dict, out: Discovery) -> Discovery:
    import pyarrow.fs as pafs

    infos = [i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True)) if i.type == pafs.FileType.File]
    rel = {posixpath.relpath(i.path, path): i for i in infos}
    out.rejects += [(f"{name}:{k}", "hidden_path") for k in sorted(rel) if hidden(k)]
    rel = {k: v for k, v in rel.items() if not hidden(k)}
    claimed: set[str] = set()
    for r, info in sorted(rel.items()):
        ext = ext_of(r)
        sub_uri = join(uri, r)
        stat = f"{info.size}:{info.mtime_ns}"
        if ext in MANIFEST_EXTS:
            out.chunks += manifest_chunks(name, sub_uri, MANIFEST_EXTS[ext], opts, stat)
            claimed |= manifest_image_refs(sub_uri, MANIFEST_EXTS[ext], opts["image_column"], opts["csv_separator"])
        elif ext == ".tar":
            out.chunks.append({"kind": "tar", "source": name, "uri": sub_uri, "stat": stat})
    images = [r for r in sorted(rel) if ext_of(r) in IMAGE_EXTS and join(uri, r) not in claimed]
    sidecars = {r for r in rel if ext_of(r) == ".txt"}
    used = set()
    files = []
    for r in images:
        cap = posixpath.join(posixpath.dirname(r), stem_of(r) + ".txt")
        cap = cap if cap in sidecars else None
        if cap:
            used.add(cap)
        files.append({"path": r, "caption": cap, "stat": f"{rel[r].size}:{rel[r].mtime_ns}"})
    for r in sorted(rel):
        ext = ext_of(r)
        if ext == ".txt" and r not in used:
            # a caption that belongs to no image is only an orphan if no image with that stem exists
            # (e.g. its image was claimed by a manifest, in which case it is simply unused)
            if not any(join(uri, posixpath.join(posixpath.dirname(r), stem_of(r) + e)) in claimed for e in IMAGE_EXTS):
                out.rejects.append((f"{name}:{r}", "orphan_caption"))
        elif ext not in IMAGE_EXTS and ext not in MANIFEST_EXTS and ext not in (".txt", ".tar"):
            out.rejects.append((f"{name}:{r}", "unsupported_file"))
    step = opts["files_per_chunk"]
    for a in range(0, len(files), step):
        out.chunks.append({"kind": "files", "source": name, "uri": uri, "files": files[a: a + step]})
    return out


# ------------------------------------------------------------------------------------------- items


@dataclass
class Item:
    """One image sample before decoding."""

    key: str                          # "<source label>:<raw key>" (hashed by process_chunk)
    kind: str                         # image | dicom | nifti
    load: Callable[[], bytes]         # raises ImagingError("missing_file")
    caption: Optional[str]            # None: no caption found; report sections as `LABEL: text` lines
    #: tags (TAG_NAMES) and metadata (META_NAMES) from the source: modality, anatomy, body_part, view,
    #: patient, study, split ("train" | "eval"), ...
    given: dict = field(default_factory=dict)


class NotUtf8(Exception):
    """Text that is not UTF-8."""


def decode_text(data: bytes) -> str:
    """UTF-8 text (a BOM is dropped); anything else raises NotUtf8 (counted as "caption_not_utf8")."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NotUtf8() from None


#: Chunk readers by chunk "kind": (chunk, opts) -> items and (key, reason) rejects.
READERS: dict[str, Callable[[dict, dict], Iterator]] = {}


def reader(kind: str):
    def wrap(fn):
        READERS[kind] = fn
        return fn
    return wrap


def iter_items(chunk: dict, opts: dict) -> Iterator[Item | tuple[str, str]]:
    """Items of one chunk; a (key, reason) tuple for a sample rejected before decoding."""
    if chunk["kind"] not in READERS:
        raise ValueError(f"unknown chunk kind {chunk['kind']}")
    yield from READERS[chunk["kind"]](chunk, opts)


def _file_item(key: str, uri: str, caption: Optional[str], given: dict) -> Item:
    return Item(key, IMAGE_EXTS.get(ext_of(uri), "image"), lambda u=uri: read_bytes(u), caption, given)


@reader("files")
def _folder_items(chunk: dict, opts: dict) -> Iterator[Item | tuple[str, str]]:
    base, src = chunk["uri"], chunk["source"]
    for f in chunk["files"]:
        key = f"{src}:{f['path']}"
        caption = None
        if f["caption"]:
            try:
                caption = decode_text(read_bytes(join(base, f["caption"])))
            except NotUtf8:
                yield (key, "caption_not_utf8")
                continue
            except Exception:
                caption = None
        yield _file_item(key, join(base, f["path"]), caption, {})


#: Report-file formats of "records" chunks: raw text -> caption (report sections as `LABEL: text` lines).
REPORT_FORMATS: dict[str, Callable[[str], str]] = {"plain": lambda text: text}


@reader("records")
def _record_items(chunk: dict, opts: dict) -> Iterator[Item | tuple[str, str]]:
    """Adapter records: {"path": image path relative to the chunk's uri, "caption": text, or "report":
    a text file relative to the uri read here (one read per report, shared by consecutive records of
    the same study) in the chunk's "report_format", "given": {...}}. A missing report file is the
    reject "report_missing"."""
    base, src = chunk["uri"], chunk["source"]
    fmt = REPORT_FORMATS[chunk.get("report_format", "plain")]
    last: tuple[Optional[str], Optional[str]] = (None, None)
    for r in chunk["records"]:
        key = f"{src}:{r['path']}"
        caption = r.get("caption")
        if r.get("report"):
            if last[0] != r["report"]:
                try:
                    last = (r["report"], fmt(decode_text(read_bytes(join(base, r["report"])))))
                except NotUtf8:
                    last = (r["report"], "\0not_utf8")
                except Exception:
                    last = (r["report"], None)
            caption = last[1]
            if caption is None:
                yield (key, "report_missing")
                continue
            if caption == "\0not_utf8":
                yield (key, "caption_not_utf8")
                continue
        yield _file_item(key, join(base, r["path"]), caption, r.get("given") or {})


def _given(row: dict, chunk: dict, skip: set[str]) -> dict:
    mapping = {t: t for t in TAG_NAMES}
    mapping.update(chunk.get("tag_columns") or {})
    mapping.update({k: v for k, v in chunk["columns"].items() if k not in ("image", "caption")})
    out = dict(chunk.get("given") or {})
    for tag, col in mapping.items():
        if col in row and col not in skip and row[col] not in (None, ""):
            out[tag] = str(row[col])
    return out


def _manifest_rows(chunk: dict) -> Iterator[tuple[str, Optional[dict]]]:
    """(row position "<byte offset or row group>+<i>", row or None when malformed) of one chunk."""
    from . import manifests as mf

    uri, fmt = chunk["uri"], chunk["format"]
    if fmt == "parquet":
        g, a, b = chunk["group"]
        wanted = None if chunk.get("row") else (
            list(chunk["columns"].values()) + list(TAG_NAMES) + list((chunk.get("tag_columns") or {}).values()))
        for i, row in enumerate(mf.read_parquet_slice(uri, g, a, b, wanted)):
            yield f"g{g}+{a + i}", row
        return
    a, b = chunk["range"]
    if fmt == "jsonl":
        for i, row in enumerate(mf.read_jsonl_range(uri, a, b)):
            yield f"{a}+{i}", row
        return
    rows, bad = mf.read_csv_range(uri, a, b, chunk["header"], chunk["sep"])
    for i, row in enumerate(rows):
        yield f"{a}+{i}", row
    for j in range(bad):
        yield f"{a}+malformed{j}", None


#: Row transforms of adapters whose index is a manifest (CheXpert's train.csv, MIMIC's metadata CSV...):
#: (row, chunk) -> (image ref relative to image_base, caption, given), or a reject reason (str).
ROW_TRANSFORMS: dict[str, Callable[[dict, dict], object]] = {}


def row_transform(name: str):
    def wrap(fn):
        ROW_TRANSFORMS[name] = fn
        return fn
    return wrap


@reader("manifest")
def _manifest_items(chunk: dict, opts: dict) -> Iterator[Item | tuple[str, str]]:
    src, base, uri = chunk["source"], chunk["image_base"], chunk["uri"]
    icol, ccol = chunk["columns"]["image"], chunk["columns"]["caption"]
    transform = ROW_TRANSFORMS[chunk["row"]] if chunk.get("row") else None
    for pos, row in _manifest_rows(chunk):
        key = f"{src}:{uri}#{pos}"
        if row is None:
            yield (key, "manifest_row_malformed")
            continue
        if transform is not None:
            out = transform(row, chunk)
            if isinstance(out, str):
                yield (key, out)
            else:
                ref, caption, given = out
                yield _file_item(f"{src}:{ref}", join(base, ref), caption, {**(chunk.get("given") or {}), **given})
            continue
        if icol not in row or ccol not in row:
            yield (key, "manifest_missing_column")
            continue
        ref, caption = row[icol], row[ccol]
        if caption is not None and not isinstance(caption, str):
            caption = str(caption)
        given = _given(row, chunk, {icol, ccol})
        if isinstance(ref, (bytes, bytearray)):
            data = bytes(ref)
            yield Item(key, "image", lambda d=data: d, caption, given)
        elif not ref or not isinstance(ref, str):
            yield (key, "missing_file")
        else:
            yield _file_item(f"{src}:{ref}", join(base, ref), caption, given)


_TAR_IMAGE_ORDER = (".png", ".jpg", ".jpeg", ".dcm", ".nii.gz", ".nii")
_TAR_PARTS = set(_TAR_IMAGE_ORDER) | {".txt", ".json"}


def _tar_samples(data: bytes, src: str, shard: str, skipped: list) -> tuple[dict, list, bool]:
    samples: dict[str, dict[str, bytes]] = {}
    order: list[str] = []
    truncated = False
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        try:
            for member in tar:
                base = posixpath.basename(member.name)
                if member.isdir():
                    continue
                if not member.isfile():
                    skipped.append((f"{src}:{shard}!{member.name}", "tar_member_not_file"))
                    continue
                if hidden(member.name):
                    skipped.append((f"{src}:{shard}!{member.name}", "tar_member_hidden"))
                    continue
                k, _, suffix = base.partition(".")  # WebDataset: the key ends at the first dot
                if "." + suffix.lower() not in _TAR_PARTS:
                    skipped.append((f"{src}:{shard}!{member.name}", "tar_member_unsupported"))
                    continue
                key = posixpath.join(posixpath.dirname(member.name), k)
                if key not in samples:
                    samples[key] = {}
                    order.append(key)
                f = tar.extractfile(member)
                samples[key]["." + suffix.lower()] = f.read() if f else b""
        except (tarfile.TarError, EOFError, OSError):
            truncated = True
    return samples, order, truncated


@reader("tar")
def _tar_items(chunk: dict, opts: dict) -> Iterator[Item | tuple[str, str]]:
    src, shard = chunk["source"], chunk["uri"]
    skipped: list[tuple[str, str]] = []
    try:
        samples, order, truncated = _tar_samples(read_bytes(shard), src, shard, skipped)
    except Exception:
        yield (f"{src}:{shard}", "tar_unreadable")
        return
    yield from skipped
    for key in order:
        parts = samples[key]
        img_ext = next((e for e in _TAR_IMAGE_ORDER if e in parts), None)
        if img_ext is None:
            yield (f"{src}:{shard}!{key}", "missing_image")
            continue
        caption, given = None, {}
        try:
            if ".txt" in parts:
                caption = decode_text(parts[".txt"])
            if ".json" in parts:
                text = decode_text(parts[".json"])
                try:
                    meta = json.loads(text)
                except ValueError:
                    meta = {}
                if isinstance(meta, dict):
                    caption = caption if caption is not None else meta.get("caption", meta.get("text"))
                    given = {t: str(meta[t]) for t in TAG_NAMES + META_NAMES if meta.get(t) not in (None, "")}
        except NotUtf8:
            yield (f"{src}:{shard}!{key}", "caption_not_utf8")
            continue
        img = parts[img_ext]
        yield Item(f"{src}:{shard}!{key}", IMAGE_EXTS[img_ext], lambda d=img: d, caption, given)
    if truncated:
        yield (f"{src}:{shard}", "tar_truncated")
