"""Caption -> phase and tags on realistic report sentences (CT, MR, chest X-ray) and on the phantom."""
from __future__ import annotations

import pytest

from radisim.curriculum.phantom import generate_case
from radisim.curriculum.phases import PHASES
from radisim.curriculum.tagger import load_vocabulary, tag_caption

CASES = [
    # caption, phase, modality, anatomy, view, finding
    ("Non-contrast CT", "modality", "CT", "", "", ""),
    ("Chest radiograph.", "anatomy", "DR", "chest", "", ""),
    ("Axial CT image of the abdomen at the level of the kidneys", "localization", "CT", "abdomen", "axial", ""),
    ("PA and lateral views of the chest.", "anatomy", "", "chest", "frontal", ""),
    ("The liver is in the right upper quadrant.", "localization", "", "abdomen", "", ""),
    ("No acute cardiopulmonary process.", "abnormality", "", "chest", "", "none"),  # cardiopulmonary: the chest
    ("Frontal chest radiograph: no pneumothorax or pleural effusion.", "abnormality", "DR", "chest", "frontal", "none"),
    ("Right lower lobe consolidation concerning for pneumonia.", "abnormality", "", "", "", "pneumonia"),
    ("Moderate left pleural effusion with adjacent atelectasis on the frontal radiograph.", "grading", "DR", "chest",
     "frontal", "pleural effusion"),
    ("Non-contrast CT of the head demonstrates an acute 8 mm subdural hematoma with 3 mm midline shift.",
     "grading", "CT", "head", "", "hemorrhage"),
    ("Axial FLAIR MRI of the brain showing a high-grade glioma in the left frontal lobe.", "grading", "MR",
     "head", "axial", "tumor"),
    ("Sagittal T2-weighted MRI of the knee: complete tear of the anterior cruciate ligament.", "grading", "MR",
     "knee", "sagittal", "tear"),
    ("MRI of the knee without evidence of meniscal tear.", "abnormality", "MR", "knee", "", "none"),
    ("CT chest shows a 14 mm part-solid nodule in the right upper lobe, Lung-RADS 4", "grading", "CT", "chest",
     "", "nodule"),
    ("Coronal CT of the abdomen: hypodense liver lesion, no lymphadenopathy", "abnormality", "CT", "abdomen",
     "coronal", "liver tumor"),
    ("Meningioma, WHO grade 2, on contrast-enhanced MRI of the brain", "grading", "MR", "head", "", "tumor"),
    ("a photo of a dog", None, "", "", "", ""),
]


@pytest.mark.parametrize("caption,phase,modality,anatomy,view,finding", CASES)
def test_report_sentences(caption, phase, modality, anatomy, view, finding):
    t = tag_caption(caption)
    assert (t.phase, t.modality, t.anatomy, t.view, t.finding) == (phase, modality, anatomy, view, finding)
    if phase:
        assert t.granularities[-1] == phase  # finest granularity is the phase
        assert list(t.granularities) == sorted(t.granularities, key=PHASES.index)


def test_several_granularities_recorded():
    t = tag_caption("axial CT of the chest showing a 12 mm nodule in the right upper lobe")
    assert t.granularities == ("modality", "anatomy", "localization", "abnormality", "grading")
    assert t.phase == "grading" and t.grade == "12 mm"


def test_negation_scope_ends_at_clause():
    t = tag_caption("No pneumothorax, but a large right pleural effusion.")
    assert t.negated == ("pneumothorax",) and t.findings == ("pleural effusion",) and t.phase == "grading"


@pytest.mark.parametrize("caption, present, negated", [
    # a list that "or" closes is negated whole: the commas do not end the cue's scope
    ("Chest radiograph with no pneumothorax, pleural effusion or pneumonia.", (),
     ("pneumothorax", "pleural effusion", "pneumonia")),
    ("Pneumonia, no pneumothorax, effusion or nodule.", ("pneumonia",), ("pneumothorax", "pleural effusion", "nodule")),
    # without "or" a comma ends the clause, and so does a full stop before the list
    ("CT of the chest: no nodule, small pleural effusion.", ("pleural effusion",), ("nodule",)),
    # ... and two findings offered as alternatives ("nodule or pneumonia") are uncertain, not present
    ("No effusion. Pneumothorax, nodule or pneumonia.", ("pneumothorax",), ("pleural effusion",)),
])
def test_negated_lists_span_commas(caption, present, negated):
    t = tag_caption(caption)
    assert (t.findings, t.negated) == (present, negated)
    assert t.finding == (present[0] if present else "none")


def test_given_tags_win():
    t = tag_caption("CT of the chest", given={"phase": "abnormality", "finding": "covid-19 pneumonia", "modality": "CT"})
    assert (t.phase, t.finding) == ("abnormality", "covid-19 pneumonia")
    assert tag_caption("CT of the chest", given={"phase": "not-a-phase"}).phase == "anatomy"


def test_phantom_captions_tag_to_their_phase():
    wrong = []
    for i in range(300):
        case = generate_case(0, i, 32)
        for phase, caption in case.captions.items():
            t = tag_caption(caption)
            if t.phase != phase or (t.modality and t.modality != case.modality):
                wrong.append((phase, t.phase, caption))
            if phase == "localization" and t.target_region != case.target_region:  # "top left" is "upper left"
                wrong.append((case.target_region, t.target_region, caption))
    assert not wrong, wrong[:5]


def test_vocabulary_loads_and_is_documented():
    v = load_vocabulary()
    assert set(v.raw["modality"]) == {"CT", "MR", "DR"}
    assert "frontal lobe" in v.structure and "frontal" in v.structure
