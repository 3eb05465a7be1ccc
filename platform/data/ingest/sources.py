"""Sources -> chunks (units of work and resume) -> items (one image sample each).

A `--source` is one of:

- a CSV/TSV or Parquet manifest: one row per image, with an image column (a path relative to the
  manifest, an absolute path or URI, or — in Parquet — the image bytes) and a caption column, plus
  optional tag columns; chunked by row ranges;
- a WebDataset tar shard, or a brace pattern of shards (`shards-{000..009}.tar`): samples grouped by
  key, image member png/jpg/jpeg/dcm/nii/nii.gz, caption in `.txt` or in `.json` ("caption"/"text",
  other JSON keys are tag columns); one chunk per shard;
- a folder: images found by extension (PNG, JPEG, DICOM, NIfTI), each with its caption in a sidecar
  `<stem>.txt`; manifests and tar shards inside the folder are sources of their own (the files a
  manifest names are not scanned again); other files are rejected as "unsupported_file" and captions
  without an image as "orphan_caption", so nothing in the folder goes uncounted.

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
MANIFEST_EXTS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
TAG_NAMES = ("phase", "modality", "anatomy", "view", "finding", "subtype", "grade", "patient", "study")


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
    with fs.open_input_stream(path) as f:
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


def _manifest_rows(uri: str, fmt: str) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        fs, path = filesystem(uri)
        return pq.ParquetFile(fs.open_input_file(path)).metadata.num_rows
    return read_manifest(uri, fmt, None).num_rows


def read_manifest(uri: str, fmt: str, separator: Optional[str]):
    """The whole manifest as a pyarrow Table (every column as read; CSV columns as strings)."""
    import pyarrow.parquet as pq

    fs, path = filesystem(uri)
    if fmt == "parquet":
        return pq.read_table(fs.open_input_file(path))
    sep = separator if separator not in (None, "auto") else ("\t" if uri.lower().endswith(".tsv") else ",")
    with fs.open_input_stream(path) as f:
        data = f.read()
    return _csv_as_strings(data, sep)


def _csv_as_strings(data: bytes, sep: str):
    """Every CSV column as strings (a caption of digits stays a caption)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    head = pacsv.read_csv(io.BytesIO(data), parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True),
                          read_options=pacsv.ReadOptions(use_threads=False))

    return pacsv.read_csv(io.BytesIO(data), parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True),
                          convert_options=pacsv.ConvertOptions(
                              column_types={n: pa.string() for n in head.column_names}, strings_can_be_null=False),
                          read_options=pacsv.ReadOptions(use_threads=False))


def manifest_image_refs(uri: str, fmt: str, image_column: str, separator: Optional[str]) -> set[str]:
    """Absolute locations of the images a manifest names (to keep a folder scan from counting them twice)."""
    try:
        table = read_manifest(uri, fmt, separator)
    except Exception:
        return set()
    if image_column not in table.column_names:
        return set()
    base = posixpath.dirname(uri)
    return {join(base, v) for v in table.column(image_column).to_pylist() if isinstance(v, str) and v}


def _manifest_chunks(name: str, uri: str, fmt: str, rows_per_chunk: int, stat: str) -> list[dict]:
    n = _manifest_rows(uri, fmt)
    return [{"kind": "manifest", "source": name, "uri": uri, "format": fmt, "start": a,
             "stop": min(n, a + rows_per_chunk), "stat": stat} for a in range(0, n, rows_per_chunk)]


def discover(source: str, opts: dict) -> Discovery:
    """List one --source into chunks. `opts` is the ingest config as a dict."""
    import pyarrow.fs as pafs

    out = Discovery()
    name = posixpath.basename(source.rstrip("/")) or source
    if "{" in source:
        for shard in expand_braces(source):
            _, _, info = _info(shard)
            if info.type != pafs.FileType.File:
                out.rejects.append((f"{name}:{posixpath.basename(shard)}", "missing_file"))
            else:
                out.chunks.append({"kind": "tar", "source": name, "uri": shard, "stat": f"{info.size}:{info.mtime_ns}"})
        return out
    fs, path, info = _info(source)
    uri = source if "://" in source else path
    if info.type == pafs.FileType.NotFound:
        out.rejects.append((name, "missing_file"))
        return out
    if info.type == pafs.FileType.File:
        ext = ext_of(path)
        stat = f"{info.size}:{info.mtime_ns}"
        if ext in MANIFEST_EXTS:
            out.chunks += _manifest_chunks(name, uri, MANIFEST_EXTS[ext], opts["rows_per_chunk"], stat)
        elif ext == ".tar":
            out.chunks.append({"kind": "tar", "source": name, "uri": uri, "stat": stat})
        else:
            out.rejects.append((name, "unsupported_source"))
        return out
    return _discover_folder(name, uri, fs, path, opts, out)


def _discover_folder(name: str, uri: str, fs, path: str, opts: dict, out: Discovery) -> Discovery:
    import pyarrow.fs as pafs

    infos = [i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True)) if i.type == pafs.FileType.File]
    rel = {posixpath.relpath(i.path, path): i for i in infos}
    rel = {k: v for k, v in rel.items() if not any(p.startswith((".", "_")) for p in k.split("/"))}
    claimed: set[str] = set()
    for r, info in sorted(rel.items()):
        ext = ext_of(r)
        sub_uri = join(uri, r)
        stat = f"{info.size}:{info.mtime_ns}"
        if ext in MANIFEST_EXTS:
            out.chunks += _manifest_chunks(f"{name}/{r}", sub_uri, MANIFEST_EXTS[ext], opts["rows_per_chunk"], stat)
            claimed |= manifest_image_refs(sub_uri, MANIFEST_EXTS[ext], opts["image_column"], opts["csv_separator"])
        elif ext == ".tar":
            out.chunks.append({"kind": "tar", "source": f"{name}/{r}", "uri": sub_uri, "stat": stat})
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

    key: str                          # "<source>:<relative key>", the name used in reject samples
    kind: str                         # image | dicom | nifti
    load: Callable[[], bytes]         # raises ImagingError("missing_file")
    caption: Optional[str]            # None: no caption found
    given: dict = field(default_factory=dict)   # the user's own tag columns


def _decode_text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def iter_items(chunk: dict, opts: dict) -> Iterator[Item | tuple[str, str]]:
    """Items of one chunk; a (key, reason) tuple for a sample rejected before decoding."""
    kind = chunk["kind"]
    if kind == "files":
        yield from _folder_items(chunk)
    elif kind == "manifest":
        yield from _manifest_items(chunk, opts)
    elif kind == "tar":
        yield from _tar_items(chunk)
    else:
        raise ValueError(f"unknown chunk kind {kind}")


def _folder_items(chunk: dict) -> Iterator[Item]:
    base, src = chunk["uri"], chunk["source"]
    for f in chunk["files"]:
        caption = None
        if f["caption"]:
            try:
                caption = _decode_text(read_bytes(join(base, f["caption"])))
            except Exception:
                caption = None
        uri = join(base, f["path"])
        yield Item(f"{src}:{f['path']}", IMAGE_EXTS[ext_of(f["path"])], lambda u=uri: read_bytes(u), caption)


def _given(row: dict, opts: dict, skip: set[str]) -> dict:
    mapping = {t: t for t in TAG_NAMES}
    mapping.update(opts.get("tag_columns") or {})
    out = {}
    for tag, col in mapping.items():
        if col in row and col not in skip and row[col] not in (None, ""):
            out[tag] = str(row[col])
    return out


def _manifest_items(chunk: dict, opts: dict) -> Iterator[Item | tuple[str, str]]:
    table = read_manifest(chunk["uri"], chunk["format"], opts["csv_separator"]).slice(
        chunk["start"], chunk["stop"] - chunk["start"])
    src, base = chunk["source"], posixpath.dirname(chunk["uri"])
    icol, ccol = opts["image_column"], opts["caption_column"]
    missing = [c for c in (icol, ccol) if c not in table.column_names]
    for i, row in enumerate(table.to_pylist()):
        key = f"{src}#{chunk['start'] + i}"
        if missing:
            yield (key, "manifest_missing_column")
            continue
        ref = row[icol]
        caption = row[ccol]
        given = _given(row, opts, {icol, ccol})
        if isinstance(ref, (bytes, bytearray)):
            data = bytes(ref)
            yield Item(key, "image", lambda d=data: d, caption, given)
            continue
        if not ref:
            yield (key, "missing_file")
            continue
        ext = ext_of(str(ref))
        uri = join(base, str(ref))
        yield Item(f"{src}:{ref}", IMAGE_EXTS.get(ext, "image"), lambda u=uri: read_bytes(u), caption, given)


_TAR_IMAGE_ORDER = (".png", ".jpg", ".jpeg", ".dcm", ".nii.gz", ".nii")


def _tar_items(chunk: dict) -> Iterator[Item | tuple[str, str]]:
    src = chunk["source"]
    samples: dict[str, dict[str, bytes]] = {}
    order: list[str] = []
    truncated = False
    try:
        data = read_bytes(chunk["uri"])
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            try:
                for member in tar:
                    if not member.isfile():
                        continue
                    base = posixpath.basename(member.name)
                    if base.startswith("."):
                        continue
                    dirname = posixpath.dirname(member.name)
                    k, _, suffix = base.partition(".")  # WebDataset: the key ends at the first dot
                    key = posixpath.join(dirname, k)
                    if key not in samples:
                        samples[key] = {}
                        order.append(key)
                    f = tar.extractfile(member)
                    samples[key]["." + suffix.lower()] = f.read() if f else b""
            except (tarfile.TarError, EOFError, OSError):
                truncated = True
    except Exception:
        yield (f"{src}", "tar_unreadable")
        return
    for key in order:
        parts = samples[key]
        img_ext = next((e for e in _TAR_IMAGE_ORDER if e in parts), None)
        if img_ext is None:
            yield (f"{src}:{key}", "missing_image")
            continue
        caption, given = None, {}
        if ".txt" in parts:
            caption = _decode_text(parts[".txt"])
        if ".json" in parts:
            try:
                meta = json.loads(parts[".json"])
            except ValueError:
                meta = {}
            if isinstance(meta, dict):
                caption = caption if caption is not None else meta.get("caption", meta.get("text"))
                given = {t: str(meta[t]) for t in TAG_NAMES if meta.get(t) not in (None, "")}
        img = parts[img_ext]
        yield Item(f"{src}:{key}", IMAGE_EXTS[img_ext], lambda d=img: d, caption, given)
    if truncated:
        yield (f"{src}", "tar_truncated")
