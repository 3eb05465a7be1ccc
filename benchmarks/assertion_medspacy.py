"""Our ConText rules (curriculum/assertion.py) against medspacy's ConText on the gold set, and their speed.

  python -m venv /tmp/ms && /tmp/ms/bin/pip install medspacy==1.3.1 pyyaml && /tmp/ms/bin/pip install --no-deps -e .
  /tmp/ms/bin/python benchmarks/assertion_medspacy.py --wheel torchxrayvision-1.5.7-py3-none-any.whl

medspacy is not a dependency of the platform (docs/reports.md says why); this script runs in a
separate environment. Both sides get the same finding terms (our vocabulary, as medspacy TargetRules),
so the comparison is of the assertion algorithm: on each gold finding that both systems found, is it
present, absent or uncertain (medspacy: is_negated -> absent; is_uncertain or is_hypothetical ->
uncertain; else present). Speed: both tag the same list of IU report sentences, one document per
sentence, on one pinned core, in process CPU seconds; the ratio is printed only after checking that
both processed every sentence.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.iu_reports import fetch_wheel, reports  # noqa: E402
from benchmarks.tagger_gold import _assertions, load_gold  # noqa: E402
from radisim.curriculum.reports import report_sentences  # noqa: E402
from radisim.curriculum.tagger import load_vocabulary, tag_caption  # noqa: E402


def medspacy_pipeline():
    import medspacy
    from loguru import logger
    from medspacy.ner import TargetRule

    logger.remove()  # PyRuSH logs every token at DEBUG
    nlp = medspacy.load(medspacy_enable=["medspacy_target_matcher", "medspacy_context"])
    nlp.add_pipe("sentencizer", first=True)  # one sentence per document already; spaCy's is the fastest
    vocab = load_vocabulary()
    rules = [TargetRule(term, next(v for k, v in entries if k in ("finding", "device")))
             for term, entries in vocab.finding_terms.items() if any(k in ("finding", "device") for k, _ in entries)]
    nlp.get_pipe("medspacy_target_matcher").add(rules)
    return nlp


def _medspacy_assertions(doc) -> dict[str, str]:
    rank = {"present": 0, "uncertain": 1, "absent": 2}
    out: dict[str, str] = {}
    for e in doc.ents:
        a = "absent" if e._.is_negated else "uncertain" if (e._.is_uncertain or e._.is_hypothetical) else "present"
        if e.label_ not in out or rank[a] < rank[out[e.label_]]:
            out[e.label_] = a
    return out


def compare(gold: list[dict], nlp) -> dict:
    both = ours_ok = theirs_ok = 0
    for g, doc in zip(gold, nlp.pipe([g["text"] for g in gold])):
        ours, theirs = _assertions(g["text"]), _medspacy_assertions(doc)
        for finding, truth in g["findings"].items():
            if finding in ours and finding in theirs:
                both += 1
                ours_ok += ours[finding] == truth
                theirs_ok += theirs[finding] == truth
    return {"gold_findings_found_by_both": both, "ours_accuracy": round(ours_ok / both, 3),
            "medspacy_accuracy": round(theirs_ok / both, 3)}


def speed(sentences: list[str], nlp) -> dict:
    t0 = time.process_time()
    n_ours = sum(1 for s in sentences if tag_caption(s) is not None)
    ours = time.process_time() - t0
    t0 = time.process_time()
    n_theirs = sum(1 for _ in nlp.pipe(sentences, batch_size=256))
    theirs = time.process_time() - t0
    assert n_ours == n_theirs == len(sentences), (n_ours, n_theirs, len(sentences))
    return {"sentences": len(sentences), "ours_sentences_per_s": round(n_ours / ours),
            "medspacy_sentences_per_s": round(n_theirs / theirs), "ours_over_medspacy": round(theirs / ours, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "radisim" / "wheels")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    texts = dict(reports(args.wheel or fetch_wheel(args.cache)))
    nlp = medspacy_pipeline()
    sentences = [s.text for t in texts.values() for s in report_sentences(t)]
    print(json.dumps({"assertion": compare(load_gold(texts), nlp), "speed": speed(sentences, nlp)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
