"""Source adapters: `--source KIND:PATH` -> chunks, one module per published dataset layout.

Registry contract (what `register(kind)` expects of an adapter function
`discover(label, location, opts) -> sources.Discovery`):

1. It runs in the driver and only *lists*: it reads the dataset's index files (CSV headers and
   byte offsets, XML reports, folder listings) and returns chunks, JSON-able dicts whose "kind" is
   a chunk reader of `sources.READERS` ("manifest" with a `sources.ROW_TRANSFORMS` row transform,
   "records", "files", "tar"). Images are read later, in the Ray tasks.
2. Each item it leads to carries the caption text (a figure caption, or a report as `LABEL: text`
   lines, one per section) and `given` metadata in the dataset's own words: modality, body_part,
   view, patient (the dataset's own patient id: the split key, salted downstream), study, and split
   ("train" | "eval") when the dataset publishes one. "" / absent = unknown.
3. Raw keys are `<label>:<path or row>`; never put an identifier anywhere but a raw key or `given`
   patient/study (both are hashed before any output).
4. What it cannot use is a (raw key, reason) reject, never silently dropped.

Generic kinds: "auto" (a bare PATH: decided by what it is), "csv", "parquet", "jsonl", "wds",
"folder". Dataset kinds: see `KINDS` and docs/sources.md.
"""
from __future__ import annotations

import re
from typing import Callable

from ..phi import source_label
from ..sources import Discovery, discover as discover_generic

ADAPTERS: dict[str, Callable[[str, str, dict], Discovery]] = {}


def register(kind: str):
    """Decorator: `@register("mimic-cxr") def discover(label, location, opts) -> Discovery`."""
    def wrap(fn):
        if kind in ADAPTERS:
            raise ValueError(f"source kind {kind!r} registered twice")
        ADAPTERS[kind] = fn
        return fn
    return wrap


GENERIC = ("auto", "csv", "parquet", "jsonl", "wds", "folder")
for _kind in GENERIC:
    register(_kind)(lambda label, location, opts: discover_generic(label, location, opts))

from . import chexpert, mimic_cxr, openi, pmc_oa, radimagenet, roco  # noqa: E402,F401  (they register)

KINDS = tuple(ADAPTERS)
_PREFIX = re.compile(r"^([a-z][a-z0-9-]*):(?!//)(.+)$")


def parse_source(text: str) -> tuple[str, str]:
    """`KIND:PATH` -> (kind, path); a bare path or URI (s3://...) -> ("auto", it). Unknown kinds fail."""
    m = _PREFIX.match(text)
    if not m:
        return "auto", text
    kind, location = m.groups()
    if kind not in ADAPTERS:
        raise ValueError(f"unknown source kind {kind!r} in --source {kind}:...; known: {', '.join(KINDS)}")
    return kind, location


def discover_source(text: str, opts: dict, salt: str) -> tuple[str, str, Discovery]:
    """(kind, label, discovery) of one --source. The label is `<kind>-<salted hash of the location>`."""
    kind, location = parse_source(text)
    label = source_label(kind, location.rstrip("/"), salt)
    return kind, label, ADAPTERS[kind](label, location.rstrip("/") or location, opts)
