"""Prompt text, in one place: what the ranking agent and the simulated user are asked.

Candidates are shown with labels the shared parser reads back (`[1]`…`[20]`); item text comes from the catalogue.
"""

from __future__ import annotations

from typing import Sequence

from agents.llm import Chat
from agents.parsing import candidate_label

SYSTEM = "You are a recommender system. You rank items for a user by how likely the user is to choose each next."


def ranking_chat(history: Sequence[str], candidates: Sequence[str], profile: str = "", summary: str = "",
                 think: bool = False, style: str = "number") -> Chat:
    """Fast thinking: rank `candidates` for a user described by profile, preference summary and recent history."""
    lines = []
    if profile:
        lines.append(f"User profile: {profile}")
    if summary:
        lines.append(f"User preferences: {summary}")
    if history:
        lines.append("Recently liked, oldest first:")
        lines.extend(f"- {title}" for title in history)
    lines.append(f"Candidates ({len(candidates)}):")
    lines.extend(f"{candidate_label(i, style)} {title}" for i, title in enumerate(candidates))
    answer = "the labels of all candidates, best first, as a list like [3, 1, 2, ...]"
    lines.append(f"First explain briefly inside <think></think>, then give {answer}." if think
                 else f"Answer with {answer}.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(lines)}]
