"""The report tagger against the hand-labelled IU gold set and over all 3,955 IU reports (docs/reports.md).

The reports come from the torchxrayvision 1.5.7 wheel, downloaded with pip into a cache (never
vendored; the text is CC BY-NC-ND 4.0, so the gold set holds references and hashes only). Thresholds
sit a little below the measured figures so that a regression fails and noise does not.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import tagger_gold, tagger_speed  # noqa: E402
from benchmarks.iu_reports import fetch_wheel, reports  # noqa: E402
from radisim.curriculum.phases import PHASES  # noqa: E402

CACHE = Path(os.environ.get("RADISIM_TEST_CACHE", Path.home() / ".cache" / "radisim" / "wheels"))


@pytest.fixture(scope="session")
def iu_texts() -> dict[str, str]:
    try:
        wheel = fetch_wheel(CACHE)
    except (subprocess.SubprocessError, OSError) as err:
        pytest.skip(f"pip could not download torchxrayvision==1.5.7 (the IU reports) into {CACHE}: {err}")
    return dict(reports(wheel))


@pytest.fixture(scope="session")
def gold(iu_texts):
    return tagger_gold.load_gold(iu_texts)


def test_gold_set_is_large_labelled_and_references_real_text(gold, iu_texts):
    assert len(iu_texts) == 3955
    assert len(gold) >= 300 and all(g["text"] for g in gold)
    labels = {g["phase"] for g in gold}
    assert set(PHASES[1:]) <= labels and "none" in labels   # IU has no modality-only sentence: see docs
    assert sum(len(g["findings"]) for g in gold) >= 300
    assert {a for g in gold for a in g["findings"].values()} == {"present", "absent", "uncertain"}


def test_gold_figures_do_not_regress(gold):
    f = tagger_gold.gold_figures(gold)
    pp = f["per_phase"]
    assert f["phase_accuracy"] >= 0.90
    assert pp["abnormality"]["precision"] >= 0.95 and pp["abnormality"]["recall"] >= 0.88
    assert pp["grading"]["precision"] >= 0.90 and pp["grading"]["recall"] >= 0.90
    assert pp["anatomy"]["recall"] >= 0.85 and pp["anatomy"]["precision"] >= 0.55
    assert pp["localization"]["recall"] >= 0.9 and pp["localization"]["precision"] >= 0.55
    assert pp["none"]["precision"] >= 0.9 and pp["none"]["recall"] >= 0.95
    assert pp["modality"]["predicted"] <= 1  # no sentence of a chest radiograph report is modality-only
    assert f["finding_recall"] >= 0.92 and f["assertion_accuracy"] >= 0.96


def test_every_phase_is_fed_by_at_least_5_percent_of_the_reports(iu_texts):
    r = tagger_gold.report_figures(iu_texts)
    assert r["reports"] == 3955
    assert all(r["phase_share"][p] >= 0.05 for p in PHASES), r["phase_share"]
    # every IU study is a chest radiograph: what the text says about the study must agree
    modality, anatomy = r["study_modality_from_text"], r["study_anatomy_from_text"]
    assert modality["DR"] >= 0.95 * sum(v for k, v in modality.items() if k != "?")
    assert anatomy["chest"] >= 0.98 * sum(v for k, v in anatomy.items() if k != "?")


def test_speed_benchmark_runs_on_a_small_input(tmp_path, capsys, iu_texts):
    texts = [t.replace("\n", " ") for t in list(iu_texts.values())[:20]]
    (tmp_path / "r.txt").write_text("\n".join(texts) + "\n")
    assert tagger_speed.main(["--input", str(tmp_path / "r.txt"), "--repeat", "2"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["reports"] == 20 and out["sentences"] > 20 and out["phase_captions"] >= 20
    assert out["sentences_per_s"] > 0 and out["report_sentences_per_s"] > 0  # no timing assertion
