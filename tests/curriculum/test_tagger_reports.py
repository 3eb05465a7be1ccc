"""Report text -> sections -> sentences -> one caption per phase (curriculum/reports.py)."""
from __future__ import annotations

import pytest

from radisim.curriculum.phases import PHASES
from radisim.curriculum.reports import (PhaseCaption, StudyMeta, normalise_body_part, normalise_modality,
                                        phase_captions, split_sections, split_sentences, tag_report)
from radisim.curriculum.tagger import tag_caption

REPORT = ("COMPARISON: Chest radiograph on XXXX.\n"
          "INDICATION: Shortness of breath, evaluate for pneumonia.\n"
          "FINDINGS: The trachea is midline. The heart is normal in size. No pleural effusion or pneumothorax. "
          "Mild degenerative changes of the thoracic spine. Small right pleural effusion.\n"
          "IMPRESSION: No acute cardiopulmonary abnormality.")


def test_sections_from_lines_and_inline_headers():
    lines = split_sections(REPORT)
    assert [n for n, _ in lines] == ["comparison", "indication", "findings", "impression"]
    inline = split_sections(" ".join(REPORT.split()))  # ingestion collapses whitespace: headers inline
    assert inline == lines or [n for n, _ in inline] == [n for n, _ in lines]
    assert split_sections("Clinical history: cough. Findings: clear lungs. Conclusion: normal.") == [
        ("history", "cough."), ("findings", "clear lungs."), ("impression", "normal.")]
    assert split_sections("Axial CT of the head.") == [("", "Axial CT of the head.")]  # a caption: one section


@pytest.mark.parametrize("text, sentences", [
    ("Seen by Dr. Smith. Lungs clear.", ["Seen by Dr. Smith.", "Lungs clear."]),
    ("Mr. Jones has a 2.5 cm nodule. No effusion.", ["Mr. Jones has a 2.5 cm nodule.", "No effusion."]),
    ("Opacities, e.g. Atelectasis, are seen. No pneumothorax.", ["Opacities, e.g. Atelectasis, are seen.",
                                                                   "No pneumothorax."]),
    ("1. Cardiomegaly. 2. No effusion.", ["Cardiomegaly.", "No effusion."]),
    ("No acute disease", ["No acute disease"]),
])
def test_sentences_do_not_break_on_abbreviations_decimals_or_list_numbers(text, sentences):
    assert split_sentences(text) == sentences


def test_report_feeds_several_phases_and_drops_history_sections():
    caps = {c.phase: c for c in phase_captions(REPORT)}
    # "radiograph" only in the dropped comparison (an earlier study): no modality caption from the text
    assert list(caps) == ["anatomy", "localization", "abnormality", "grading"]
    assert caps["localization"].caption == "The trachea is midline."
    assert caps["grading"].caption == "Mild degenerative changes of the thoracic spine. Small right pleural effusion."
    assert "pneumonia" not in " ".join(c.caption for c in caps.values()).lower()  # the indication is dropped
    assert caps["anatomy"].caption == "Chest image."
    for c in caps.values():
        assert c.tags.phase == c.phase and c.tags.anatomy == "chest"  # "thoracic spine" is no anatomy
        assert tag_caption(c.caption).phase == c.phase


def test_coarse_captions_come_from_metadata_templates():
    caps = phase_captions("No acute cardiopulmonary abnormality.", StudyMeta(modality="CR", body_part="CHEST", view="PA"))
    assert [(c.phase, c.caption) for c in caps] == [("modality", "A radiograph."),
                                                   ("anatomy", "Chest radiograph, PA view."),
                                                   ("abnormality", "No acute cardiopulmonary abnormality.")]
    assert all(isinstance(c, PhaseCaption) and (c.tags.modality, c.tags.view) == ("DR", "frontal") for c in caps)
    assert [c.phase for c in phase_captions("Mild cardiomegaly.", StudyMeta("MR", "KNEE", "sagittal"))][:2] == [
        "modality", "anatomy"]
    assert normalise_modality("DX") == "DR" and normalise_modality("US") == ""
    assert normalise_body_part("CSPINE") == "spine" and normalise_body_part("Shoulder") == "shoulder"


def test_a_caption_is_a_one_section_report():
    caps = phase_captions("Moderate left pleural effusion on the frontal radiograph.")
    assert caps[-1].phase == "grading" and caps[-1].caption == "Moderate left pleural effusion on the frontal radiograph."
    assert all(c.phase in PHASES for c in caps)


def test_tag_report_record():
    rec = tag_report(REPORT)
    assert rec["text"] == REPORT and rec["phases"] == [c.phase for c in phase_captions(REPORT)]
    by_text = {s["text"]: s for s in rec["sentences"]}
    assert by_text["No pleural effusion or pneumothorax."]["findings"] == [
        {"term": "pleural effusion", "assertion": "absent", "location": "", "severity": ""},
        {"term": "pneumothorax", "assertion": "absent", "location": "", "severity": ""}]
    s = by_text["Small right pleural effusion."]
    assert (s["section"], s["phase"]) == ("findings", "grading")
    assert s["findings"] == [{"term": "pleural effusion", "assertion": "present", "location": "right",
                              "severity": "small"}]


def test_dropped_sections_are_configurable_and_one_default():
    from radisim.curriculum.reports import DROP_SECTIONS
    from radisim.platform.config import IngestConfig

    assert tuple(IngestConfig().drop_sections) == DROP_SECTIONS  # prepare-data and `radisim tag` agree
    kept = phase_captions(REPORT, drop_sections=("comparison",))  # the indication now counts
    assert "evaluate for pneumonia" in " ".join(c.caption for c in kept).lower()
