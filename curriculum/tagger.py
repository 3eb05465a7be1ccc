"""Caption -> curriculum phase and tags, from the vocabulary in `curriculum/vocab/*.yaml`.

A caption may support several granularities at once ("axial CT of the chest showing a 12 mm nodule in
the right upper lobe" names a modality, an anatomy, a location, a finding and a size). The rule:

    **a caption's phase is the finest granularity it supports; `granularities` records all of them.**

Granularities, coarse to fine (curriculum.phases.PHASES):

- modality      a modality term (CT, MRI, radiograph ...)
- anatomy       a body region, an organ or an image plane/projection
- localization  an organ or region together with a positional cue (left, upper lobe, quadrant ...)
- abnormality   a finding, present or negated ("no pneumothorax"), or a whole-study normal statement
- grading       a *present* finding together with a subtype, grade, stage, severity or size

Negation is NegEx-style: a finding preceded, within six words of the same clause, by a negation cue is
negated. Negated findings still make the caption an abnormality statement (the model learns "no
hemorrhage" at that phase), but never a grading one, and `finding` stays "none" when nothing is present.

Users who bring their own tags pass them as `given` to `tag_caption`: a valid given value wins over the
caption's (a given `phase` decides the phase; given modality/anatomy/view/finding fill those tags).
"""
from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import yaml

from radisim.curriculum.phases import PHASES

VOCAB_FILES = ("modality", "anatomy", "view", "location", "finding", "grading")
_NEG_WINDOW = 6


@dataclass(frozen=True)
class Tags:
    """Tagger output. Empty strings mean "not stated"; `finding` is "none" for normal/negated-only."""

    phase: Optional[str]                       # finest granularity, None when the caption supports none
    granularities: tuple[str, ...] = ()        # every granularity the caption supports, coarse to fine
    modality: str = ""
    anatomy: str = ""
    view: str = ""
    organs: tuple[str, ...] = ()
    target_organ: str = ""
    target_region: str = ""
    finding: str = ""
    findings: tuple[str, ...] = ()             # every present finding
    negated: tuple[str, ...] = ()              # findings stated as absent
    subtype: str = ""
    grade: str = ""

    def as_row(self) -> dict:
        row = asdict(self)
        row["granularities"] = list(self.granularities)
        row["organs"] = list(self.organs)
        row["findings"] = list(self.findings)
        row["negated"] = list(self.negated)
        return row


def _term_regex(terms) -> re.Pattern:
    alts = sorted({t.lower() for t in terms}, key=len, reverse=True)
    body = "|".join(re.escape(t) for t in alts)
    return re.compile(rf"(?<![\w-])({body})(?![\w-])")


@dataclass
class Vocabulary:
    """The compiled vocabulary. Build with `load_vocabulary()` (cached)."""

    raw: dict
    structure: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # term -> [(kind, value)]
    regions: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    finding_terms: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    grading_terms: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        r = self.raw

        def add(table, term, kind, value):
            table.setdefault(str(term).lower(), []).append((kind, value))

        # Modalities, regions and organs are matched in their own pass, so that a view or location
        # phrase that contains one ("lateral chest x-ray", "frontal radiograph") does not hide it.
        for mod, terms in r["modality"].items():
            for t in terms:
                add(self.regions, t, "modality", mod)
        for region, terms in r["anatomy"]["regions"].items():
            for t in terms:
                add(self.regions, t, "region", region)
        for organ, region in r["anatomy"]["organs"].items():
            add(self.regions, organ, "organ", organ)
        self.organ_region = {str(k).lower(): v for k, v in r["anatomy"]["organs"].items()}
        for view, terms in r["view"].items():
            for t in terms:
                add(self.structure, t, "view", view)
        for t in r["location"]["cues"]:
            add(self.structure, t, "location", t)
        for quadrant, terms in r["location"]["regions"].items():
            for t in terms:
                add(self.structure, t, "quadrant", quadrant)
        for finding, terms in r["finding"]["findings"].items():
            for t in terms:
                add(self.finding_terms, t, "finding", finding)
        for t in r["finding"]["normal"]:
            add(self.finding_terms, t, "normal", "none")
        for t in r["grading"]["subtypes"]:
            self.grading_terms[t.lower()] = "subtype"
        for t in r["grading"]["severity"]:
            self.grading_terms.setdefault(t.lower(), "severity")
        self.structure_re = _term_regex(self.structure)
        self.region_re = _term_regex(self.regions)
        self.finding_re = _term_regex(self.finding_terms)
        self.grading_re = _term_regex(self.grading_terms)
        self.grade_patterns = [re.compile(p, re.IGNORECASE) for p in r["grading"]["patterns"]]
        self.negation_re = _term_regex(r["finding"]["negation"])
        words = [b for b in r["finding"]["clause_breakers"] if b.isalpha() or " " in b]
        marks = "".join(re.escape(b) for b in r["finding"]["clause_breakers"] if not (b.isalpha() or " " in b))
        self.breaker_re = re.compile(rf"[{marks}]|(?<![\w-])(?:{'|'.join(map(re.escape, words))})(?![\w-])")


def _validate(raw: dict) -> None:
    from radisim.curriculum.phases import MODALITIES, REGIONS

    unknown = set(raw["modality"]) - set(MODALITIES)
    if unknown:
        raise ValueError(f"vocab/modality.yaml: unknown modalities {sorted(unknown)}; expected {MODALITIES}")
    regions = set(raw["anatomy"]["regions"])
    bad = {o: r for o, r in raw["anatomy"]["organs"].items() if r not in regions}
    if bad:
        raise ValueError(f"vocab/anatomy.yaml: organs mapped to unknown regions {bad}")
    if set(raw["location"]["regions"]) != set(REGIONS):
        raise ValueError(f"vocab/location.yaml: regions must be the quadrants {REGIONS}, got {sorted(raw['location']['regions'])}")
    for p in raw["grading"]["patterns"]:
        re.compile(p)


@functools.lru_cache(maxsize=1)
def load_vocabulary() -> Vocabulary:
    """Read and validate curriculum/vocab/*.yaml (once per process)."""
    base = Path(__file__).resolve().parent / "vocab"  # the folder is a namespace-style package root
    raw = {name: yaml.safe_load((base / f"{name}.yaml").read_text()) for name in VOCAB_FILES}
    _validate(raw)
    return Vocabulary(raw)


def _negated(text: str, start: int, vocab: Vocabulary) -> bool:
    """NegEx-lite: a negation cue within _NEG_WINDOW words before `start`, in the same clause. A comma
    ends the clause, except inside a list that "or"/"nor" closes: in "no pneumothorax, effusion or
    pneumonia" all three are negated, in "no nodule, small effusion" the effusion is present."""
    cuts = list(vocab.breaker_re.finditer(text[:start]))
    end = start
    for j in range(len(cuts) - 1, -2, -1):  # the finding's own segment, then back over a list's items
        if _cue_in_window(text[cuts[j].end() if j >= 0 else 0:end], vocab):
            return True
        if j < 0 or cuts[j].group(0) != ",":
            return False
        if j == len(cuts) - 1 and not _or_list_follows(text, cuts[j].start(), vocab):
            return False
        end = cuts[j].start()
    return False


def _cue_in_window(clause: str, vocab: Vocabulary) -> bool:
    return bool(vocab.negation_re.search(" ".join(clause.split()[-_NEG_WINDOW:])))


_OR = re.compile(r"\b(?:or|nor)\b")


def _or_list_follows(text: str, comma: int, vocab: Vocabulary) -> bool:
    """Whether the clause goes on from `comma` as a list that "or"/"nor" closes."""
    end = next((m.start() for m in vocab.breaker_re.finditer(text, comma + 1) if m.group(0) != ","), len(text))
    return _OR.search(text, comma, end) is not None


def _first(values: list[str]) -> str:
    return values[0] if values else ""


def tag_caption(caption: str, given: Optional[Mapping[str, Optional[str]]] = None,
                vocab: Optional[Vocabulary] = None) -> Tags:
    """Phase and tags of one caption; `given` are the user's own tag columns (they win when valid)."""
    vocab = vocab or load_vocabulary()
    text = " ".join(str(caption or "").lower().split())
    found: dict[str, list[str]] = {k: [] for k in ("modality", "region", "organ", "view", "location", "quadrant")}
    pure_regions: list[str] = []  # named by a region word that is not also an organ ("chest", not "spine")
    for pattern, table in ((vocab.structure_re, vocab.structure), (vocab.region_re, vocab.regions)):
        for m in pattern.finditer(text):
            entries = table[m.group(1)]
            for kind, value in entries:
                if value not in found[kind]:
                    found[kind].append(value)
            if any(kind == "region" for kind, _ in entries) and not any(kind == "organ" for kind, _ in entries):
                pure_regions += [v for k, v in entries if k == "region" and v not in pure_regions]
    present, negated, normal = [], [], False
    for m in vocab.finding_re.finditer(text):
        for kind, value in vocab.finding_terms[m.group(1)]:
            if kind == "normal":
                normal = True
            elif _negated(text, m.start(), vocab):
                if value not in negated:
                    negated.append(value)
            elif value not in present:
                present.append(value)
    negated = [f for f in negated if f not in present]
    subtypes, severities = [], []
    for m in vocab.grading_re.finditer(text):
        (subtypes if vocab.grading_terms[m.group(1)] == "subtype" else severities).append(m.group(1))
    grades = [m.group(0) for p in vocab.grade_patterns for m in p.finditer(text)]

    anatomy = (_first(pure_regions) or _first([vocab.organ_region[o] for o in found["organ"]])
               or _first(found["region"]))
    has_structure = bool(found["region"] or found["organ"])
    granularities = []
    if found["modality"]:
        granularities.append("modality")
    if has_structure or found["view"]:
        granularities.append("anatomy")
    if has_structure and (found["location"] or found["quadrant"]):
        granularities.append("localization")
    if present or negated or normal:
        granularities.append("abnormality")
    if present and (subtypes or severities or grades):
        granularities.append("grading")

    given = {k: v for k, v in (given or {}).items() if v not in (None, "")}
    phase = granularities[-1] if granularities else None
    if given.get("phase") in PHASES:
        phase = given["phase"]
    finding = _first(present) or ("none" if (negated or normal) else "")
    organs = tuple(sorted(found["organ"]))
    return Tags(
        phase=phase,
        granularities=tuple(granularities),
        modality=str(given.get("modality") or _first(found["modality"])),
        anatomy=str(given.get("anatomy") or anatomy),
        view=str(given.get("view") or _first(found["view"])),
        organs=organs,
        target_organ=_first(found["organ"]) if "localization" in granularities else "",
        target_region=_first(found["quadrant"]),
        finding=str(given.get("finding") or finding),
        findings=tuple(present),
        negated=tuple(negated),
        subtype=str(given.get("subtype") or _first(subtypes)),
        grade=str(given.get("grade") or _first(grades)),
    )
