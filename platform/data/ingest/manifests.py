"""Manifests (CSV/TSV, JSON Lines, Parquet) planned into chunks in one streaming pass and read, chunk
by chunk, inside the Ray tasks: a chunk reads only its own bytes or row group, never the whole file.

- CSV/TSV: the driver reads the file once in fixed-size blocks and notes the byte offset after every
  `rows_per_chunk` records. Quote parity is tracked (RFC 4180: `""` is two quotes), so a newline
  inside a quoted caption never becomes a boundary. A task reads `[start, stop)` and parses it with
  pyarrow with the header's column names; a row pyarrow cannot parse (wrong field count) is a
  counted reject "manifest_row_malformed".
- JSON Lines (PMC-OA's `train.jsonl`): the same byte ranges (JSON lines hold no raw newline); a line
  that is not a JSON object is "manifest_row_malformed".
- Parquet: one chunk per row group, or `rows_per_chunk` slices of a larger group, read with only the
  columns the source needs (`pq.ParquetFile.iter_batches`).

Driver memory is one block (8 MiB) plus one offset per chunk, whatever the number of rows.
"""
from __future__ import annotations

import io
import json
from typing import Iterator, Optional

import numpy as np

BLOCK = 8 << 20


def _open(uri: str):
    from .sources import filesystem

    fs, path = filesystem(uri)
    return fs.open_input_file(path)


def separator_for(uri: str, configured: Optional[str]) -> str:
    if configured not in (None, "auto"):
        return configured
    return "\t" if uri.lower().endswith(".tsv") else ","


def _record_ends(uri: str, quoted: bool) -> Iterator[int]:
    """Byte offsets just past every record-ending newline (outside quotes when `quoted`), streamed."""
    offset, parity = 0, 0
    with _open(uri) as f:
        while True:
            block = f.read(BLOCK)
            if not block:
                break
            arr = np.frombuffer(block, dtype=np.uint8)
            newlines = np.flatnonzero(arr == 10)
            if quoted:
                quotes = np.cumsum(arr == 34) + parity
                newlines = newlines[(quotes[newlines] % 2) == 0]
                parity = int(quotes[-1] % 2)
            for n in newlines:
                yield offset + int(n) + 1
            offset += len(block)
    yield -offset - 1 if offset else -1  # end marker: -(file size) - 1


def plan_text(uri: str, fmt: str, rows_per_chunk: int) -> tuple[list[tuple[int, int]], int]:
    """([(start, stop) byte ranges], data start). CSV: the header line is not part of any range."""
    ranges, start, count, size = [], 0, 0, 0
    header_done = fmt != "csv"
    for end in _record_ends(uri, quoted=fmt == "csv"):
        if end < 0:
            size = -end - 1
            break
        if not header_done:
            header_done, start = True, end
            continue
        count += 1
        if count == rows_per_chunk:
            ranges.append((start, end))
            start, count = end, 0
    if header_done and size > start:
        ranges.append((start, size))
    return ranges, ranges[0][0] if ranges else 0


def csv_header(uri: str, sep: str) -> list[str]:
    import pyarrow.csv as pacsv

    with _open(uri) as f:
        head = f.read(min(BLOCK, f.size()))
    line = head.split(b"\n", 1)[0]
    table = pacsv.read_csv(io.BytesIO(line + b"\n"), parse_options=pacsv.ParseOptions(delimiter=sep),
                           read_options=pacsv.ReadOptions(use_threads=False))
    return table.column_names


def plan_parquet(uri: str, rows_per_chunk: int) -> list[tuple[int, int, int]]:
    """[(row group, start, stop)] with at most `rows_per_chunk` rows each."""
    import pyarrow.parquet as pq

    with _open(uri) as f:
        meta = pq.ParquetFile(f).metadata
        out = []
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            out += [(g, a, min(n, a + rows_per_chunk)) for a in range(0, n, rows_per_chunk)]
    return out


# ------------------------------------------------------------------------------------------- reading


def read_csv_range(uri: str, start: int, stop: int, columns: list[str], sep: str) -> tuple[list[dict], int]:
    """(rows as dicts of strings, malformed rows skipped) of the bytes [start, stop)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with _open(uri) as f:
        f.seek(start)
        data = f.read(stop - start)
    bad = [0]

    def skip(_row) -> str:  # never look at the row's text: it may be PHI
        bad[0] += 1
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=columns, use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True, invalid_row_handler=skip),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in columns},
                                             strings_can_be_null=False))
    return table.to_pylist(), bad[0]


def read_jsonl_range(uri: str, start: int, stop: int) -> Iterator[Optional[dict]]:
    """Each line's object, or None for a line that is not a JSON object."""
    with _open(uri) as f:
        f.seek(start)
        data = f.read(stop - start)
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        yield row if isinstance(row, dict) else None


def read_parquet_slice(uri: str, group: int, start: int, stop: int, columns: Optional[list[str]]) -> list[dict]:
    import pyarrow.parquet as pq

    with _open(uri) as f:
        pf = pq.ParquetFile(f)
        names = [c for c in columns if c in pf.schema_arrow.names] if columns else None
        rows: list[dict] = []
        seen = 0
        for batch in pf.iter_batches(batch_size=max(1, stop - start), row_groups=[group], columns=names):
            if seen + batch.num_rows > start and seen < stop:
                part = batch.slice(max(0, start - seen), stop - max(start, seen))
                rows += part.to_pylist()
            seen += batch.num_rows
            if seen >= stop:
                break
    return rows


def parquet_columns(uri: str) -> list[str]:
    import pyarrow.parquet as pq

    with _open(uri) as f:
        return list(pq.ParquetFile(f).schema_arrow.names)
