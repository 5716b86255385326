"""Fast thinking: an immediate answer in one short LLM call — the user's pick and rating, or the ranker's ordering.

Two ways to pick. `likelihood` scores every shown title as the continuation of "I choose" over one cached prompt
(a 135M model cannot follow an answer format, but its likelihoods carry signal). `generate` asks for "[label]
like/dislike - reason" and parses it; an answer naming no shown item falls back to the first shown item and is
counted as unparsed. Either way the user then rates its pick 1-5 by the likelihood of each digit after "My rating,
from 1 to 5:" — the model's own decision, not a pattern in its text — and likes it when the rating is
`LIKED_FROM` or more (the protocol's positives are ratings above 3). A one-line rationale is written only when
asked for (`rationale=True`): it is the one decode of a step, and the step's cost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

from starec_env.agents.llm import LLM, Chat, Sampling
from starec_env.agents.parsing import ParsedRanking, candidate_label, match_title, parse_ranking

CHOICE_MODES = ("likelihood", "generate")
RATINGS = (1, 2, 3, 4, 5)
LIKED_FROM = 4


@dataclass(frozen=True)
class Choice:
    position: int  # index into the shown items
    rating: int  # 1-5, the user's rating of its pick
    rationale: str  # "" unless a rationale was asked for
    parsed: bool  # False: the answer named no shown item and the documented fallback (first shown) was used
    tokens: int  # tokens read, scored and written for this choice

    @property
    def liked(self) -> bool:
        return self.rating >= LIKED_FROM


def choose(llm: LLM, chats: Sequence[Chat], shown: Sequence[Sequence[str]], mode: str = "likelihood",
           max_tokens: int = 24, rationale: bool = False,
           pick: Callable[[list[list[float]]], list[int]] | None = None) -> list[Choice]:
    """For each chat (a `prompts.choice_chat`), the user's pick among `shown[b]` and its rating, batched over chats.
    In likelihood mode `pick` turns the shown items' scores into picks (default: the most likely; the grounded
    user of `agents.grounded` draws from a softmax that adds a collaborative prior)."""
    if mode not in CHOICE_MODES:
        raise ValueError(f"unknown choice mode {mode!r}; expected one of {CHOICE_MODES}")
    before = sum(llm.tokens.values())
    with llm.phase("choice"):
        picks = _pick_by_likelihood(llm, chats, shown, pick) if mode == "likelihood" else _pick_by_generation(
            llm, chats, shown, max_tokens)
    said = [[*chat, {"role": "assistant", "content": f"I choose {candidate_label(p)} {titles[p]}."}]
            for chat, (p, _, _), titles in zip(chats, picks, shown)]
    with llm.phase("rating"):
        ratings = rate(llm, said)
    reasons = [text for _, _, text in picks]
    if rationale and mode == "likelihood":
        because = [[*chat[:-1], {"role": "assistant", "content": f"{chat[-1]['content'][:-1]} because"}]
                   for chat in said]
        with llm.phase("rationale"):
            written = llm.generate(because, Sampling(max_tokens=max_tokens, stop=("\n",)))
        reasons = [f"because {c.text}" for (c,) in written]
    share = (sum(llm.tokens.values()) - before) // max(len(chats), 1)
    return [Choice(position, rating, reason, parsed, share)
            for (position, parsed, _), rating, reason in zip(picks, ratings, reasons)]


def rate(llm: LLM, chats: Sequence[Chat]) -> list[int]:
    """Each chat's 1-5 rating of what its assistant turn chose: the most likely digit after "My rating, from 1 to
    5:"."""
    rating = [[*chat[:-1], {"role": "assistant", "content": f"{chat[-1]['content']} My rating, from 1 to 5:"}]
              for chat in chats]
    scores = llm.score_continuations(rating, [[f" {r}" for r in RATINGS]] * len(chats))
    return [RATINGS[_best(row)] for row in scores]


def choice_scores(llm: LLM, chats: Sequence[Chat], shown: Sequence[Sequence[str]]) -> list[list[float]]:
    """Each shown title's likelihood as the continuation of "I choose": the user's utility for it."""
    prefilled = [[*chat, {"role": "assistant", "content": "I choose"}] for chat in chats]
    return llm.score_continuations(prefilled, [[f" {title}" for title in titles] for titles in shown])


def _best(row: Sequence[float]) -> int:
    return max(range(len(row)), key=row.__getitem__)


def _pick_by_likelihood(llm, chats, shown, pick=None) -> list[tuple[int, bool, str]]:
    scores = choice_scores(llm, chats, shown)
    return [(position, True, "") for position in (pick(scores) if pick else map(_best, scores))]


def _pick_by_generation(llm, chats, shown, max_tokens) -> list[tuple[int, bool, str]]:
    prefilled = [[*chat, {"role": "assistant", "content": "["}] for chat in chats]
    answers = llm.generate(prefilled, Sampling(max_tokens=max_tokens, stop=("\n",)))
    picks = []
    for (completion,), titles in zip(answers, shown):
        position, rationale = parse_choice("[" + completion.text, titles)
        picks.append((0 if position is None else position, position is not None, rationale))
    return picks


def parse_choice(text: str, titles: Sequence[str]) -> tuple[int | None, str]:
    """(shown position or None, rationale) from an answer like "[2] like - I enjoy comedies"."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    label = re.match(r"\s*\[?\s*(\d{1,2})\s*[\]).:]", line)
    if label and 1 <= int(label.group(1)) <= len(titles):
        return int(label.group(1)) - 1, line[label.end():].strip(" -:")
    position = match_title(re.sub(r"^\W+", "", line.split(" - ")[0]), titles)
    return position, line


def rank_by_likelihood(llm: LLM, chats: Sequence[Chat], candidates: Sequence[Sequence[str]]) -> list[list[float]]:
    """Fast thinking as one scoring pass: each candidate's mean log-likelihood as the user's next choice."""
    prefilled = [[*chat, {"role": "assistant", "content": "The user will most likely choose"}] for chat in chats]
    return llm.score_continuations(prefilled, [[f" {title}" for title in titles] for titles in candidates])


def rank_by_generation(llm: LLM, chats: Sequence[Chat], candidates: Sequence[Sequence[str]], constrained: bool = True,
                       max_tokens: int = 96, think: bool = False) -> list[tuple[ParsedRanking, str]]:
    """Fast thinking as text: an optional `<think>` rationale, then the ranked list, parsed by the shared parser.

    `constrained` decodes the list under `agents.llm.constraints` (every answer a full ranking); the rationale, when
    asked for, is generated freely first and stopped at `</think>`.
    """
    rationales = [""] * len(chats)
    if think:
        opened = [[*chat, {"role": "assistant", "content": "<think>"}] for chat in chats]
        for b, (completion,) in enumerate(llm.generate(opened, Sampling(max_tokens=max_tokens, stop=("</think>",)))):
            rationales[b] = completion.text
    prefix = [f"<think>{r}</think>\n" if think else "" for r in rationales]
    answering = [[*chat, {"role": "assistant", "content": p}] if p else chat for chat, p in zip(chats, prefix)]
    labels = len(candidates[0]) if constrained else 0
    answers = llm.generate(answering, Sampling(max_tokens=4 * len(candidates[0]) + 8, labels=labels))
    return [(parse_ranking(completion.text, titles), f"{p}{completion.text}".strip())
            for (completion,), titles, p in zip(answers, candidates, prefix)]
