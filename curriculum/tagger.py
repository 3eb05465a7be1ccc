"""Caption or report sentence -> curriculum phase and tags, from the vocabulary in `curriculum/vocab/*.yaml`.

A sentence may support several granularities at once ("axial CT of the chest showing a 12 mm nodule in
the right upper lobe" names a modality, an anatomy, a location, a finding and a size). The rule:

    **a sentence's phase is the finest granularity it supports; `granularities` records all of them.**

Granularities, coarse to fine (curriculum.phases.PHASES):

- modality      a modality term (CT, MRI, radiograph ...)
- anatomy       a body region, an organ or an image plane/projection
- localization  an organ or region together with a positional cue (left, upper lobe, quadrant ...);
                positional words of a device's phrase ("left PICC line") place the device, not an organ
- abnormality   a finding, present, absent or uncertain, or a normal statement ("lungs are clear")
- grading       a *present* finding together with a subtype, grade, stage, severity or size

Terms match whole words and phrases, longest first. Context decides where a word has two senses: a
severity word inside an anatomy phrase is anatomy ("small bowel"), not a size ("small nodule"); a
modality acronym counts only in capitals ("MR", not "Mr."). Each finding mention carries a
ConText-style assertion (curriculum/assertion.py). Absent and uncertain findings still make the
sentence an abnormality statement (the model learns "no hemorrhage" at that phase), never a grading
one, and `finding` stays "none" when nothing is present.

A whole report is not one caption: curriculum/reports.py splits it into sections and sentences, tags
each sentence here and builds one caption per phase.

Users who bring their own tags pass them as `given` to `tag_caption`: a valid given value wins over the
caption's (a given `phase` decides the phase; given modality/anatomy/view/finding fill those tags).
"""
from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Mapping, Optional

import yaml

from radisim.curriculum.assertion import ABSENT, PRESENT, UNCERTAIN, AssertionRules
from radisim.curriculum.phases import PHASES

VOCAB_FILES = ("modality", "anatomy", "view", "location", "finding", "grading", "assertion", "study", "sections")


@dataclass(frozen=True)
class Finding:
    """One finding mention of a sentence."""

    term: str               # the words as written (lower case)
    finding: str            # the vocabulary's tag value ("pleural effusion")
    assertion: str          # present | absent | uncertain
    location: str = ""      # positional words and structures of its clause ("right lower lobe")
    severity: str = ""      # the subtype/severity/size words of its clause ("small", "8 mm")


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
    uncertain: tuple[str, ...] = ()            # findings stated as possible
    regions: tuple[str, ...] = ()              # every body region named, most often named first
    mentions: tuple[Finding, ...] = ()         # each finding mention with its assertion

    def as_row(self) -> dict:
        """The manifest columns (the row schema of platform/data/ingest/records.py and the phantom)."""
        row = {k: v for k, v in asdict(self).items() if k not in ("uncertain", "regions", "mentions")}
        for k in ("granularities", "organs", "findings", "negated"):
            row[k] = list(row[k])
        return row


_TOKEN = re.compile(r"[\w-]+|[^\w\s]")


class PhraseMatcher:
    """Whole-word phrase lookup, leftmost then longest first: the matches of `_term_regex(terms)`,
    found by a dictionary walk over the text's tokens instead of a regular expression with hundreds
    of alternatives (about ten times faster on report sentences)."""

    def __init__(self, terms):
        self.first: dict[str, list[tuple[str, ...]]] = {}
        self.term: dict[tuple[str, ...], str] = {}
        for t in {str(t).lower() for t in terms}:
            toks = tuple(_TOKEN.findall(t))
            if toks:
                self.term[toks] = t
                self.first.setdefault(toks[0], []).append(toks)
        for cands in self.first.values():
            cands.sort(key=len, reverse=True)

    def find(self, tokens: list[tuple[str, int, int]]) -> list[tuple[int, int, str]]:
        """[(start, end, term)] over `tokens` = tokenize(text)."""
        out, i, n = [], 0, len(tokens)
        words = [t[0] for t in tokens]
        while i < n:
            for cand in self.first.get(words[i], ()):
                k = len(cand)
                if tuple(words[i:i + k]) == cand:
                    out.append((tokens[i][1], tokens[i + k - 1][2], self.term[cand]))
                    i += k
                    break
            else:
                i += 1
        return out


def tokenize(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _term_regex(terms) -> re.Pattern:
    alts = sorted({str(t).lower() for t in terms}, key=len, reverse=True)
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
        for part, spec in r["anatomy"]["body_parts"].items():
            for t in spec["terms"]:
                if str(t).lower() not in self.regions:  # the phantom's own terms keep their sense
                    add(self.regions, t, "part", spec["region"])
        for view, terms in r["view"].items():
            for t in terms:
                add(self.structure, t, "view", view)
        self.projection_views = frozenset(r["study"]["projection_views"])
        for t in r["location"]["cues"]:
            add(self.structure, t, "location", t)
        for quadrant, terms in r["location"]["regions"].items():
            for t in terms:
                add(self.structure, t, "quadrant", quadrant)
        device = r["finding"]["device_finding"]
        for finding, terms in r["finding"]["findings"].items():
            for t in terms:
                add(self.finding_terms, t, "device" if finding == device else "finding", finding)
        for t in r["finding"]["normal"]:
            add(self.finding_terms, t, "normal", "none")
        for t in r["grading"]["subtypes"]:
            self.grading_terms[t.lower()] = "subtype"
        for t in r["grading"]["severity"]:
            self.grading_terms.setdefault(t.lower(), "severity")
        self.acronyms = frozenset(str(a).lower() for a in r["study"]["acronyms"])
        self.dicom_codes = {str(k).upper(): v for k, v in r["study"]["dicom_codes"].items()}
        self.structure_m = PhraseMatcher(self.structure)
        self.region_m = PhraseMatcher(self.regions)
        self.finding_m = PhraseMatcher(self.finding_terms)
        self.grading_m = PhraseMatcher(self.grading_terms)
        self.structure_re = _term_regex(self.structure)
        self.region_re = _term_regex(self.regions)
        self.finding_re = _term_regex(self.finding_terms)
        self.grading_re = _term_regex(self.grading_terms)
        self.grade_patterns = [re.compile(p, re.IGNORECASE) for p in r["grading"]["patterns"]]
        self.normal_patterns = [re.compile(p) for p in r["finding"].get("normal_patterns") or ()]
        self.other_study_m = PhraseMatcher(r["study"]["other_study"])
        self.finding_patterns = [(re.compile(p), finding) for finding, ps in (r["finding"].get("patterns") or {}).items()
                                 for p in ps]
        self.assertion = AssertionRules(r["assertion"])
        # curriculum/counterfactuals.py toggles negations with these two
        self.negation_re = self.assertion.neg_pre_re
        self.breaker_re = self.assertion.breaker_re


def _validate(raw: dict) -> None:
    from radisim.curriculum.phases import MODALITIES, REGIONS

    unknown = set(raw["modality"]) - set(MODALITIES)
    if unknown:
        raise ValueError(f"vocab/modality.yaml: unknown modalities {sorted(unknown)}; expected {MODALITIES}")
    bad_codes = {k: v for k, v in raw["study"]["dicom_codes"].items() if v not in MODALITIES}
    if bad_codes:
        raise ValueError(f"vocab/study.yaml: dicom_codes map to unknown modalities {bad_codes}")
    regions = set(raw["anatomy"]["regions"])
    bad = {o: r for o, r in raw["anatomy"]["organs"].items() if r not in regions}
    if bad:
        raise ValueError(f"vocab/anatomy.yaml: organs mapped to unknown regions {bad}")
    for part, spec in raw["anatomy"]["body_parts"].items():
        if not spec.get("region") or not spec.get("terms"):
            raise ValueError(f"vocab/anatomy.yaml: body_parts.{part} needs a region and terms")
    if set(raw["location"]["regions"]) != set(REGIONS):
        raise ValueError(f"vocab/location.yaml: regions must be the quadrants {REGIONS}, got {sorted(raw['location']['regions'])}")
    for p in raw["grading"]["patterns"]:
        re.compile(p)
    a = raw["assertion"]
    missing = [k for k in ("window", "negation", "uncertainty", "pseudo", "terminators") if k not in a]
    if missing:
        raise ValueError(f"vocab/assertion.yaml: missing {missing}")


@functools.lru_cache(maxsize=1)
def load_vocabulary() -> Vocabulary:
    """Read and validate curriculum/vocab/*.yaml (once per process)."""
    base = Path(__file__).resolve().parent / "vocab"  # the folder is a namespace-style package root
    raw = {name: yaml.safe_load((base / f"{name}.yaml").read_text()) for name in VOCAB_FILES}
    _validate(raw)
    return Vocabulary(raw)


def _negated(text: str, start: int, vocab: Vocabulary) -> bool:
    """Whether the finding that starts at `start` of `text` (lower case) is stated as absent."""
    end = start + len(_WORD_AT.match(text, start).group(0)) if _WORD_AT.match(text, start) else start
    return vocab.assertion.assert_all(text, [(start, end)])[0] == ABSENT


_WORD_AT = re.compile(r"[\w-]+")


def _first(values: list[str]) -> str:
    return values[0] if values else ""


def _inside(span: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    return any(a <= span[0] and span[1] <= b for a, b in spans)


def _acronym_ok(original: str, start: int, end: int, lower_only: bool) -> bool:
    """A modality acronym counts in capitals ("MR"), or anywhere in an all-lower-case text, never as a
    title ("Mr.")."""
    word = original[start:end]
    if original[end:end + 1] == "." and word[:1].isupper() and not word.isupper():
        return False
    return lower_only or word.isupper()


@dataclass
class _Match:
    start: int
    end: int
    term: str
    entries: list


def _matches(matcher: PhraseMatcher, table: dict, tokens) -> list[_Match]:
    return [_Match(a, b, term, table[term]) for a, b, term in matcher.find(tokens)]


def tag_caption(caption: str, given: Optional[Mapping[str, Optional[str]]] = None,
                vocab: Optional[Vocabulary] = None) -> Tags:
    """Phase and tags of one caption or sentence; `given` are the user's own tag columns (they win when valid)."""
    vocab = vocab or load_vocabulary()
    original = " ".join(str(caption or "").split())
    text = original.lower()  # the same character offsets as `original`
    tokens = tokenize(text)
    structure = _matches(vocab.structure_m, vocab.structure, tokens)
    regions = [m for m in _matches(vocab.region_m, vocab.regions, tokens)
               if not (m.term in vocab.acronyms and not _acronym_ok(original, m.start, m.end, original == text))
               and not (any(k == "modality" for k, _ in m.entries) and _other_study(tokens, m.start, vocab))]
    findings = _with_patterns(_matches(vocab.finding_m, vocab.finding_terms, tokens), text, vocab)
    anatomy_spans = [(m.start, m.end) for m in regions if any(k != "modality" for k, _ in m.entries)]
    found, votes, anatomy = _structures(text, structure, regions, findings, anatomy_spans, vocab)
    grading = [g for g in vocab.grading_m.find(tokens) if not _inside(g[:2], anatomy_spans)]
    stated, mentions = _mentions(text, findings, structure, regions, vocab)
    attached = _attach_grading(text, grading, grade_spans(text, vocab), stated, vocab)
    mentions = [replace(f, severity=" ".join(attached.get(i, []))) for i, f in enumerate(mentions)]
    normal = (any(k == "normal" for f in findings for k, _ in f.entries)
              or any(p.search(text) for p in vocab.normal_patterns))
    present = _unique(f.finding for f in mentions if f.assertion == PRESENT)
    uncertain = [f for f in _unique(f.finding for f in mentions if f.assertion == UNCERTAIN) if f not in present]
    negated = [f for f in _unique(f.finding for f in mentions if f.assertion == ABSENT)
               if f not in present and f not in uncertain]
    on_present = [w for i, f in enumerate(mentions) if f.assertion == PRESENT for w in attached.get(i, [])]
    subtypes = [w for w in on_present if vocab.grading_terms.get(w) == "subtype"]
    grades = [w for w in on_present if w not in vocab.grading_terms]
    granularities = _granularities(found, bool(mentions or normal), bool(on_present))

    given = {k: v for k, v in (given or {}).items() if v not in (None, "")}
    phase = given["phase"] if given.get("phase") in PHASES else (granularities[-1] if granularities else None)
    finding = _first(present) or ("none" if (negated or uncertain or normal) else "")
    return Tags(
        phase=phase,
        granularities=granularities,
        modality=str(given.get("modality") or _first(found["modality"])),
        anatomy=str(given.get("anatomy") or anatomy),
        view=str(given.get("view") or _first(found["view"])),
        organs=tuple(sorted(found["organ"])),
        target_organ=_first(found["organ"]) if "localization" in granularities else "",
        target_region=_first(found["quadrant"]),
        finding=str(given.get("finding") or finding),
        findings=tuple(present),
        negated=tuple(negated),
        subtype=str(given.get("subtype") or _first(subtypes)),
        grade=str(given.get("grade") or _first(grades)),
        uncertain=tuple(uncertain),
        regions=tuple(r for r, _ in votes.most_common()),
        mentions=tuple(mentions),
    )


def _structures(text: str, structure: list[_Match], regions: list[_Match], findings: list[_Match],
                anatomy_spans: list[tuple[int, int]], vocab: Vocabulary) -> tuple[dict, Counter, str]:
    """(what the sentence names, by kind; region votes; its anatomy). Positional words of a device's
    phrase ("left PICC line") or of an anatomy name ("upper limb", "left atrium") are no location."""
    devices = [m for m in findings if any(k == "device" for k, _ in m.entries)]
    device_phrases = [_device_phrase(text, m, structure) for m in devices]
    found: dict[str, list[str]] = {k: [] for k in ("modality", "region", "organ", "part", "view", "location",
                                                   "quadrant")}
    votes: Counter = Counter()
    pure_regions: list[str] = []  # named by a region word that is not also an organ ("chest", not "spine")
    for m in structure + regions:
        if m in structure and any(k in ("location", "quadrant") for k, _ in m.entries) and (
                _inside((m.start, m.end), device_phrases) or _inside((m.start, m.end), anatomy_spans)):
            continue
        for kind, value in m.entries:
            if value not in found[kind]:
                found[kind].append(value)
            if kind in ("region", "part"):
                votes[value] += 1
            elif kind == "organ":
                votes[vocab.organ_region[value]] += 1
        if any(k == "region" for k, _ in m.entries) and not any(k == "organ" for k, _ in m.entries):
            pure_regions += [v for k, v in m.entries if k == "region" and v not in pure_regions]
    if devices and len(devices) == len([f for f in findings if any(k != "normal" for k, _ in f.entries)]):
        found["location"], found["quadrant"] = [], []  # a sentence about a device places the device
    anatomy = (_first(pure_regions) or _first([vocab.organ_region[o] for o in found["organ"]])
               or _first(found["region"]) or _first(found["part"]))
    return found, votes, anatomy


def _granularities(found: dict, states_findings: bool, graded: bool) -> tuple[str, ...]:
    """Every granularity the sentence supports, coarse to fine (the module docstring's rules)."""
    has_structure = bool(found["region"] or found["organ"] or found["part"])
    supported = {
        "modality": bool(found["modality"]),
        "anatomy": has_structure or bool(found["view"]),
        "localization": has_structure and bool(found["location"] or found["quadrant"]),
        "abnormality": states_findings,
        "grading": graded,  # a subtype, severity, grade or size attached to a present finding
    }
    return tuple(p for p in PHASES if supported[p])


def _with_patterns(findings: list[_Match], text: str, vocab: Vocabulary) -> list[_Match]:
    """The term matches and the `patterns` matches of vocab/finding.yaml; a pattern's span wins over
    the terms inside it ("the heart is mildly enlarged" is one cardiomegaly mention)."""
    extra = [_Match(m.start(), m.end(), m.group(0), [("finding", finding)])
             for pattern, finding in vocab.finding_patterns for m in pattern.finditer(text)]
    if not extra:
        return findings
    spans = [(m.start, m.end) for m in extra]
    kept = [m for m in findings if not any(a < m.end and m.start < b for a, b in spans)]
    return sorted(kept + extra, key=lambda m: m.start)


def _unique(values) -> list[str]:
    return list(dict.fromkeys(values))


def _device_phrase(text: str, device: _Match, structure: list[_Match]) -> tuple[int, int]:
    """The device's noun phrase: the term and the positional words right before it ("left PICC line")."""
    start = device.start
    for m in sorted(structure, key=lambda m: -m.start):
        if m.end <= start and not text[m.end:start].strip(" -"):
            start = m.start
    # a short modifier between them ("right IJ catheter", "left chest wall pacemaker")
    words = list(re.finditer(r"[\w/-]+", text[:device.start]))[-3:]
    for m in structure:
        if m.end <= device.start and words and m.start >= words[0].start() and \
                any(k == "location" for k, _ in m.entries):
            start = min(start, m.start)
    return start, device.end


def _other_study(tokens, start: int, vocab: Vocabulary) -> bool:
    """Whether one of the four words before `start` puts a modality mention on another study."""
    before = [t for t in tokens if t[2] <= start][-4:]
    return bool(before) and bool(vocab.other_study_m.find(before))


def grade_spans(text: str, vocab: Vocabulary) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group(0)) for p in vocab.grade_patterns for m in p.finditer(text)]


def _mentions(text: str, findings: list[_Match], structure: list[_Match], regions: list[_Match],
              vocab: Vocabulary) -> tuple[list[_Match], list[Finding]]:
    """Each finding mention with its assertion and its clause's location words (severity: later)."""
    stated = [m for m in findings if any(k in ("finding", "device") for k, _ in m.entries)]
    assertions = vocab.assertion.assert_all(text, [(m.start, m.end) for m in stated])
    cuts = [0] + [b.start() for b in vocab.breaker_re.finditer(text) if b.group(0) in ".;:"] + [len(text)]
    spans = [(f.start, f.end) for f in findings]
    out = []
    for m, assertion in zip(stated, assertions):
        lo = max(c for c in cuts if c <= m.start)
        hi = min(c for c in cuts if c >= m.end)
        where = [x for x in structure + regions if lo <= x.start < hi and not _inside((x.start, x.end), spans)
                 and any(k in ("location", "quadrant", "organ", "region", "part") for k, _ in x.entries)]
        location = " ".join(x.term for x in sorted(where, key=lambda x: x.start))
        value = next(v for k, v in m.entries if k in ("finding", "device"))
        out.append(Finding(m.term, value, assertion, location))
    return stated, out


def _attach_grading(text: str, grading, grades, stated: list[_Match], vocab: Vocabulary) -> dict[int, list[str]]:
    """Mention index -> its subtype/severity/size words. A word belongs to the nearest mention of its
    clause (else of the sentence); a word a negation governs ("no large effusion", "without acute
    disease") or that is the mention itself ("calcified" as the finding) belongs to none."""
    if not stated:
        return {}
    neg = [t for t in vocab.assertion.triggers(text) if "neg_pre" in t.kinds]
    cuts = [b.start() for b in vocab.breaker_re.finditer(text)]
    out: dict[int, list[str]] = {}
    for a, b, word in sorted(grading + grades):
        if any((m.start, m.end) == (a, b) for m in stated):
            continue
        if any(t.end <= a and len(_TOKEN.findall(text, t.end, a)) <= 2 for t in neg):
            continue
        clause = [i for i, m in enumerate(stated) if m.start <= a < m.end
                  or not any(min(b, m.end) <= c < max(a, m.start) for c in cuts)]
        pool = clause or range(len(stated))
        best = min(pool, key=lambda i: min(abs(a - stated[i].end), abs(stated[i].start - b)))
        out.setdefault(best, []).append(word)
    return out
