"""Helpers shared by the dataset adapters: report sections as `LABEL: text` lines, file stats,
and per-worker caches of small side tables (read once per worker process, not once per chunk)."""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, Optional

from ..sources import filesystem, read_bytes

_SECTION = re.compile(r"^\s*([A-Z][A-Z0-9 /&()\-]{1,40}):\s*(.*)$")


def sections_text(sections: Iterable[tuple[str, Optional[str]]]) -> str:
    """[(label, text)] -> "LABEL: text" lines (whitespace collapsed, empty sections dropped)."""
    lines = []
    for label, text in sections:
        body = " ".join(str(text or "").split())
        if body and body.lower() not in ("nan", "none."):
            lines.append(f"{label.strip().upper()}: {body}" if label else body)
    return "\n".join(lines)


def split_report(text: str) -> list[tuple[str, str]]:
    """A free-text report (MIMIC-CXR style: `FINDINGS: ...` headings, continuation lines) -> sections.
    Text before the first heading (MIMIC's "FINAL REPORT" banner) is kept as an unlabelled section
    only when it is not a banner."""
    sections: list[list[str]] = []
    label = ""
    for line in text.splitlines():
        m = _SECTION.match(line)
        if m:
            label = m.group(1).strip()
            sections.append([label, m.group(2)])
        elif line.strip():
            if not sections:
                sections.append(["", line])
            else:
                sections[-1][1] += " " + line
    return [(lab, body) for lab, body in sections if not (lab == "" and body.strip().upper() == "FINAL REPORT")]


def stat_of(uri: str) -> str:
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    return f"{info.size}:{info.mtime_ns}"


def exists(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    return fs.get_file_info(path).type == pafs.FileType.File


def is_dir(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def text_of(uri: str) -> str:
    data = read_bytes(uri)
    if uri.endswith(".gz"):
        import gzip

        data = gzip.decompress(data)
    return data.decode("utf-8-sig")


@lru_cache(maxsize=8)
def csv_table(uri: str, stat: str, key: str) -> dict[str, dict]:
    """A small side CSV (.csv or .csv.gz) as {row[key]: row}, once per worker process and file version."""
    import csv
    import io

    return {r[key]: r for r in csv.DictReader(io.StringIO(text_of(uri)))}
