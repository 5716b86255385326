"""Reading a ranking out of free text: the one parser every LLM policy and trainer shares.

Accepts bracketed index lists (`[3, 1, 2]`), numbered or lettered lines (`1. [C] Title`, `C) Title`), letter lists
(`C, A, B`) and bare titles (fuzzy-matched against the candidates). A `<think>…</think>` rationale is skipped.
Duplicates are dropped and unnamed candidates appended in their given order, so the result is always a full
ranking; `status` says whether the answer named every candidate, some, or none — the parse-failure count.
"""

from __future__ import annotations

import difflib
import re
import string
from dataclasses import dataclass
from typing import Sequence

import numpy as np

LETTERS = string.ascii_uppercase


@dataclass(frozen=True)
class ParsedRanking:
    order: list[int]  # candidate positions, best first, complete
    matched: int  # how many of them the answer named
    method: str  # "index", "letter", "title" or "none"

    @property
    def status(self) -> str:
        return "failed" if self.matched == 0 else "ok" if self.matched == len(self.order) else "partial"

    def scores(self) -> np.ndarray:
        """Per candidate position: higher is better (n for the first, 1 for the last)."""
        scores = np.empty(len(self.order))
        scores[self.order] = np.arange(len(self.order), 0, -1)
        return scores


def candidate_label(position: int, style: str = "number") -> str:
    """How a prompt names candidate `position`: `[1]`… or `[A]`…; the parser reads both back."""
    return f"[{LETTERS[position]}]" if style == "letter" else f"[{position + 1}]"


def parse_ranking(text: str, titles: Sequence[str], style: str = "number") -> ParsedRanking:
    n = len(titles)
    answer = text.split("</think>")[-1] if "</think>" in text else re.sub(r"<think>.*", "", text, flags=re.S)
    for method, found in (("index", _bracketed_list(answer, n)), *_by_lines(answer, titles, style),
                          ("title", _titles_inline(answer, titles))):
        if found:
            return _complete(found, n, method)
    return ParsedRanking(list(range(n)), 0, "none")


def _complete(found: list[int], n: int, method: str) -> ParsedRanking:
    seen = list(dict.fromkeys(found))
    return ParsedRanking(seen + [i for i in range(n) if i not in seen], len(seen), method)


def _bracketed_list(text: str, n: int) -> list[int]:
    """`[3, 1, 2]`, `3 > 1 > 2`, or a list cut off by the length limit (`[3, 1, 2,`): 1-based indices, only
    when several appear together."""
    match = (re.search(r"\[\s*(\d+(?:\s*[,>]\s*\d+)+)\s*(?:\]|,?\s*$)", text)  # a cut-off list still counts
             or re.search(r"(\d+(?:\s*>\s*\d+)+)", text))
    if not match:
        return []
    values = [int(v) - 1 for v in re.findall(r"\d+", match.group(1))]
    return [v for v in values if 0 <= v < n]


def _by_lines(text: str, titles: Sequence[str], style: str) -> list[tuple[str, list[int]]]:
    """One candidate per line, named by its label (`[C]`, `C.`, `12.`) or, failing that, by its title."""
    labelled, titled = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        position = _label_position(line, len(titles), style)
        if position is not None:
            labelled.append(position)
            continue
        position = match_title(re.sub(r"^\s*\d+[.)]\s*", "", line), titles)
        if position is not None:
            titled.append(position)
    method = "letter" if style == "letter" else "index"
    return [(method, labelled if len(labelled) >= 2 else []), ("title", titled)]


def _label_position(line: str, n: int, style: str) -> int | None:
    bracket = re.search(r"\[\s*([A-Za-z]|\d{1,2})\s*\]", line)
    token = bracket.group(1) if bracket else None
    if token is None and style == "letter":
        match = re.match(r"^\s*(?:\d+[.)]\s*)?\(?([A-Z])[.):]?(?:\s|$)", line)
        token = match.group(1) if match else None
    if token is None:
        return None
    position = LETTERS.index(token.upper()) if token.isalpha() else int(token) - 1
    return position if 0 <= position < n else None


def normalise(title: str) -> str:
    title = re.sub(r"\(\d{4}[^)]*\)", " ", title.lower())
    return " ".join(re.sub(r"[^\w\s]", " ", title).split())


def match_title(text: str, titles: Sequence[str], cutoff: float = 0.75) -> int | None:
    """The candidate whose title `text` names: exact after normalising, else the closest above `cutoff`."""
    wanted = normalise(text)
    if not wanted:
        return None
    normalised = [normalise(t) for t in titles]
    if wanted in normalised:
        return normalised.index(wanted)
    contained = [i for i, t in enumerate(normalised) if t and (t in wanted or wanted in t) and len(t) > 3]
    if len(contained) == 1:
        return contained[0]
    close = difflib.get_close_matches(wanted, normalised, n=1, cutoff=cutoff)
    return normalised.index(close[0]) if close else None


def _titles_inline(text: str, titles: Sequence[str]) -> list[int]:
    """Titles mentioned anywhere in running text, in the order they first appear."""
    lowered = normalise(text)
    hits = [(lowered.find(t), i) for i, t in enumerate(normalise(t) for t in titles) if len(t) > 3 and t in lowered]
    return [i for _, i in sorted(hits)]
