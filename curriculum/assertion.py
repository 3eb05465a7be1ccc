"""ConText-style assertion of a finding mention: present, absent or uncertain.

The algorithm of ConText (Harkema et al., J Biomed Inform 2009), itself NegEx's (Chapman et al.,
2001) generalisation, over the trigger lists in `vocab/assertion.yaml`:

- a *pre* trigger ("no", "possible", "cannot exclude") governs the findings after it, a *post* trigger
  ("is not seen", "has resolved", "cannot be excluded") the findings before it, each within `window`
  words of the finding's clause;
- a clause ends at a terminator ("but", "however", "which", ";", ...) or a comma, except that the
  items of a list that "or"/"nor" closes share one clause ("no pneumothorax, effusion or pneumonia");
- pseudo-triggers contain a trigger word but assert nothing ("no change in the large effusion",
  "not only"): they are matched first (longest match wins) and govern nothing;
- the nearest pre-trigger and the nearest post-trigger decide; uncertainty wins over negation
  ("no definite ... cannot be excluded" is uncertain);
- two present findings offered as alternatives ("scarring or atelectasis") are both uncertain.

Measured against medspacy's ConText on the gold set in docs/reports.md; these rules were kept.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

PRESENT, ABSENT, UNCERTAIN = "present", "absent", "uncertain"
ASSERTIONS = (PRESENT, ABSENT, UNCERTAIN)
_WORD = re.compile(r"[\w?/-]+")


@dataclass(frozen=True)
class Trigger:
    start: int
    end: int
    kinds: frozenset   # of "neg_pre", "neg_post", "unc_pre", "unc_post"; empty for a pseudo-trigger


class AssertionRules:
    """Compiled `vocab/assertion.yaml`. `assert_all(text, spans)` -> one assertion per (start, end)."""

    def __init__(self, raw: dict):
        self.window = int(raw["window"])
        kinds: dict[str, set] = {}
        for family, short in (("negation", "neg"), ("uncertainty", "unc")):
            for where in ("pre", "post"):
                for t in raw[family][where]:
                    kinds.setdefault(str(t).lower(), set()).add(f"{short}_{where}")
        for t in raw["pseudo"]:
            kinds[str(t).lower()] = set()  # a pseudo-trigger hides the trigger words inside it
        self.kinds = {t: frozenset(k) for t, k in kinds.items()}
        alts = "|".join(re.escape(t) for t in sorted(self.kinds, key=len, reverse=True))
        self.trigger_re = re.compile(rf"(?<![\w-])({alts})(?![\w-])")
        words = [b for b in raw["terminators"] if any(c.isalpha() for c in b)]
        marks = "".join(re.escape(b) for b in raw["terminators"] if not any(c.isalpha() for c in b))
        self.breaker_re = re.compile(rf"[{marks}]|(?<![\w-])(?:{'|'.join(map(re.escape, words))})(?![\w-])")
        self.neg_pre_re = re.compile(
            r"(?<![\w-])(" + "|".join(re.escape(t) for t in sorted(
                (t for t, k in self.kinds.items() if "neg_pre" in k), key=len, reverse=True)) + r")(?![\w-])")

    def triggers(self, text: str) -> list[Trigger]:
        from radisim.curriculum.tagger import PhraseMatcher, tokenize

        if not hasattr(self, "_matcher"):
            self._matcher = PhraseMatcher(self.kinds)
        return [Trigger(a, b, self.kinds[t]) for a, b, t in self._matcher.find(tokenize(text))]

    def assert_all(self, text: str, spans: list[tuple[int, int]]) -> list[str]:
        """Assertion of each finding span of `text` (lower case, one sentence)."""
        if not spans:
            return []
        triggers = [t for t in self.triggers(text) if t.kinds]
        cuts = [(m.start(), m.end(), m.group(0)) for m in self.breaker_re.finditer(text)]
        out = [self._assert(text, s, e, triggers, cuts) for s, e in spans]
        return _alternatives(text, spans, out)

    def _assert(self, text: str, start: int, end: int, triggers: list[Trigger], cuts) -> str:
        """The nearest pre-trigger before and the nearest post-trigger after, within the clause."""
        lo, hi = self._clause(text, start, end, cuts)
        pre = [t for t in triggers if lo <= t.start and t.end <= start and any(k.endswith("_pre") for k in t.kinds)
               and _words(text, t.end, start) <= self.window]
        post = [t for t in triggers if end <= t.start and t.end <= hi and any(k.endswith("_post") for k in t.kinds)
                and _words(text, end, t.start) <= self.window]
        kinds = (pre[-1].kinds if pre else frozenset()) | (post[0].kinds if post else frozenset())
        if kinds & {"unc_pre", "unc_post"}:
            return UNCERTAIN
        return ABSENT if kinds & {"neg_pre", "neg_post"} else PRESENT

    def _clause(self, text: str, start: int, end: int, cuts) -> tuple[int, int]:
        """[lo, hi) of the finding's clause; a list that "or"/"nor" closes is one clause."""
        before = [c for c in cuts if c[1] <= start]
        after = [c for c in cuts if c[0] >= end]
        hi = after[0][0] if after else len(text)
        lo = before[-1][1] if before else 0
        list_end = next((c[0] for c in after if c[2] != ","), len(text))
        in_list = _OR.search(text, lo, list_end) is not None
        if in_list and ((before and before[-1][2] == ",") or (after and after[0][2] == ",")):
            hard = [c for c in before if c[2] != ","]
            lo = hard[-1][1] if hard else 0
            hi = list_end
        return lo, hi


_OR = re.compile(r"(?<![\w-])(?:or|nor)(?![\w-])")
_ALTERNATIVE = re.compile(r"\s*,?\s*(?:or|and/or|versus|vs\.?)\s+(?:[\w-]+\s+){0,2}")


def _alternatives(text: str, spans: list[tuple[int, int]], out: list[str]) -> list[str]:
    """Two findings offered as alternatives ("scarring or atelectasis") are each uncertain."""
    order = sorted(range(len(spans)), key=lambda i: spans[i])
    result = list(out)
    for i, j in zip(order, order[1:]):
        if out[i] == out[j] == PRESENT and _ALTERNATIVE.fullmatch(text, spans[i][1], spans[j][0]):
            result[i] = result[j] = UNCERTAIN
    return result


def _words(text: str, a: int, b: int) -> int:
    return len(_WORD.findall(text, a, b))
