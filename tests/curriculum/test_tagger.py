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


# ---- issue 26, "Why": each failure seen on real report text, as a test

@pytest.mark.parametrize("sentence, finding, assertion", [
    ("Pneumonia is not seen.", "pneumonia", "absent"),
    ("The right pleural effusion has resolved.", "pleural effusion", "absent"),
    ("No change in the large right pleural effusion.", "pleural effusion", "present"),  # pseudo-negation
    ("Not only a pneumothorax but also an effusion.", "pneumothorax", "present"),
    ("Pneumonia cannot be excluded.", "pneumonia", "uncertain"),
    ("Possible small left pleural effusion.", "pleural effusion", "uncertain"),
    ("Findings may represent atelectasis.", "atelectasis", "uncertain"),
    ("Opacity suggestive of pneumonia.", "pneumonia", "uncertain"),
    ("No pneumothorax, but there is a small effusion.", "pleural effusion", "present"),  # "but" ends the scope
    ("No pneumothorax however a right pleural effusion is present.", "pleural effusion", "present"),
    ("No nodule which could explain the large effusion.", "pleural effusion", "present"),  # "which" ends it
])
def test_assertion_of_real_report_wordings(sentence, finding, assertion):
    (mention,) = [m for m in tag_caption(sentence).mentions if m.finding == finding]
    assert mention.assertion == assertion


def test_title_mr_is_not_magnetic_resonance():
    assert tag_caption("Mr. Jones was seen by Dr. Smith.").modality == ""
    assert tag_caption("MR of the knee.").modality == "MR"
    assert tag_caption("mri of the knee").modality == "MR"  # an all-lower-case caption still counts


def test_small_bowel_is_anatomy_and_small_nodule_a_size():
    bowel = tag_caption("Gas in the small bowel, no obstruction.")
    assert bowel.phase == "abnormality" and bowel.anatomy == "abdomen" and bowel.grade == ""
    nodule = tag_caption("Small nodule in the right upper lobe.")
    assert nodule.phase == "grading" and nodule.mentions[0].severity == "small"


def test_a_device_is_no_localization():
    t = tag_caption("Left PICC line.")
    assert t.phase == "abnormality" and "localization" not in t.granularities
    assert t.mentions[0].finding == "support device" and t.mentions[0].location == "left"
    assert tag_caption("The left lung base.").phase == "localization"  # a positional word on an organ still is


def test_thoracic_spine_in_a_chest_report_is_a_finding_location():
    from radisim.curriculum.reports import phase_captions

    report = ("FINDINGS: The heart is normal in size. The lungs are clear. No pleural effusion. "
              "Degenerative changes of the thoracic spine.")
    caps = phase_captions(report)
    assert {c.tags.anatomy for c in caps} == {"chest"}
    spine = next(m for c in caps for m in c.tags.mentions if m.finding == "degenerative change")
    assert spine.location == "thoracic spine"


@pytest.mark.parametrize("caption, anatomy", [
    ("Radiograph of the left shoulder.", "shoulder"), ("Lumbar spine radiograph.", "spine"),
    ("AP pelvis radiograph.", "pelvis"), ("Radiograph of the right hand.", "upper limb"),
    ("Radiograph of the ankle.", "lower limb"), ("Ultrasound of the neck.", "neck"),
    ("Mammogram of the left breast.", "breast"), ("The heart is enlarged.", "chest"),
    ("The pulmonary vasculature is normal.", "chest"),
])
def test_anatomy_beyond_the_phantom_regions(caption, anatomy):
    assert tag_caption(caption).anatomy == anatomy
