"""Tag report texts with their curriculum phases: audit what training will see (`prepare-data` uses the same code).

Reads one report per line from stdin or --input FILE: plain text (sections inline, "FINDINGS: ...
IMPRESSION: ...") or JSONL objects with a "text" field (and optionally "modality", "body_part",
"view": the study's metadata, as a DICOM header or a dataset's CSV would give it). Writes JSONL, one
object per input, in input order:

  {"text", "phases": [...], "sentences": [{"text", "section", "phase",
                                           "findings": [{"term", "assertion", "location", "severity"}]}]}

"phases" are the phases the report feeds in `prepare-data` (one training row per image and phase);
a sentence's "phase" is null when it describes no image content or names nothing the vocabulary knows.
An input that cannot be read (a JSONL line that is no object or has no "text") is reported on stderr
with its line number and reason, counted in the closing summary, and makes the exit status 1.

  radisim tag --input reports.jsonl > tags.jsonl          # --config/--set as for prepare-data
  echo "FINDINGS: Small right pleural effusion. IMPRESSION: No pneumothorax." | radisim tag
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from typing import IO, Iterator, Optional

from radisim.curriculum.reports import DROP_SECTIONS, StudyMeta, tag_report
from radisim.jobs.common import job_parser, load_config

META_FIELDS = ("modality", "body_part", "view")


def _inputs(stream: IO[str]) -> Iterator[tuple[int, Optional[dict], str]]:
    """(line number, {"text", meta...} or None, reject reason). JSONL when the first line is an object."""
    jsonl = None
    for n, line in enumerate(stream, 1):
        if not line.strip():
            continue
        if jsonl is None:
            jsonl = line.lstrip().startswith("{")
        if not jsonl:
            yield n, {"text": line.rstrip("\n")}, ""
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            yield n, None, "not_json"
            continue
        if not isinstance(obj, dict):
            yield n, None, "not_an_object"
        elif not isinstance(obj.get("text"), str):
            yield n, None, "missing_text"
        else:
            yield n, obj, ""


def tag_stream(stream: IO[str], out: IO[str], drop_sections=DROP_SECTIONS, meta: Optional[StudyMeta] = None,
               err: IO[str] = sys.stderr) -> Counter:
    """Tag every input of `stream` into `out`; returns the counts ("tagged" and each reject reason)."""
    counts: Counter = Counter()
    for n, obj, reason in _inputs(stream):
        if reason:
            print(f"radisim tag: line {n}: {reason.replace('_', ' ')} (field 'text')", file=err)
            counts[reason] += 1
            continue
        study = StudyMeta(**{f: str(obj.get(f) or getattr(meta, f, "") or "") for f in META_FIELDS})
        out.write(json.dumps(tag_report(obj["text"], study, drop_sections=drop_sections)) + "\n")
        counts["tagged"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("tag", __doc__)
    parser.add_argument("--input", metavar="FILE", help="reports, one per line (plain text or JSONL); default stdin")
    parser.add_argument("--output", metavar="FILE", help="JSONL output; default stdout")
    parser.add_argument("--drop-sections", metavar="NAMES",
                        help=f"comma-separated report sections to ignore (default: data.ingest.drop_sections, "
                             f"as prepare-data: {','.join(DROP_SECTIONS)})")
    for f in META_FIELDS:
        parser.add_argument(f"--{f.replace('_', '-')}", default="", help=f"study {f} for inputs that give none")
    args = parser.parse_args(argv)
    cfg = load_config(args)  # the same data.ingest settings prepare-data would use
    names = args.drop_sections.split(",") if args.drop_sections is not None else cfg.data.ingest.drop_sections
    drop = tuple(s.strip().lower() for s in names if s.strip())
    meta = StudyMeta(args.modality, args.body_part, args.view)
    src = open(args.input, encoding="utf-8") if args.input else sys.stdin
    dst = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        counts = tag_stream(src, dst, drop, meta)
    finally:
        if args.input:
            src.close()
        if args.output:
            dst.close()
    rejected = sum(v for k, v in counts.items() if k != "tagged")
    print(f"radisim tag: tagged {counts['tagged']}, rejected {rejected}"
          + "".join(f", {k} {v}" for k, v in sorted(counts.items()) if k != "tagged"), file=sys.stderr)
    return 1 if rejected else 0


if __name__ == "__main__":
    sys.exit(main())
