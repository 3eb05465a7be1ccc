"""Counterfactual captions: hard negatives that differ from a caption only in what its phase teaches.

Why: the other captions of a CLIP batch mostly differ from an image's own caption in modality, body
part or organ, so the contrastive loss falls without the model learning a phase's fine distinction.
On the embedded default, after the whole curriculum the text tower still mapped "... in the upper
left" and "... in the lower right", or "no pneumonia" and "pneumonia", to the same embedding (cosine
0.996-1.000), and localization stayed at chance. A counterfactual puts exactly that distinction next
to the true caption (the idea of NegCLIP, Yuksekgonul et al., ICLR 2023), and it is the decision the
zero-shot evaluation asks for.

One rule per granularity (curriculum.phases.PHASES), driven by the vocabulary in curriculum/vocab/:

- modality      a modality term -> a term of another modality        "CT of the chest" -> "MRI of the chest"
- anatomy       an organ -> another organ of its body region,        "showing the liver" -> "showing the spleen"
                a body-region term -> a term of another region
- localization  flip a non-empty subset of the positional words      "upper left" -> "lower left"
                (location.yaml `opposites`)
- abnormality   negate a present finding, or un-negate a negated one "with pneumonia" <-> "with no pneumonia"
- grading       a term -> another of its `contrasts` group           "high grade glioma" -> "low grade glioma"
                (grading.yaml), a grade numeral -> another, a size   "WHO grade 2" -> "WHO grade 3",
                -> three times larger or smaller                     "12 mm" -> "36 mm"
                With `details` (`detail_pool`: the grading details of the dataset's own captions), only
                what reads like a real caption of the caption's family: another signature's real detail
                in place of its own ("meningioma, WHO grade 1, 35 mm" -> "meningioma, WHO grade 3,
                54 mm"), or a one-term swap that gives a real signature ("WHO grade 1" -> "WHO grade 3").

A caption gets its phase's rule; when that rule finds nothing to change, the next coarser rule is
tried ("the finest distinction the caption allows"). `None` means no rule applies.
"""
from __future__ import annotations

import functools
import random
import re
import zlib
from typing import Callable, Iterable, NamedTuple, Optional

from .phases import PHASES
from .tagger import Vocabulary, _negated, _term_regex, load_vocabulary

_ROMAN = ("i", "ii", "iii", "iv")
_GRADE_RE = re.compile(r"\b(grade\s+)(iv|i{1,3}|[1-4])\b", re.IGNORECASE)
_SIZE_RE = re.compile(r"\b(\d+(?:\.\d+)?)(\s?)(mm|cm)\b", re.IGNORECASE)
_SPACES = re.compile(r"\s{2,}")


def counterfactual(caption: str, phase: str, rng: random.Random, details: Optional[dict] = None) -> Optional[str]:
    """One caption that differs from `caption` in what `phase` teaches (or a coarser phase); None if none.
    `details` (`detail_pool`): real grading details for the grading rule to draw from."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; expected one of {PHASES}")
    if phase == "grading" and details:
        out = _real_grading(caption, rng, details)
        if out is not None and out.lower() != caption.lower():
            return out
    rules = _rules()
    for name in reversed(PHASES[: PHASES.index(phase) + 1]):
        out = rules[name](caption, rng)
        if out is not None and out.lower() != caption.lower():
            return out
    return None


def counterfactuals(caption: str, phase: str, k: int, seed: int = 0,
                    details: Optional[dict] = None) -> list[Optional[str]]:
    """`k` counterfactuals of one caption, the same on every call (the rng is seeded from the caption),
    so that a retried or resumed phase sees the same negatives."""
    rng = random.Random(zlib.crc32(f"{seed}|{phase}|{caption}".encode()))
    return [counterfactual(caption, phase, rng, details) for _ in range(k)]


# ------------------------------------------------------------------------------------------- rules


@functools.lru_cache(maxsize=1)
def _rules() -> dict[str, Callable[[str, random.Random], Optional[str]]]:
    v = load_vocabulary()
    opposites = v.raw["location"]["opposites"]
    by_region: dict[str, list[str]] = {}  # organs grouped by body region: "liver" against "spleen"
    for organ, region in v.raw["anatomy"]["organs"].items():
        by_region.setdefault(region, []).append(str(organ))
    return {
        "modality": functools.partial(_swap_group, contrasts=_Contrasts.exclusive(v.raw["modality"])),
        "anatomy": functools.partial(_swap_anatomy, organs=_Contrasts.groups(by_region.values()),
                                     regions=_Contrasts.exclusive(v.raw["anatomy"]["regions"])),
        "localization": functools.partial(_flip_positions, opposites=opposites, regex=_term_regex(opposites)),
        "abnormality": functools.partial(_toggle_negation, vocab=v),
        "grading": functools.partial(_swap_grading, groups=_grading_groups()),
    }


@functools.lru_cache(maxsize=1)
def _grading_groups() -> "_Contrasts":
    return _Contrasts.groups(load_vocabulary().raw["grading"]["contrasts"])


class _Contrasts:
    """Terms and, for each, its alternatives (what a counterfactual may put in its place); found in
    text longest first, on word boundaries."""

    def __init__(self, alternatives: dict[str, set[str]]):
        self.alts = alternatives
        self.regex = _term_regex(alternatives)

    @classmethod
    def groups(cls, groups) -> "_Contrasts":
        """Groups of mutually exclusive terms: each term against the rest of its groups."""
        alts: dict[str, set[str]] = {}
        for g in groups:
            g = [str(t).lower() for t in g]
            for t in g:
                alts.setdefault(t, set()).update(g)
        return cls(alts)

    @classmethod
    def exclusive(cls, classes: dict) -> "_Contrasts":
        """Classes of synonyms: each term against the leading term of every other class."""
        alts: dict[str, set[str]] = {}
        for label, terms in classes.items():
            others = {str(t).lower() for other, ts in classes.items() if other != label for t in ts[:1]}
            for t in terms:
                alts.setdefault(str(t).lower(), set()).update(others)
        return cls(alts)

    def alternatives(self, term: str, text: str = "") -> list[str]:
        """`term`'s alternatives, without those naming the same thing or already in `text`."""
        term = term.lower()
        present = [m.group(1) for m in self.regex.finditer(text)]
        return sorted(t for t in self.alts[term] if not any(_same_thing(t, w) for w in [term, *present]))


def _same_thing(a: str, b: str) -> bool:
    """"kidney"/"kidneys", "meniscus"/"menisci", "aorta"/"thoracic aorta": synonyms, not alternatives."""
    return a[:5] in b or b[:5] in a


_ARTICLE = re.compile(r"(?:^|(?<=\s))(an?)\s+$", re.IGNORECASE)


def _replace(text: str, start: int, end: int, new: str) -> str:
    """`text` with [start, end) replaced by `new`; a preceding "a"/"an" follows the new word, and
    "a" + "no X" becomes "no X"."""
    head = text[:start]
    article = _ARTICLE.search(head)
    if article and new:
        if new.lower().startswith("no "):
            head = head[: article.start()]
        else:
            head = head[: article.start()] + ("an " if _vowel_sound(new) else "a ")
    return _SPACES.sub(" ", head + new + text[end:]).strip()


#: A word spelled out letter by letter: consonants, perhaps one final vowel ("mr", "ct", "mri", "cta").
_INITIALISM = re.compile(r"[b-df-hj-np-tv-z]+[aeiou]?")


def _vowel_sound(phrase: str) -> bool:
    """Whether `phrase` is said with a vowel first: "an x-ray", "an MR" ("em-ar"), "a CT", "a FLAIR"."""
    word = re.split(r"[\s-]", phrase.lower(), maxsplit=1)[0]
    if word[:1] in ("a", "e", "i", "o", "u", "x"):
        return True
    return word[:1] in ("f", "h", "l", "m", "n", "r", "s") and _INITIALISM.fullmatch(word) is not None


def _swap_group(text: str, rng: random.Random, contrasts: _Contrasts) -> Optional[str]:
    found = list(contrasts.regex.finditer(text.lower()))
    if not found:
        return None
    m = rng.choice(found)
    alternatives = contrasts.alternatives(m.group(1), text.lower())
    return _replace(text, m.start(), m.end(), rng.choice(alternatives)) if alternatives else None


def _swap_anatomy(text: str, rng: random.Random, organs: _Contrasts, regions: _Contrasts) -> Optional[str]:
    # Organs first: "the liver" -> "the spleen" is the finer (and harder) contrast than "abdomen" -> "chest".
    return _swap_group(text, rng, organs) or _swap_group(text, rng, regions)


def _flip_positions(text: str, rng: random.Random, opposites: dict[str, str], regex: re.Pattern) -> Optional[str]:
    found = list(regex.finditer(text.lower()))
    if not found:
        return None
    flip = [rng.random() < 0.5 for _ in found]
    if not any(flip):
        flip[rng.randrange(len(found))] = True
    for m, f in sorted(zip(found, flip), key=lambda x: -x[0].start()):
        if f:
            text = text[: m.start()] + opposites[m.group(1)] + text[m.end():]
    return text


def _toggle_negation(text: str, rng: random.Random, vocab: Vocabulary) -> Optional[str]:
    """Flip whether one finding is present, and write the result the way a report would.

    Why so careful: a counterfactual that reads unlike any real caption ("head MRI: brain tumor",
    "... with ACL tear or meniscus tear", "a brain no tumor") can be told from the true caption by its
    wording alone, given any image of the body part. On the embedded default the text tower learned
    exactly that (held-out images of the same body part, shuffled, preferred the true caption as
    often as their own images did: 0.73 against 0.73) and the zero-shot abnormality AUCs stayed at
    chance. So an un-negated finding gets its article and leaves the others of its list negated
    ("no A, B or C" -> "a B; no A or C"), and a negated one takes the place of its article.
    """
    text = " ".join(text.split())
    low = text.lower()  # the same character offsets as `text`
    found = [m for m in vocab.finding_re.finditer(low)
             if any(kind == "finding" for kind, _ in vocab.finding_terms[m.group(1)])
             and not _in_parentheses(low, m.start())]
    if not found:
        return None
    chains = {f.start(): _negated_list(low, f, found, vocab) for f in found}
    stated = [f for f in found if chains[f.start()] is None and not _negated(low, f.start(), vocab)]
    if stated:  # the finding the study is about is absent, rather than another one present besides it
        return _negate(text, rng.choice(stated))
    m = rng.choice(found)
    if chains[m.start()] is not None:
        return _affirm(text, m, *chains[m.start()])
    cue = list(vocab.negation_re.finditer(low[: m.start()]))[-1]  # a negation no list covers: drop its cue
    return _replace(text, cue.start(), cue.end(), "with" if cue.group(1) == "without" else "")


#: Separators of a negated list ("no A, B or C"), each followed by at most two modifiers of the next item.
_LIST_GAP = re.compile(r"\s*(?:,\s*(?:(?:or|and|nor)\s+)?|\s+(?:or|and|nor)\s+)((?:[\w-]+\s+){0,2})$")
_CUE_GAP = re.compile(r"\s+((?:[\w-]+\s+){0,2})$")  # between a cue and the first item: "no acute ..."
#: Words that end a noun phrase: an article this far back belongs to another phrase ("the head with").
_NOT_MODIFIER = {"with", "without", "showing", "shows", "and", "or", "on", "in", "at", "from", "to", "for",
                 "seen", "is", "are", "was", "were", "has", "have", "no", "not"}
_ARTICLE_BEFORE = re.compile(r"(?:^|(?<=\s))(an?|the)\s+((?:[\w-]+\s+){0,2})$", re.IGNORECASE)
_MASS_NOUN = re.compile(r"(?:ia|thy|tion|sis|ema|aly|ing|\d|[^su]s)$", re.IGNORECASE)  # and plurals


def _in_parentheses(low: str, pos: int) -> bool:
    return low.rfind("(", 0, pos) > low.rfind(")", 0, pos)


def _negated_list(low: str, m: re.Match, found: list[re.Match], vocab: Vocabulary):
    """If `m` is an item of a list that a negation cue governs, (cue, [(start, end) of each item])."""
    before = low[: m.start()]
    cut = max((b.end() for b in vocab.breaker_re.finditer(before) if b.group(0) != ","), default=0)
    cues = list(vocab.negation_re.finditer(low, cut, m.start()))
    if not cues:
        return None
    cue = cues[-1]
    items, pos = [], cue.end()
    for f in (f for f in found if f.start() >= cue.end()):
        gap = (_LIST_GAP if items else _CUE_GAP).fullmatch(low, pos, f.start())
        if gap is None:
            break
        items.append((f.start() - len(gap.group(1)), f.end()))
        pos = f.end()
    return (cue, items) if any(s <= m.start() < e for s, e in items) else None


def with_article(phrase: str) -> str:
    """ "a liver lesion", "an ACL tear"; a mass noun or plural bare: "pneumonia", "COVID-19", "nodules"."""
    if _MASS_NOUN.search(phrase):
        return phrase
    return ("an " if phrase[0].lower() in "aeiou" else "a ") + phrase


def _or_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _affirm(text: str, m: re.Match, cue: re.Match, items: list[tuple[int, int]]) -> str:
    """ "with no A, B or C" -> "with a B; no A or C": the chosen item affirmed in the cue's place."""
    chosen = next(i for i, (s, e) in enumerate(items) if s <= m.start() < e)
    phrases = [text[s:e] for s, e in items]
    head = re.sub(r"\bnormal\s+", "", text[: cue.start()], count=1, flags=re.IGNORECASE)
    if cue.group(1) == "without":
        head += "with "
    affirmed = with_article(phrases.pop(chosen))
    if not head.strip() and text[:1].isupper():
        affirmed = affirmed[0].upper() + affirmed[1:]
    tail = text[items[-1][1]:]
    # the others stay negated where the list ends its clause; mid-sentence ("no A or B on axial CT")
    # they are dropped, as "a B; no A on axial CT" reads like no report
    rest = f"; no {_or_list(phrases)}" if phrases and re.match(r"\s*(?:[;.]|$)", tail) else ""
    return _SPACES.sub(" ", head + affirmed + rest + tail).strip()


def _negate(text: str, m: re.Match) -> str:
    """ "showing a brain tumor; no ACL tear" -> "showing no brain tumor or ACL tear": "no" in place of the
    phrase's article, a parenthetical restatement dropped, a following "; no ..." list joined."""
    start = m.start()
    art = _ARTICLE_BEFORE.search(text[:start])
    if art and not set(art.group(2).lower().split()) & _NOT_MODIFIER:
        start = art.start(1)
        text = text[:start] + text[art.end(1):].lstrip()
        end = m.end() - (art.end(1) - start + 1)
    else:
        end = m.end()
    tail = text[end:]
    paren = re.match(r"((?:\s+[\w-]+){0,3})\s*\([^)]*\)", tail)  # "a torn meniscus (meniscus tear)"
    if paren:
        tail = paren.group(1) + tail[paren.end():]
    joined = re.match(r"\s*;\s*no\s+([^;.]*)", tail, re.IGNORECASE)
    if joined:  # "no A; no B or C" -> "no A, B or C"
        others = joined.group(1)
        tail = (", " if " or " in others else " or ") + others + tail[joined.end():]
    return _SPACES.sub(" ", text[:start] + "no " + text[start:end] + tail).strip()


def _swap_grading(text: str, rng: random.Random, groups: _Contrasts) -> Optional[str]:
    edits = _term_swaps(text, groups)
    if not edits:
        return None
    # one term or numeral, then one of its alternatives: a term with many (a size) is not favoured
    start, end = rng.choice(sorted({(s, e) for s, e, _ in edits}))
    return _replace(text, start, end, rng.choice([new for s, e, new in edits if (s, e) == (start, end)]))


def _term_swaps(text: str, groups: _Contrasts) -> list[tuple[int, int, str]]:
    """Every single-term edit of the grading rule: (start, end, replacement)."""
    low = text.lower()
    edits = [(m.start(), m.end(), alt) for m in groups.regex.finditer(low) for alt in groups.alternatives(m.group(1))]
    for m in _GRADE_RE.finditer(text):
        num = m.group(2).lower()
        choices = _ROMAN if num in _ROMAN else ("1", "2", "3", "4")
        edits += [(m.start(2), m.end(2), c.upper() if m.group(2).isupper() else c) for c in choices if c != num]
    for m in _SIZE_RE.finditer(text):
        size = float(m.group(1))
        for new in (size * 3, size / 3) if size >= 10 else (size * 3,):
            edits.append((m.start(1), m.end(1), f"{new:.0f}" if new >= 1 else f"{new:.1f}"))
    return edits


# ---------------------------------------------------------------------- grading: real details


class Detail(NamedTuple):
    """A caption's grading detail: the span from its first grading term to its last, in one clause
    ("meningioma, WHO grade 2, 45 mm"); `family` is the first `contrasts` group it touches (the
    groups of subtypes come first in grading.yaml), `signature` its terms other than sizes, sorted."""

    start: int
    end: int
    family: int
    signature: str


@functools.lru_cache(maxsize=1)
def _grading_vocab() -> tuple[Vocabulary, dict[str, int], re.Pattern]:
    """The vocabulary; each contrast term's first group (its family); the margin descriptors' regex."""
    v = load_vocabulary()
    families: dict[str, int] = {}
    for i, group in enumerate(v.raw["grading"]["contrasts"]):
        for t in group:
            families.setdefault(str(t).lower(), i)
    margins = "|".join(re.escape(str(m).lower()) for m in v.raw["grading"]["margins"])
    return v, families, re.compile(rf"\b((?:{margins})\s+margins?)\b")


#: Between two terms of one detail: punctuation and at most two other words ("82 mm solid nodule with
#: spiculated margins"), never a clause break.
_DETAIL_GAP = re.compile(r"[\s,()]*(?:[\w-]+[\s,()]+){0,2}")


def find_detail(text: str) -> Optional[Detail]:
    """The grading detail of `text`; None where it touches no `contrasts` group (a size alone)."""
    v, families, descriptors = _grading_vocab()
    low = text.lower()
    terms = [(m.start(1), m.end(1)) for m in v.grading_re.finditer(low)]
    terms += [m.span() for p in v.grade_patterns for m in p.finditer(low)]
    terms += [m.span(1) for m in descriptors.finditer(low)]
    spans: list[tuple[int, int]] = []
    for s, e in sorted(terms, key=lambda t: (t[0], -t[1])):  # overlaps ("who grade 2", "grade 2"): the longest
        if spans and s < spans[-1][1]:
            continue
        if spans and not _DETAIL_GAP.fullmatch(low, spans[-1][1], s):
            break
        spans.append((s, e))
    groups = [families[low[s:e]] for s, e in spans if low[s:e] in families]
    if not groups:
        return None
    start, end = spans[0][0], spans[-1][1]
    if low.count("(", start, end) > low.count(")", start, end) and low.startswith(")", end):
        end += 1  # "pituitary adenoma (macroadenoma)"
    signature = "|".join(sorted(low[s:e] for s, e in spans if not _SIZE_RE.fullmatch(low[s:e])))
    return Detail(start, end, min(groups), signature)


def detail_pool(captions: Iterable[str], per_signature: int = 32) -> dict[int, dict[str, list[str]]]:
    """The grading details of `captions`, by family and signature: what `counterfactual(...,
    details=...)` puts in a grading caption's place. At most `per_signature` details each, chosen by a
    stable hash, so that the pool is the same on every worker and run."""
    found: dict[int, dict[str, set[str]]] = {}
    for cap in captions:
        d = find_detail(cap)
        if d is not None:
            found.setdefault(d.family, {}).setdefault(d.signature, set()).add(cap[d.start:d.end])
    return {fam: {sig: sorted(sorted(ds, key=lambda s: zlib.crc32(s.encode()))[:per_signature])
                  for sig, ds in sorted(sigs.items())}
            for fam, sigs in sorted(found.items())}


def _real_grading(text: str, rng: random.Random, pool: dict) -> Optional[str]:
    """A grading counterfactual that reads like a real caption of its family: half the time (where both
    exist) its whole detail is replaced by a real one of another signature, otherwise one term is
    swapped where that gives a real signature.

    Why both: in the phantom a lesion's size and margins follow from its grade, so a free one-term swap
    ("meningioma, WHO grade 4, 35 mm": no such grade; a grade 3 of grade-1 size) is told from the true
    caption by its text alone. But a real detail changes grade, size and margins together, and then the
    grade word is not needed to tell them apart, while the zero-shot prompts name only the grade. Both
    together kept the blind accuracy lowest among the rules that still moved the grade (the runs:
    docs/curriculum.md, "Counterfactual captions")."""
    d = find_detail(text)
    sigs = pool.get(d.family, {}) if d else {}
    others = sorted(s for s in sigs if s != d.signature)
    if not others:
        return None
    swaps = []
    for start, end, new in _term_swaps(text, _grading_groups()):
        if d.start <= start < d.end:
            out = _replace(text, start, end, new)
            n = find_detail(out)
            if n is not None and n.signature in others:
                swaps.append(out)
    if not swaps or rng.random() < 0.5:
        return _replace(text, d.start, d.end, rng.choice(sigs[rng.choice(others)]))
    return rng.choice(swaps)
