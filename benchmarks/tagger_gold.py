"""The report tagger measured on the hand-labelled IU gold set and on all 3,955 IU reports.

  python benchmarks/tagger_gold.py [--wheel PATH] [--cache DIR]     # prints one JSON object

Figures (docs/reports.md): per-phase precision/recall of the sentence phase (and of "none": sentences
with no image content), finding recall and assertion accuracy over the gold findings, study-level
modality/anatomy read from the text (every IU study is a chest radiograph: the collection's own
description), and the whole-report phase distribution: for each phase, the share of the 3,955 reports
whose text (sections as `LABEL: text` lines, as `radisim tag` reads it) yields a caption of that phase.
The gold sentences are read from the wheel at run time (the text's licence, CC BY-NC-ND 4.0, keeps it
out of this repository); a changed text fails its hash check instead of being measured.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.iu_reports import fetch_wheel, reports  # noqa: E402
from radisim.curriculum.phases import PHASES  # noqa: E402
from radisim.curriculum.reports import phase_captions, report_sentences, study_facts  # noqa: E402
from radisim.curriculum.tagger import tag_caption  # noqa: E402

GOLD = Path(__file__).resolve().parents[1] / "tests" / "curriculum" / "gold" / "iu_sentences.tsv"
LABELS = (*PHASES, "none")


def load_gold(texts: dict[str, str], path: Path = GOLD) -> list[dict]:
    """Gold rows with their sentence text read from the reports; raises on a stale reference."""
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or line.startswith("file\t") or not line.strip():
            continue
        name, off, length, digest, phase, findings = (line.split("\t") + [""])[:6]
        text = texts[name][int(off): int(off) + int(length)]
        if hashlib.sha256(text.encode()).hexdigest()[:12] != digest:
            raise ValueError(f"gold reference {name}@{off} no longer matches its text (hash {digest})")
        gold = dict(f.rsplit("=", 1) for f in findings.split(";") if f)
        rows.append({"file": name, "text": text, "phase": phase, "findings": gold})
    return rows


def _sentence_phase(text: str) -> str:
    """The phase the report pipeline gives one sentence ("none" for none)."""
    sentences = report_sentences(text)
    phase = sentences[0].tags.phase if len(sentences) == 1 else tag_caption(text).phase
    return phase or "none"


def _assertions(text: str) -> dict[str, str]:
    sentences = report_sentences(text)
    tags = sentences[0].tags if sentences else tag_caption(text)
    out: dict[str, str] = {}
    for f in tags.mentions:  # one per finding: present over uncertain over absent, as Tags aggregates
        rank = {"present": 0, "uncertain": 1, "absent": 2}
        if f.finding not in out or rank[f.assertion] < rank[out[f.finding]]:
            out[f.finding] = f.assertion
    return out


def gold_figures(gold: list[dict]) -> dict:
    predicted = [_sentence_phase(g["text"]) for g in gold]
    per_phase = {}
    for label in LABELS:
        tp = sum(p == label == g["phase"] for p, g in zip(predicted, gold))
        n_pred = sum(p == label for p in predicted)
        n_gold = sum(g["phase"] == label for g in gold)
        per_phase[label] = {"gold": n_gold, "predicted": n_pred,
                            "precision": round(tp / n_pred, 3) if n_pred else None,
                            "recall": round(tp / n_gold, 3) if n_gold else None}
    found = correct = total = 0
    confusion: Counter = Counter()
    for g in gold:
        got = _assertions(g["text"])
        for finding, assertion in g["findings"].items():
            total += 1
            if finding in got:
                found += 1
                correct += got[finding] == assertion
                confusion[f"{assertion}->{got[finding]}"] += 1
    return {
        "sentences": len(gold),
        "phase_accuracy": round(sum(p == g["phase"] for p, g in zip(predicted, gold)) / len(gold), 3),
        "per_phase": per_phase,
        "findings": total,
        "finding_recall": round(found / total, 3),
        "assertion_accuracy": round(correct / found, 3),
        "assertion_confusion": dict(sorted(confusion.items())),
    }


def report_figures(texts: dict[str, str]) -> dict:
    fed: Counter = Counter()
    facts: Counter = Counter()
    for text in texts.values():
        sentences = report_sentences(text)
        f = study_facts(sentences)
        facts[f"modality={f.modality or '?'}"] += 1
        facts[f"anatomy={f.anatomy or '?'}"] += 1
        fed.update({c.phase for c in phase_captions(text)})
    n = len(texts)
    return {
        "reports": n,
        "phase_share": {p: round(fed[p] / n, 3) for p in PHASES},
        "study_modality_from_text": {k.split("=")[1]: v for k, v in facts.items() if k.startswith("modality=")},
        "study_anatomy_from_text": {k.split("=")[1]: v for k, v in facts.items() if k.startswith("anatomy=")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="torchxrayvision-1.5.7 wheel (default: download into --cache)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "radisim" / "wheels")
    args = parser.parse_args(argv)
    texts = dict(reports(args.wheel or fetch_wheel(args.cache)))
    print(json.dumps({"gold": gold_figures(load_gold(texts)), "reports": report_figures(texts)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
