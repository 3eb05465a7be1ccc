"""Captions at the five curriculum granularities, worded the way reports word them.

Contract of `_captions(rng, case, details, fov)`: a dict phase -> caption with "modality", "anatomy",
"localization" and "abnormality" for every case, and "grading" only for abnormal ones. Captions are
clinical: they never say the data are synthetic (the manifest and data card do).
"""
from __future__ import annotations

from radisim.curriculum.counterfactuals import with_article

from .catalog import COMBOS
from .scene import _pick

_MOD_PHRASE = {
    "CT": ("a CT scan", "a CT image", "a computed tomography scan", "a CT slice",
           "a computed tomography image"),
    "MR": ("an MRI image", "an MRI scan", "an MR image", "a magnetic resonance image",
           "an MRI slice"),
    "DR": ("an X-ray radiograph", "a radiograph", "a digital X-ray image", "a plain radiograph",
           "an X-ray image"),
}
_MOD_SHORT = {"CT": ("CT", "CT scan", "computed tomography"),
              "MR": ("MRI", "MR image", "MRI scan"),
              "DR": ("X-ray", "radiograph")}
#: Reports say "top left" as often as "upper left"; a model that saw one wording only would meet the
#: other first in the zero-shot prompts (evals/prompts/localization.yaml uses both).
REGION_WORDS = {"upper left": ("upper left", "top left"), "upper right": ("upper right", "top right"),
                "lower left": ("lower left", "bottom left"), "lower right": ("lower right", "bottom right")}
_PART = {("MR", "head"): ("brain", "head"), ("CT", "head"): ("head", "brain"),
         ("CT", "chest"): ("chest", "thorax"), ("DR", "chest"): ("chest",),
         ("MR", "abdomen"): ("abdomen",), ("CT", "abdomen"): ("abdomen",),
         ("MR", "knee"): ("knee",)}
_PLURAL = {"lungs", "kidneys", "ribs", "clavicles", "ventricles"}
#: Pertinent negatives, phrased the way reports state them ("no pneumonia"): a normal study names
#: the findings its combo looks for as absent, and an abnormal one may name the others. Generic
#: "no abnormality" teaches nothing about what absence of *this* finding looks like.
_NEGATED_PHRASE = {  # the bare phrases of each finding, as a list item ("no X or Y") ...
    "tumor": ("tumor", "brain tumor"),
    "hemorrhage": ("hemorrhage", "intracranial hemorrhage"),
    "acl tear": ("ACL tear",),
    "meniscus tear": ("meniscus tear",),
    "covid-19 pneumonia": ("COVID-19 pneumonia", "ground-glass opacities"),
    "lung adenocarcinoma": ("lung adenocarcinoma", "lung nodule", "lung mass"),
    "enlarged lymph node": ("enlarged lymph node", "lymphadenopathy"),
    "liver tumor": ("liver tumor", "liver lesion"),
    "pneumonia": ("pneumonia", "consolidation"),
}
#: ... and stated as present, with their articles. The same phrases both ways, and the article rule of
#: the counterfactuals: a phrase that only ever appeared negated, or an affirmation worded otherwise,
#: would tell a counterfactual that affirms it from every real caption.
_FINDING_PHRASE = {f: tuple(map(with_article, ps)) for f, ps in _NEGATED_PHRASE.items()}


#: Report frames of the abnormality captions, shared by normal and abnormal studies. Why shared: with
#: frames of their own ("normal ...: no X" only for normal studies, "X on ..." only for abnormal ones),
#: a counterfactual ("no X" <-> "X") was told from the true caption by its frame alone, given any image
#: of the body part, and the text tower learned that instead of the finding.
_FINDING_FRAMES = (
    "{m} of the {part} showing {x}",
    "{v} {m} of the {part} with {x}",
    "{part} {m}: {x}",
    "{x} on {v} {m} of the {part}",
    "{v} {m} of the {part}, {x} seen",
)


def _an(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


_COMBO_FINDINGS = {(c.modality, c.anatomy): c.findings for c in COMBOS}


def _negatives(rng, findings) -> str:
    """ "X", "X or Y", ... naming `findings` in a random order, or "" when there are none."""
    names = [_pick(rng, _NEGATED_PHRASE[f]) for f in findings]
    if len(names) < 2:
        return "".join(names)
    rng.shuffle(names)
    return ", ".join(names[:-1]) + " or " + names[-1]


def _anatomy_caption(rng, case, m, part, v) -> str:
    organs = list(case["organs"])
    rng.shuffle(organs)
    ol = _join(["the " + o for o in organs])
    return _pick(rng, (
        f"{v} {m} of the {part} showing {ol}",
        f"{m} of the {part}, {v} view, with {ol} visible",
        f"{_an(v)} {part} {m} showing {ol}",
        f"{v} {part} {m}: {ol}",
    ))


def _localization_caption(rng, case, m, part, v) -> str:
    org, reg = case["target_organ"], _pick(rng, REGION_WORDS[case["target_region"]])
    be = "are" if org in _PLURAL else "is"
    return _pick(rng, (
        f"{v} {m} of the {part}: the {org} {be} in the {reg} of the image",
        f"{m} of the {part} with the {org} in the {reg}",
        f"the {org} {be} in the {reg} quadrant of this {v} {m} image",
        f"{v} {part} {m}, {org} at the {reg}",
    ))


def _abnormality_caption(rng, case, m, part, v) -> str:
    """The finding (or the combo's pertinent negatives) in one of the shared report frames."""
    finding = case["finding"]
    combo_findings = _COMBO_FINDINGS[(case["modality"], case["anatomy"])]
    frame = _pick(rng, _FINDING_FRAMES)
    if finding == "none":
        return frame.format(m=m, part=part, v=v, x="no " + (_negatives(rng, combo_findings) or "abnormality"))
    caption = frame.format(m=m, part=part, v=v, x=_pick(rng, _FINDING_PHRASE[finding]))
    others = _negatives(rng, [f for f in combo_findings if f != finding])
    if others and rng.random() < 0.5 and frame.endswith("{x}"):  # "...: X; no Y" reads as "...: no X or Y"
        caption += f"; no {others}"
    return caption


def _captions(rng, case: dict, details: dict, fov: float) -> dict[str, str]:
    mod, anat, view = case["modality"], case["anatomy"], case["view"]
    m = _pick(rng, _MOD_SHORT[mod])
    part = _pick(rng, _PART[(mod, anat)])
    v = "frontal" if view == "frontal" and rng.random() < 0.7 else ("PA" if view == "frontal" else view)
    caps = {"modality": _pick(rng, _MOD_PHRASE[mod])}
    caps["anatomy"] = _anatomy_caption(rng, case, m, part, v)
    caps["localization"] = _localization_caption(rng, case, m, part, v)
    caps["abnormality"] = _abnormality_caption(rng, case, m, part, v)
    if case["finding"] != "none":
        caps["grading"] = _grading_caption(rng, case, details, fov, m, part, v)
    return caps


def _grading_detail(rng, case, details, mm: int) -> str:
    """The finding's specifics: subtype, grade, size in mm, and what a report adds for that finding."""
    finding, sub, grade = case["finding"], case["subtype"], case["grade"]
    if sub == "glioma":
        return _pick(rng, (f"glioma, {grade}, {mm} mm", f"{grade} glioma, {mm} mm"))
    if sub == "meningioma":
        return f"meningioma, WHO {grade}, {mm} mm"
    if sub == "pituitary adenoma":
        kind = "macroadenoma" if mm >= 10 else "microadenoma"
        return f"pituitary adenoma ({kind}), {mm} mm"
    if finding == "hemorrhage":
        return f"{sub} hemorrhage, {mm} mm" + ("" if sub == "intraparenchymal" else " thick")
    if finding == "lung adenocarcinoma":
        density = {"adenocarcinoma in situ": "pure ground-glass",
                   "minimally invasive adenocarcinoma": "part-solid"}.get(sub, "solid")
        g = f", {grade}" if grade else ""
        return f"{sub}{g}, {mm} mm {density} nodule with {details['margin']} margins"
    if finding == "covid-19 pneumonia":
        return (f"COVID-19 pneumonia with {details['count']} peripheral ground-glass opacities, "
                f"largest {mm} mm")
    return _SIMPLE_DETAILS[finding].format(mm=mm, where=details.get("where"))


#: Findings whose detail is a size (and a site) only.
_SIMPLE_DETAILS = {
    "enlarged lymph node": "enlarged {where} lymph node, {mm} mm short axis",
    "liver tumor": "hypodense liver tumor, {mm} mm",
    "acl tear": "ACL tear with a {mm} mm fluid-filled gap",
    "meniscus tear": "meniscus tear of the {where}, {mm} mm",
    "pneumonia": "pneumonia with a {mm} mm consolidation",
}


def _grading_caption(rng, case, details, fov, m, part, v) -> str:
    mm = max(1, int(round(details.get("size", 0.0) * fov / 2)))
    det = _grading_detail(rng, case, details, mm)
    reg = _pick(rng, REGION_WORDS[case["finding_region"]])
    return _pick(rng, (
        f"{m} of the {part}: {det}, at the {reg}",
        f"{v} {part} {m} showing {det} in the {reg}",
        f"{det} ({reg}) on {m} of the {part}",
    ))
