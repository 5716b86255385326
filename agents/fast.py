"""Fast thinking: an immediate answer in one short LLM call — the user's pick, or the ranker's ordering.

Two ways to pick. `likelihood` scores every shown title as the continuation of "I choose" over one cached prompt
(a 135M model cannot follow an answer format, but its likelihoods carry signal) and then writes a one-line rationale
for the pick. `generate` asks for "[label] like/dislike - reason" and parses it; an answer naming no shown item
falls back to the first shown item and is counted as unparsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from starec_env.agents.llm import LLM, Chat, Sampling
from starec_env.agents.parsing import ParsedRanking, candidate_label, match_title, parse_ranking

CHOICE_MODES = ("likelihood", "generate")
DISLIKE = re.compile(r"\b(dislike|don'?t like|do not like|not like|hate|boring)\b", re.I)


@dataclass(frozen=True)
class Choice:
    position: int  # index into the shown items
    liked: bool
    rationale: str
    parsed: bool  # False: the answer named no shown item and the documented fallback (first shown) was used
    tokens: int  # prompt + completion tokens spent


def choose(llm: LLM, chats: Sequence[Chat], shown: Sequence[Sequence[str]], mode: str = "likelihood",
           max_tokens: int = 24) -> list[Choice]:
    """For each chat (a `prompts.choice_chat`), the user's pick among `shown[b]`, batched over chats."""
    if mode == "likelihood":
        return _choose_by_likelihood(llm, chats, shown, max_tokens)
    if mode == "generate":
        return _choose_by_generation(llm, chats, shown, max_tokens)
    raise ValueError(f"unknown choice mode {mode!r}; expected one of {CHOICE_MODES}")


def _choose_by_likelihood(llm, chats, shown, max_tokens) -> list[Choice]:
    prefilled = [[*chat, {"role": "assistant", "content": "I choose"}] for chat in chats]
    scores = llm.score_continuations(prefilled, [[f" {title}" for title in titles] for titles in shown])
    picks = [max(range(len(row)), key=row.__getitem__) for row in scores]
    because = [[*chat, {"role": "assistant", "content": f"I choose {candidate_label(pick)} {titles[pick]} because"}]
               for chat, pick, titles in zip(chats, picks, shown)]
    answers = llm.generate(because, Sampling(max_tokens=max_tokens, stop=("\n",)))
    return [Choice(pick, not DISLIKE.search(reason.text), f"because {reason.text}", True,
                   reason.prompt_tokens + reason.completion_tokens) for pick, (reason,) in zip(picks, answers)]


def _choose_by_generation(llm, chats, shown, max_tokens) -> list[Choice]:
    prefilled = [[*chat, {"role": "assistant", "content": "["}] for chat in chats]
    answers = llm.generate(prefilled, Sampling(max_tokens=max_tokens, stop=("\n",)))
    choices = []
    for (completion,), titles in zip(answers, shown):
        position, rationale = parse_choice("[" + completion.text, titles)
        choices.append(Choice(0 if position is None else position, not DISLIKE.search(rationale), rationale,
                              position is not None, completion.prompt_tokens + completion.completion_tokens))
    return choices


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
