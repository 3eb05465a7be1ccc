"""Radiology report text -> sections -> sentences -> one caption per curriculum phase.

A report is not a caption. `phase_captions(text, meta)` returns what one study contributes to each
phase (curriculum.phases.PHASES), so that one real study feeds several phases as phase-aligned data does:

- the text is split into sections (`LABEL: text` lines or inline `FINDINGS: ...` headers, names in
  `vocab/sections.yaml`); sections that describe the request, the patient or an earlier study
  (indication, history, comparison, recommendation, note by default) are dropped; text before any
  header is one unlabelled section, so a figure caption is a one-section report; so are sentences
  that describe no image content ("Recommend CT for further evaluation.", `non_image` there);
- each kept section is split into sentences (not at "Dr.", "Mr.", "e.g.", decimals or list numbers),
  and each sentence is tagged on its own (curriculum/tagger.py), findings with their assertions;
- the **localization, abnormality and grading captions** are the report's sentences of that phase,
  in report order; a phase without such a sentence gets no caption;
- the **modality and anatomy captions** are written from the study's facts with templates
  ("A radiograph.", "Chest radiograph, PA view."); the facts come from `meta` (the DICOM header or a
  dataset's metadata) where it states them, else from the text: the modality named most often (a
  report that names only projection views, "PA and lateral", is a radiograph), the body region named
  most often (so "thoracic spine" in a chest report is where a finding is, not the study's anatomy)
  and the first view. Where `meta` states neither, the report's own sentences of that phase are the
  caption when it has some;
- every caption's tags carry the study's modality, anatomy and view (the coarser facts it implies).

Pure: no Ray, no I/O beyond the vocabulary.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Optional

from radisim.curriculum.phases import MODALITIES, PHASES
from radisim.curriculum.tagger import PhraseMatcher, Tags, Vocabulary, load_vocabulary, tag_caption, tokenize


@dataclass(frozen=True)
class StudyMeta:
    """What the source or the DICOM header says; "" = unknown."""

    modality: str = ""    # e.g. "CT", "MR", "DX", "CR" (normalised by the tagger)
    body_part: str = ""   # e.g. "CHEST" (DICOM BodyPartExamined) or a dataset's anatomy label
    view: str = ""        # e.g. "PA", "AP", "LATERAL", "axial"


@dataclass(frozen=True)
class PhaseCaption:
    phase: str            # a name from curriculum.phases.PHASES
    caption: str
    tags: Tags            # curriculum.tagger.Tags for that caption


@dataclass(frozen=True)
class Sentence:
    text: str
    section: str          # canonical section name ("findings"), "" before any header
    tags: Tags


#: The sections left out by default: `drop` in vocab/sections.yaml (data.ingest.drop_sections repeats it).
DROP_SECTIONS: tuple[str, ...] = tuple(load_vocabulary().raw["sections"]["drop"])


# ------------------------------------------------------------------------------------------ sections


def _aliases(vocab: Vocabulary) -> dict[str, str]:
    return {str(a).lower(): name for name, terms in vocab.raw["sections"]["aliases"].items() for a in terms}


def _header_re(vocab: Vocabulary) -> re.Pattern:
    cached = getattr(vocab, "_section_header_re", None)
    if cached is None:
        known = "|".join(re.escape(a) for a in sorted(_aliases(vocab), key=len, reverse=True))
        # a known label anywhere (inline headers), or any capitalised label at the start of a line
        cached = re.compile(rf"(?:(?<![\w-])(?i:{known})|(?m:^)[ \t]*[A-Z][A-Z /&()-]{{1,40}})[ \t]*:(?!\d)")
        vocab._section_header_re = cached
    return cached


def split_sections(text: str, vocab: Optional[Vocabulary] = None) -> list[tuple[str, str]]:
    """[(canonical section name, body)] in report order; unknown labels are kept lower-cased,
    text before any header is section ""."""
    vocab = vocab or load_vocabulary()
    aliases = _aliases(vocab)
    out, name, pos = [], "", 0
    for m in _header_re(vocab).finditer(text):
        body = text[pos:m.start()].strip()
        if body:
            out.append((name, body))
        label = " ".join(m.group(0).rstrip(":").split()).lower()
        name, pos = aliases.get(label, label), m.end()
    body = text[pos:].strip()
    if body:
        out.append((name, body))
    return out


# ------------------------------------------------------------------------------------------ sentences

#: Words whose full stop does not end a sentence.
_ABBREVIATIONS = {"dr", "mr", "mrs", "ms", "prof", "st", "vs", "etc", "approx", "fig", "figs", "cf", "no", "nos",
                  "e.g", "i.e", "eg", "ie", "al", "ca", "min", "max", "ref", "resp", "pt", "sr", "jr"}
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n+|(?<=;)\s+(?=[A-Z])")
_LIST_NUMBER = re.compile(r"^\s*(?:\(?\d{1,2}[.)]|[-*\u2022])\s+")
_LAST_WORD = re.compile(r"([A-Za-z][A-Za-z.]*)\.[\"')\]]*$")


def split_sentences(text: str) -> list[str]:
    """Sentences of one section. A full stop after an abbreviation ("Dr.", "e.g."), inside a number
    ("2.5 cm") or after a list number ("1. Cardiomegaly.") ends no sentence."""
    pieces, start = [], 0
    for m in _BOUNDARY.finditer(text):
        head = text[start:m.start()]
        last = _LAST_WORD.search(head)
        if last and last.group(1).lower().rstrip(".") in _ABBREVIATIONS and m.group(0).strip() == "":
            continue
        if re.fullmatch(r"\s*\(?\d{1,2}[.)]", head):  # "1." of a numbered list: part of the next sentence
            continue
        pieces.append(head)
        start = m.end()
    pieces.append(text[start:])
    out = []
    for p in pieces:
        p = _LIST_NUMBER.sub("", " ".join(p.split()))
        if re.search(r"[A-Za-z]", p):
            out.append(p)
    return out


def report_sentences(text: str, drop_sections: Iterable[str] = DROP_SECTIONS,
                     vocab: Optional[Vocabulary] = None) -> list[Sentence]:
    """The tagged sentences of the kept sections, in report order."""
    vocab = vocab or load_vocabulary()
    drop = {str(d).lower() for d in drop_sections}
    return [Sentence(s, name, _NO_PHASE if _non_image(s, vocab) else tag_caption(s, vocab=vocab))
            for name, body in split_sections(str(text or ""), vocab) if name not in drop
            for s in split_sentences(body)]


_NO_PHASE = Tags(phase=None)


def _non_image(sentence: str, vocab: Vocabulary) -> bool:
    """A recommendation or a remark on another study ("Recommend CT.", "Correlate with prior films.")."""
    matcher = getattr(vocab, "_non_image_matcher", None)
    if matcher is None:
        matcher = vocab._non_image_matcher = PhraseMatcher(vocab.raw["sections"]["non_image"])
    return bool(matcher.find(tokenize(sentence.lower())))


# ------------------------------------------------------------------------------------------ study facts


@dataclass(frozen=True)
class StudyFacts:
    """The study's modality / anatomy / view as tag values, and the view as written for templates."""

    modality: str = ""
    anatomy: str = ""
    view: str = ""
    view_words: str = ""
    from_meta: tuple[str, ...] = ()   # which of modality/anatomy/view `meta` stated


def normalise_modality(value: str, vocab: Optional[Vocabulary] = None) -> str:
    """DICOM Modality code or a modality word -> a platform modality (curriculum.phases.MODALITIES), or ""."""
    vocab = vocab or load_vocabulary()
    v = str(value or "").strip()
    if v.upper() in MODALITIES:
        return v.upper()
    return vocab.dicom_codes.get(v.upper()) or (tag_caption(v.lower(), vocab=vocab).modality if v else "")


def normalise_body_part(value: str, vocab: Optional[Vocabulary] = None) -> str:
    """DICOM BodyPartExamined or an anatomy label -> the tagger's anatomy region, or ""."""
    vocab = vocab or load_vocabulary()
    v = str(value or "").strip()
    code = re.sub(r"[\s_-]", "", v.upper())
    mapped = vocab.raw["study"]["dicom_body_parts"].get(code)
    return mapped or (tag_caption(v.lower().replace("_", " "), vocab=vocab).anatomy if v else "")


def normalise_view(value: str, vocab: Optional[Vocabulary] = None) -> str:
    vocab = vocab or load_vocabulary()
    v = str(value or "").strip()
    mapped = vocab.raw["study"]["dicom_views"].get(v.upper())
    return mapped or (tag_caption(f"{v.lower()} view", vocab=vocab).view if v else "")


def study_facts(sentences: list[Sentence], meta: Optional[StudyMeta] = None,
                vocab: Optional[Vocabulary] = None) -> StudyFacts:
    vocab = vocab or load_vocabulary()
    meta = meta or StudyMeta()
    modality = normalise_modality(meta.modality, vocab)
    anatomy = normalise_body_part(meta.body_part, vocab)
    view = normalise_view(meta.view, vocab)
    from_meta = tuple(k for k, v in (("modality", modality), ("anatomy", anatomy), ("view", view)) if v)
    view_words = meta.view.strip() if view else ""
    if not modality:
        named = Counter(s.tags.modality for s in sentences if s.tags.modality)
        projection = any(s.tags.view in vocab.projection_views for s in sentences)
        modality = named.most_common(1)[0][0] if named else ("DR" if projection else "")
    if not anatomy:
        votes: Counter = Counter()
        for s in sentences:
            votes.update(s.tags.regions)
        anatomy = max(votes, key=lambda r: (votes[r], -list(votes).index(r))) if votes else ""
    if not view:
        view = next((s.tags.view for s in sentences if s.tags.view), "")
    return StudyFacts(modality, anatomy, view, view_words, from_meta)


def coarse_caption(phase: str, facts: StudyFacts, vocab: Optional[Vocabulary] = None) -> str:
    """The template caption of the modality or anatomy phase, "" when the facts do not support it."""
    vocab = vocab or load_vocabulary()
    study = vocab.raw["study"]
    if phase == "modality":
        return study["modality_captions"].get(facts.modality, "")
    if not (facts.anatomy or facts.view):
        return ""
    noun = study["modality_nouns"].get(facts.modality, "image")
    head = f"{facts.anatomy.capitalize()} {noun}" if facts.anatomy else noun.capitalize()
    view = facts.view_words or facts.view
    return f"{head}, {view} view." if view else f"{head}."


# ------------------------------------------------------------------------------------------ phases


def phase_captions(text: str, meta: Optional[StudyMeta] = None, *,
                   drop_sections: Iterable[str] = DROP_SECTIONS) -> list[PhaseCaption]:
    """One caption per phase the study supports, coarse to fine (see the module docstring)."""
    vocab = load_vocabulary()
    sentences = report_sentences(text, drop_sections, vocab)
    return captions_of(sentences, study_facts(sentences, meta, vocab), vocab)


def captions_of(sentences: list[Sentence], facts: StudyFacts, vocab: Optional[Vocabulary] = None) -> list[PhaseCaption]:
    vocab = vocab or load_vocabulary()
    out = []
    for phase in PHASES:
        own = [s for s in sentences if s.tags.phase == phase]
        coarse = phase in ("modality", "anatomy")
        if coarse and (not own or ("modality" if phase == "modality" else "anatomy") in facts.from_meta
                       or (phase == "anatomy" and "view" in facts.from_meta)):
            caption = coarse_caption(phase, facts, vocab)
            tags = [tag_caption(caption, vocab=vocab)] if caption else []
        else:
            caption = " ".join(s.text for s in own)
            tags = [s.tags for s in own]
        if caption:
            out.append(PhaseCaption(phase, caption, _caption_tags(tags, phase, facts)))
    return out


def _caption_tags(tags: list[Tags], phase: str, facts: StudyFacts) -> Tags:
    """The Tags of a caption made of sentences with `tags` (merged, not re-tagged), at `phase`, with
    the study's modality, anatomy and view."""
    def first(field: str) -> str:
        return next((getattr(t, field) for t in tags if getattr(t, field)), "")

    def union(field: str) -> tuple:
        return tuple(dict.fromkeys(v for t in tags for v in getattr(t, field)))

    present = union("findings")
    uncertain = tuple(f for f in union("uncertain") if f not in present)
    negated = tuple(f for f in union("negated") if f not in present and f not in uncertain)
    found = set(union("granularities"))
    granularities = tuple(g for g in PHASES[:PHASES.index(phase) + 1] if g in found or g == phase)
    finding = present[0] if present else ("none" if any(t.finding for t in tags) else "")
    return Tags(phase=phase, granularities=granularities, modality=facts.modality or first("modality"),
                anatomy=facts.anatomy or first("anatomy"), view=facts.view or first("view"),
                organs=tuple(sorted(set(union("organs")))), target_organ=first("target_organ"),
                target_region=first("target_region"), finding=finding, findings=present, negated=negated,
                subtype=first("subtype"), grade=first("grade"), uncertain=uncertain, regions=union("regions"),
                mentions=union("mentions"))


def tag_report(text: str, meta: Optional[StudyMeta] = None, *,
               drop_sections: Iterable[str] = DROP_SECTIONS) -> dict:
    """The audit record of `radisim tag`: the phases the study feeds and each kept sentence's tags."""
    vocab = load_vocabulary()
    sentences = report_sentences(text, drop_sections, vocab)
    captions = captions_of(sentences, study_facts(sentences, meta, vocab), vocab)
    return {
        "text": text,
        "phases": [c.phase for c in captions],
        "sentences": [{"text": s.text, "section": s.section, "phase": s.tags.phase,
                       "findings": [{"term": f.term, "assertion": f.assertion, "location": f.location,
                                     "severity": f.severity} for f in s.tags.mentions]}
                      for s in sentences],
    }
