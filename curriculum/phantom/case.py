"""One phantom case: draw the scene, place it, paint it, read its labels back from the masks, write
its captions, apply the modality's physics. A case is a pure function of (seed, index, size, cohort).

One generator serves every draw, in the order scene -> captions -> noise, so the scene and its
captions do not depend on `size` (only the noise does).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radisim.curriculum.phases import REGIONS

from . import anatomies  # noqa: F401  (registers the scene builders)
from .canvas import _Canvas
from .captions import _captions
from .catalog import COHORTS, COMBOS, GRADES, SUBTYPES, Combo, combo_of
from .physics import _finish, _texture
from .placement import _place, mask_region
from .scene import Plan, _pick, build_plan


@dataclass(frozen=True, eq=False)
class PhantomCase:
    image: np.ndarray            # uint8 [size, size], grayscale
    modality: str                # "CT" | "MR" | "DR"
    anatomy: str                 # "head" | "chest" | "abdomen" | "knee"
    view: str                    # "axial" | "sagittal" | "coronal" | "frontal" | "lateral"
    organs: tuple[str, ...]      # visible organs, sorted
    target_organ: str
    target_region: str           # one of phases.REGIONS
    finding: str                 # "none" or a finding name
    finding_region: str          # "" when finding == "none"
    subtype: str                 # "" when none
    grade: str                   # "" when none
    captions: dict[str, str]     # phase -> caption; "grading" only for abnormal cases


def _draw_finding(rng, combo: Combo, view: str, finding: str | None = None) -> tuple[str, str, str]:
    """(finding, subtype, grade); `finding` given (a cohort case) fixes the finding, not its subtype."""
    if finding is None:
        if not combo.findings or rng.random() < 0.5:
            return "none", "", ""
        finding = _pick(rng, combo.findings)
    subtypes = SUBTYPES.get(finding, ())
    if finding == "tumor" and view == "axial":
        subtypes = tuple(s for s in subtypes if s != "pituitary adenoma")
    subtype = _pick(rng, subtypes) if subtypes else ""
    grades = GRADES.get(subtype, ())
    grade = _pick(rng, grades) if grades else ""
    return finding, subtype, grade


def _draw_scene(rng, cohort: str | None) -> tuple[Combo, str, tuple[str, str, str], Plan]:
    """(combo, view, (finding, subtype, grade), plan) of a general case or a `cohort` case."""
    if cohort is None:
        combo, forced = COMBOS[int(rng.integers(len(COMBOS)))], None
    else:
        modality, anatomy, forced = COHORTS[cohort]
        combo = combo_of(modality, anatomy)
    view = _pick(rng, combo.views)
    finding = _draw_finding(rng, combo, view, forced)
    plan = build_plan(rng, combo.modality, combo.anatomy, view, *finding)
    return combo, view, finding, plan


def _visible_target(rng, canvas: _Canvas, present: list[str], target: str, size: int):
    """(visible organs, target): organs too small in the field are not labelled, and a target that
    fell out of view is replaced by a visible one (or the largest, when none is visible)."""
    min_area = max(4.0, 0.002 * size * size)
    areas = {o: float(canvas.organs[o].sum()) for o in present if o in canvas.organs}
    visible = tuple(sorted(o for o, a in areas.items() if a >= min_area))
    if target not in visible:
        target = _pick(rng, visible) if visible else max(areas, key=areas.get)
    return visible, target


def render_case(seed: int, index: int, size: int = 64,
                cohort: str | None = None) -> tuple[PhantomCase, dict[str, np.ndarray]]:
    """Generate a case and return it with its soft masks: one per visible organ, plus "lesion"
    and "lesions" for abnormal cases. `cohort` (a COHORTS name) draws the case from that cohort.

    Masks are float32 [size, size] in [0, 1]; ``target_region == mask_region(masks[target])``
    and, for abnormal cases, ``finding_region`` is the quadrant of the main lesion component.
    """
    rng = np.random.default_rng([int(seed), int(index)])
    combo, view, (finding, subtype, grade), plan = _draw_scene(rng, cohort)
    # organs outside the combo's vocabulary (e.g. the spine on MR abdomen) are drawn, never labelled
    present = sorted(plan.present & set(combo.organs))
    target = _pick(rng, present)
    fx, fy, tx, ty = _place(rng, plan, target, _pick(rng, REGIONS))
    canvas = _Canvas(size, fx, fy, tx, ty, combo.modality, _texture(rng))  # texture: size-independent
    for op in plan.ops:
        canvas.draw(op)
    visible, target = _visible_target(rng, canvas, present, target, size)
    fields = dict(modality=combo.modality, anatomy=combo.anatomy, view=view,
                  organs=visible or (target,), target_organ=target,
                  target_region=mask_region(canvas.organs[target]), finding=finding,
                  finding_region=mask_region(canvas.main_lesion) if finding != "none" else "",
                  subtype=subtype, grade=grade)
    captions = _captions(rng, fields, plan.details, combo.fov_mm)
    case = PhantomCase(image=_finish(canvas.img, combo.modality, canvas.xs, rng), captions=captions, **fields)
    masks = {o: canvas.organs[o] for o in fields["organs"]}
    if finding != "none":
        masks["lesion"] = canvas.main_lesion      # the lesion that finding_region describes
        masks["lesions"] = canvas.lesion          # all lesion components (e.g. every GGO patch)
    return case, masks


def generate_case(seed: int, index: int, size: int = 64, cohort: str | None = None) -> PhantomCase:
    """One phantom case, a pure function of (seed, index, size, cohort)."""
    return render_case(seed, index, size, cohort)[0]
