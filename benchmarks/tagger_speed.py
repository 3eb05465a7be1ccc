"""Report tagging speed on one core: sentences/s of the sentence tagger and reports/s of phase_captions.

  python benchmarks/tagger_speed.py [--wheel torchxrayvision-1.5.7-py3-none-any.whl] [--limit N]
  python benchmarks/tagger_speed.py --input reports.txt        # one report per line, as `radisim tag` reads

Input: the 3,955 IU chest X-ray reports inside the torchxrayvision wheel (downloaded with pip into
~/.cache/radisim/wheels when --wheel is not given), or --input. The process is pinned to one CPU and
timed in process CPU seconds (`time.process_time`), so a figure taken on a shared machine is still
the work of one core. Budget (issue 26): at least 5,000 sentences/s, so that tagging never limits
ingestion. Prints one JSON object; every count in it is computed from the run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.iu_reports import fetch_wheel, reports  # noqa: E402
from radisim.curriculum.reports import phase_captions, report_sentences  # noqa: E402
from radisim.curriculum.tagger import load_vocabulary, tag_caption  # noqa: E402

BUDGET = 5000  # sentences/s on one core, for the sentence tagger and for whole reports (phase_captions)


def _pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"cpu {cpu}"
    return "not pinned"


def measure(texts: list[str], repeat: int = 1) -> dict:
    load_vocabulary()  # compiled once, outside the timing
    sentences = [s.text for t in texts for s in report_sentences(t)]
    t0 = time.process_time()
    for _ in range(repeat):
        for s in sentences:
            tag_caption(s)
    tag_s = time.process_time() - t0
    t0 = time.process_time()
    fed = sum(len(phase_captions(t)) for _ in range(repeat) for t in texts)
    reports_s = time.process_time() - t0
    return {
        "reports": len(texts), "sentences": len(sentences), "repeat": repeat,
        "phase_captions": fed,
        "tag_cpu_s": round(tag_s, 3), "sentences_per_s": round(repeat * len(sentences) / tag_s) if tag_s else None,
        "phase_captions_cpu_s": round(reports_s, 3),
        "reports_per_s": round(repeat * len(texts) / reports_s) if reports_s else None,
        "report_sentences_per_s": round(repeat * len(sentences) / reports_s) if reports_s else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, help="reports, one per line (default: the IU reports)")
    parser.add_argument("--wheel", type=Path, help="torchxrayvision-1.5.7 wheel")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "radisim" / "wheels")
    parser.add_argument("--limit", type=int, default=0, help="first N reports only")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    if args.input:
        texts = [line.rstrip("\n") for line in args.input.read_text().splitlines() if line.strip()]
    else:
        texts = [t for _, t in reports(args.wheel or fetch_wheel(args.cache))]
    texts = texts[: args.limit] if args.limit else texts
    pinned = _pin_one_core()
    result = measure(texts, args.repeat)
    result.update(budget_sentences_per_s=BUDGET, pinned=pinned, python=platform.python_version(),
                  within_budget=all(result[k] is not None and result[k] >= BUDGET
                                    for k in ("sentences_per_s", "report_sentences_per_s")))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
