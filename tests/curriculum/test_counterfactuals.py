"""Counterfactual captions: each changes exactly what its phase teaches, checked with the phase tagger."""
from __future__ import annotations

import random
import re

import pytest

from radisim.curriculum.counterfactuals import counterfactual, counterfactuals, detail_pool, find_detail
from radisim.curriculum import phantom
from radisim.curriculum.phantom import generate_case
from radisim.curriculum.phases import PHASES
from radisim.curriculum.tagger import tag_caption


def _phantom_captions(n=60):
    return [(phase, cap) for i in range(n) for phase, cap in generate_case(3, i).captions.items()]


def test_every_phantom_caption_has_a_counterfactual_and_it_differs():
    for phase, cap in _phantom_captions():
        for neg in counterfactuals(cap, phase, 3):
            assert neg is not None and neg.lower() != cap.lower(), (phase, cap)


def test_deterministic_per_caption_and_seed():
    cap = "axial CT of the abdomen: the liver is in the upper left of the image"
    assert counterfactuals(cap, "localization", 4) == counterfactuals(cap, "localization", 4)
    draws = {tuple(counterfactuals(cap, "localization", 4, seed=s)) for s in range(6)}
    assert len(draws) > 1


def test_modality_swaps_the_modality_and_nothing_else():
    for cap in ("a CT slice", "an MRI image", "frontal chest radiograph"):
        tags = tag_caption(cap)
        for neg in counterfactuals(cap, "modality", 5):
            t = tag_caption(neg)
            assert t.modality and t.modality != tags.modality, (cap, neg)
            assert t.anatomy == tags.anatomy
    assert counterfactuals("an MR image", "modality", 1) != ["an MR image"]
    # the article follows how the new term is said: "a mr" is in no report, and would give it away
    negs = {n.lower() for n in counterfactuals("a CT of the chest", "modality", 20)}
    assert negs == {"an mr of the chest", "an x-ray of the chest"}, negs
    assert {n.lower() for n in counterfactuals("an MR of the knee", "modality", 20)} == {
        "a ct of the knee", "an x-ray of the knee"}


def test_anatomy_swaps_an_organ_for_another_of_its_region():
    cap = "coronal MR image of the abdomen showing the liver and the spleen"
    for neg in counterfactuals(cap, "anatomy", 8):
        t = tag_caption(neg)
        assert t.anatomy == "abdomen" and set(t.organs) != {"liver", "spleen"}, neg
        assert neg.count("the liver") + neg.count("the spleen") == 1  # one swapped, never for a synonym or a repeat


def test_localization_flips_positions_only():
    cap = "CT of the abdomen with the liver in the upper left"
    negs = set(counterfactuals(cap, "localization", 30))
    assert negs == {cap.replace("upper left", q) for q in ("upper right", "lower left", "lower right")}
    for neg in negs:
        assert tag_caption(neg).target_region != tag_caption(cap).target_region


@pytest.mark.parametrize("cap,expected", [
    ("radiograph of the chest with no pneumonia", "radiograph of the chest with pneumonia"),
    ("Chest radiograph without pleural effusion", "Chest radiograph with a pleural effusion"),
    ("CT of the abdomen showing an enlarged lymph node", "CT of the abdomen showing no enlarged lymph node"),
    ("a hemorrhage on CT of the head", "no hemorrhage on CT of the head"),
])
def test_abnormality_toggles_the_negation(cap, expected):
    assert counterfactual(cap, "abnormality", random.Random(0)) == expected
    before, after = tag_caption(cap), tag_caption(expected)
    assert (before.findings, before.negated) == (after.negated, after.findings)


@pytest.mark.parametrize("cap,expected", [
    # one item of a negated list is affirmed, with its article; the others stay negated
    ("CT of the abdomen with no liver lesion or lymphadenopathy",
     {"CT of the abdomen with a liver lesion; no lymphadenopathy", "CT of the abdomen with lymphadenopathy; no liver lesion"}),
    ("normal axial CT of the thorax: no COVID-19 pneumonia, lung nodule or lymphadenopathy",  # "normal" goes too
     {"axial CT of the thorax: COVID-19 pneumonia; no lung nodule or lymphadenopathy",
      "axial CT of the thorax: a lung nodule; no COVID-19 pneumonia or lymphadenopathy",
      "axial CT of the thorax: lymphadenopathy; no COVID-19 pneumonia or lung nodule"}),
    ("No pneumothorax.", {"A pneumothorax."}),
    # a stated finding is negated before a negated one is affirmed; "no" takes its article's place and
    # a following "; no ..." list joins
    ("MRI scan of the head showing a brain tumor", {"MRI scan of the head showing no brain tumor"}),
    ("knee MRI: a meniscus tear; no ACL tear", {"knee MRI: no meniscus tear or ACL tear"}),
    ("sagittal MRI of the knee with a torn meniscus (meniscus tear)", {"sagittal MRI of the knee with no torn meniscus"}),
    ("a nodule of lung adenocarcinoma on axial CT", {"no nodule of lung adenocarcinoma on axial CT"}),
])
def test_abnormality_counterfactuals_read_like_reports(cap, expected):
    assert set(counterfactuals(cap, "abnormality", 12)) == expected


def _alternation(words) -> str:
    return "|".join(map(re.escape, sorted({w.lower() for w in words}, key=len, reverse=True)))


_WORDS = [  # what a frame abstracts away: finding phrases (with articles) first, then the study's words
    ("F", r"(?:\b(?:an?) )?\b(?:" + _alternation(re.sub(r"^an? ", "", p) for t in (
        phantom._FINDING_PHRASE, phantom._NEGATED_PHRASE) for ps in t.values() for p in ps) + r")(?![\w-])"),
    ("M", r"\b(?:" + _alternation(w for ws in phantom._MOD_SHORT.values() for w in ws) + r")(?![\w-])"),
    ("P", r"\b(?:" + _alternation(w for ws in phantom._PART.values() for w in ws) + r")\b"),
    ("V", r"\b(?:axial|sagittal|coronal|frontal|lateral|pa)\b"),
]


def _frame(caption: str) -> str:
    """A phantom caption with its finding phrases (as lists), modality, body part and view abstracted."""
    text = caption.lower()
    for letter, pattern in _WORDS:
        text = re.sub(pattern, letter, text)
    return re.sub(r"F(?:(?:,| or| and) F)+", "F", text)


def test_phantom_abnormality_counterfactuals_are_framed_like_real_captions():
    """The shortcut this prevents: a counterfactual whose wording no real caption has ("head MRI: brain
    tumor", "... with ACL tear or meniscus tear") is told from the true caption without the image."""
    cases = [generate_case(11, i) for i in range(400)]
    real = {_frame(c.captions["abnormality"]) for c in cases}
    flipped = 0
    for c in cases:
        cap = c.captions["abnormality"]
        for neg in counterfactuals(cap, "abnormality", 2):
            if "F" not in _frame(cap):  # "MR of the abdomen: no abnormality": the anatomy rule applies
                continue
            frame = _frame(neg)
            assert frame in real, (cap, neg, frame)
            affirmed = re.search(r"(?<!no )\bF\b", frame) is not None
            assert affirmed == (c.finding == "none"), (cap, neg)  # presence flipped
            flipped += 1
    assert flipped > 600


def test_grading_changes_subtype_grade_or_size():
    cap = "MR image of the head: meningioma, WHO grade 2, 14 mm, at the upper left"
    negs = counterfactuals(cap, "grading", 40)
    assert any("WHO grade 1" in n or "WHO grade 3" in n or "WHO grade 4" in n for n in negs)
    assert any("42 mm" in n or "5 mm" in n for n in negs)
    assert any(n.startswith("MR image of the head: glioma") or "pituitary adenoma" in n for n in negs)
    roman = {n.split()[2] for n in counterfactuals("WHO grade II glioma", "grading", 20) if "glioma" in n}
    assert roman and roman <= {"I", "III", "IV"}  # a Roman numeral stays Roman, in its case
    for n in negs:
        assert n.endswith("at the upper left") and tag_caption(n).finding == "tumor"


def test_falls_back_to_a_coarser_rule_and_none_when_nothing_applies():
    # no finding term: the abnormality phase changes the body region instead
    neg = counterfactual("MR image of the abdomen with no abnormality", "abnormality", random.Random(0))
    assert neg is not None and tag_caption(neg).anatomy not in ("", "abdomen")
    assert counterfactuals("an image", "grading", 2) == [None, None]
    with pytest.raises(ValueError, match="unknown phase"):
        counterfactual("a CT", "bogus", random.Random(0))
    assert set(PHASES) == {"modality", "anatomy", "localization", "abnormality", "grading"}


def _cohort_grading_captions(n, seed=5):
    return [generate_case(seed, phantom.COHORT_INDEX_OFFSET + i, cohort=c).captions["grading"]
            for c in phantom.COHORTS for i in range(n)]


def test_grading_details_are_found_in_one_clause():
    cases = {
        "MRI of the head: meningioma, WHO grade 2, 45 mm, at the bottom left":
            ("meningioma, WHO grade 2, 45 mm", "meningioma|who grade 2"),
        "high grade glioma, 48 mm (top right) on MR image of the head":
            ("high grade glioma, 48 mm", "glioma|high grade"),
        "pituitary adenoma (macroadenoma), 33 mm (upper right) on MRI of the head":
            ("pituitary adenoma (macroadenoma), 33 mm", "macroadenoma|pituitary adenoma"),
        "CT of the chest showing invasive adenocarcinoma, grade 3, 82 mm solid nodule with spiculated margins in "
        "the upper left": ("invasive adenocarcinoma, grade 3, 82 mm solid nodule with spiculated margins",
                           "grade 3|invasive adenocarcinoma|solid|spiculated margins"),
        "pituitary adenoma (microadenoma)": ("pituitary adenoma (microadenoma)", "microadenoma|pituitary adenoma"),
    }
    for cap, (span, signature) in cases.items():
        d = find_detail(cap)
        assert (cap[d.start:d.end], d.signature) == (span, signature)
    assert find_detail("glioma; the right lobe shows edema, 5 mm").signature == "glioma"  # the clause ends at ";"
    assert find_detail("hypodense liver tumor, 23 mm") is None  # no subtype: no family to draw from
    assert find_detail("MRI of the head: glioma").family == find_detail("MRI: meningioma, WHO grade 1").family


def test_grading_counterfactuals_read_like_real_captions_of_their_family():
    """The shortcut this prevents: a one-term swap writes details no real caption has ("meningioma, WHO
    grade 4, 34 mm", "adenocarcinoma in situ, 38 mm solid nodule"), which the text tower alone can tell
    from the true caption. So a counterfactual takes a real detail of another signature whole, or swaps
    one term where that gives a real signature (the grade word alone: "WHO grade 1" -> "WHO grade 3")."""
    pool = detail_pool(_cohort_grading_captions(120))
    real = {s for sigs in pool.values() for ds in sigs.values() for s in ds}
    assert len(pool) == 2 and all(len(sigs) >= 3 for sigs in pool.values())  # brain tumours, lung adenocarcinomas
    held_out = _cohort_grading_captions(40, seed=6)
    kinds = {"detail": 0, "term": 0}
    for cap in held_out:
        d = find_detail(cap)
        for neg in counterfactuals(cap, "grading", 3, details=pool):
            n = find_detail(neg)
            assert n.family == d.family and n.signature in pool[d.family] and n.signature != d.signature, (cap, neg)
            assert neg[:n.start] == cap[:d.start] and neg[n.end:] == cap[d.end:], (cap, neg)  # the frame is kept
            if neg[n.start:n.end] in real:
                kinds["detail"] += 1
            else:  # one term of the detail changed, sizes and the rest kept
                assert len(set(neg.split()) ^ set(cap.split())) <= 6 and _sizes(neg) == _sizes(cap), (cap, neg)
                kinds["term"] += 1
    assert sum(kinds.values()) == 3 * len(held_out) and min(kinds.values()) > 20, kinds
    cap = held_out[0]
    assert counterfactuals(cap, "grading", 4, details=pool) == counterfactuals(cap, "grading", 4, details=pool)
    # no other signature in the family, or no family at all: the term rule applies
    lone = detail_pool(["MRI: meningioma, WHO grade 2, 40 mm"])
    assert counterfactuals("MRI: meningioma, WHO grade 2, 45 mm", "grading", 1, details=lone) != [None]
    assert counterfactual("liver tumor, 23 mm", "grading", random.Random(0), details=pool) in (
        "liver tumor, 69 mm", "liver tumor, 8 mm")


def _sizes(text):
    return re.findall(r"\d+ mm", text)
