"""Whole-word phrase matching over a text's tokens: the vocabulary lookup of the tagger and its triggers."""
from __future__ import annotations

import re

TOKEN = re.compile(r"[\w-]+|[^\w\s]")


class PhraseMatcher:
    """Whole-word phrase lookup, leftmost then longest first (what tagger._term_regex(terms) matches),
    found by a dictionary walk over the text's tokens instead of a regular expression with hundreds
    of alternatives (about ten times faster on report sentences)."""

    def __init__(self, terms):
        self.first: dict[str, list[tuple[str, ...]]] = {}
        self.term: dict[tuple[str, ...], str] = {}
        for t in {str(t).lower() for t in terms}:
            toks = tuple(TOKEN.findall(t))
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
    return [(m.group(0), m.start(), m.end()) for m in TOKEN.finditer(text)]
