"""Slow thinking: deliberate, reflect on a wrong prediction, and rewrite the preference summary.

`summarize` writes the first summary from the history. `reflect` reads the four things the paper names — current
memory, the target item, the prediction and the real feedback — reasons about the difference, and writes a new
summary. The answer is prefilled with "Reflection: the user chose <target> because", so even a small model reasons
about the real choice. A model that then ignores the requested "Updated preferences:" line has its reflection merged
into the summary (first sentence of the old one + the reflection; status "unstructured"); an empty answer keeps the
old summary (status "failed"); both are counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from starec_env.agents.llm import LLM, Chat, Sampling
from starec_env.agents.prompts import SUMMARY_HEAD

MAX_SUMMARY_CHARS = 400  # keeps every later prompt bounded, whatever the model writes
ALREADY_JOINED = set("'’,.;:!?")  # a continuation starting with one of these attaches to the prefill without a space


@dataclass(frozen=True)
class Reflection:
    reflection: str
    summary: str  # the rewritten preference summary (the old one when status is "failed")
    status: str  # "ok", "unstructured" or "failed"
    tokens: int


def summarize(llm: LLM, chats: Sequence[Chat], max_tokens: int = 48) -> list[str]:
    """First preference summaries, one per `prompts.summary_chat`, in one batched call."""
    prefilled = [[*chat, {"role": "assistant", "content": "This user"}] for chat in chats]
    with llm.phase("summary"):
        answers = llm.generate(prefilled, Sampling(max_tokens=max_tokens, stop=("\n\n",)))
    return [clip(continued("This user", completion.text)) for (completion,) in answers]


def reflect(llm: LLM, chats: Sequence[Chat], old_summaries: Sequence[str], targets: Sequence[str],
            max_tokens: int = 64) -> list[Reflection]:
    """One reflection per `prompts.reflection_chat` (about the real choice `targets[b]`), batched."""
    openings = [f"the user chose {target} because" for target in targets]
    prefilled = [[*chat, {"role": "assistant", "content": f"Reflection: {opening}"}]
                 for chat, opening in zip(chats, openings)]
    with llm.phase("reflection"):
        answers = llm.generate(prefilled, Sampling(max_tokens=max_tokens, stop=("\n\n",)))
    return [read_reflection(completion.text, old, opening, completion.prompt_tokens + completion.completion_tokens)
            for (completion,), old, opening in zip(answers, old_summaries, openings)]


def read_reflection(text: str, old_summary: str, opening: str = "", tokens: int = 0) -> Reflection:
    """Split "reflection … Updated preferences: summary"; fall back as the module docstring says."""
    text = text.strip()
    if SUMMARY_HEAD.lower() in text.lower():
        at = text.lower().index(SUMMARY_HEAD.lower())
        reflection, summary = f"{opening} {text[:at]}".strip(), clip(text[at + len(SUMMARY_HEAD):])
        if summary:
            return Reflection(reflection, summary, "ok", tokens)
    if text:
        reflection = f"{opening} {first_sentence(text)}".strip()
        merged = f"{first_sentence(old_summary)} Recently {reflection[0].lower()}{reflection[1:]}"
        return Reflection(reflection, clip(merged), "unstructured", tokens)
    return Reflection("", old_summary, "failed", tokens)


def continued(prefill: str, text: str) -> str:
    """The prefilled opening and the model's continuation as one text: "This user" + "'s taste…" has no space."""
    text = text.strip()
    return f"{prefill}{'' if text[:1] in ALREADY_JOINED else ' '}{text}"


def first_sentence(text: str) -> str:
    text = " ".join(text.split())
    match = re.search(r"[.!?](\s|$)", text)
    return text[: match.end()].strip() if match else text


def clip(summary: str) -> str:
    """At most MAX_SUMMARY_CHARS, cut at a sentence end where possible, on one line."""
    summary = " ".join(summary.split())
    if len(summary) <= MAX_SUMMARY_CHARS:
        return summary
    cut = summary[:MAX_SUMMARY_CHARS]
    ends = [m.end() for m in re.finditer(r"[.!?](\s|$)", cut)]
    return cut[: ends[-1]].strip() if ends else cut.rstrip() + "…"
