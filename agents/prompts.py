"""Prompt text, in one place: what the ranking agent and the simulated user are asked, and how they answer.

Candidates are shown with labels the shared parser reads back (`[1]`…`[20]`); item text comes from the catalogue.
Every prompt states its answer format on the last line, where a small model attends most.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from starec_env.agents.llm import Chat
from starec_env.agents.parsing import candidate_label

RANKER_SYSTEM = "You are a recommender system. You rank items for a user by how likely the user is to choose each next."
USER_SYSTEM = "You are simulating one real user of a recommendation service. Stay in character and be brief."
SUMMARY_HEAD = "Updated preferences:"


@dataclass(frozen=True)
class PromptConfig:
    """What the agent's prompts show and how long its answers may be: one config that the STARec policy,
    distillation, GRPO and validation share (a model is trained on the prompts it is evaluated with), and that the
    simulated users read with a shorter history."""

    history: int = field(default=20, metadata={"help": "most recent history items shown in every prompt"})
    evidence: bool = field(default=False, metadata={
        "help": "add the co-liked evidence line (how often each candidate is liked next to the user's recent items) "
                "to ranking prompts"})
    popular: int = field(default=0, metadata={
        "help": "with evidence, also name the N most popular candidates (for sparse catalogues such as Amazon CDs)"})
    tool: str = field(default="", metadata={
        "help": "add the line of a recommender tool's ten best candidates (any policy name, e.g. sasrec, bpr, pop; "
                "fitted on training data only) to ranking prompts"})
    think: bool = field(default=False, metadata={
        "help": "a generated ranking starts with a <think> rationale"})
    summary_tokens: int = field(default=48, metadata={"help": "token budget of a first preference summary"})
    reflection_tokens: int = field(default=64, metadata={"help": "token budget of a reflection and its new summary"})
    choice_tokens: int = field(default=24, metadata={"help": "token budget of a simulated user's rationale"})

    def __post_init__(self):
        if self.history < 0 or self.popular < 0:
            raise ValueError(f"history and popular must be >= 0, got history={self.history}, popular={self.popular}")


def describe_user(profile: str = "", summary: str = "", history: Sequence[str] = (), neighbours: str = "") -> list[str]:
    """The memory as prompt lines: profile, preference summary, recent history, and what similar users chose."""
    lines = [f"User profile: {profile}"] if profile else []
    if summary:
        lines.append(f"User preferences: {summary}")
    if history:
        lines.append("Recently liked, oldest first:")
        lines.extend(f"- {title}" for title in history)
    if neighbours:
        lines.append(f"Similar users recently chose: {neighbours}")
    return lines


def ranking_chat(history: Sequence[str], candidates: Sequence[str], profile: str = "", summary: str = "",
                 think: bool = False, style: str = "number", evidence: str = "", popular: str = "", tool: str = "",
                 tool_name: str = "") -> Chat:
    """Fast thinking of the ranker: order `candidates` for the user, optionally after lines of evidence about them.

    The evidence is one line in its own order (most co-liked first), not a number beside each candidate: copying
    labels from one ordered line is what a small fine-tuned model does well, while per-candidate numbers led it to
    write the same first labels for every user (docs/findings.md).
    """
    lines = describe_user(profile, summary, history)
    lines.append(f"Candidates ({len(candidates)}):")
    lines.extend(f"{candidate_label(i, style)} {title}" for i, title in enumerate(candidates))
    if evidence:
        lines.append(f"Co-liked with the user's recent items, most first: {evidence}")
    if popular:
        lines.append(f"Most popular with all users, most first: {popular}")
    if tool:
        lines.append(f"The {tool_name} recommender ranks first: {tool}")
    answer = "the labels of all candidates, best first, as a list like [3, 1, 2, ...]"
    lines.append(f"First explain briefly inside <think></think>, then give {answer}." if think
                 else f"Answer with {answer}.")
    return [{"role": "system", "content": RANKER_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def next_item_chat(history: Sequence[str], profile: str = "", summary: str = "", evidence: Sequence[str] = ()) -> Chat:
    """Fast thinking by likelihood: who the user is, and no candidate list — each candidate is scored as the answer.

    Listing the candidates first lets a small model copy from the list instead of judging the user, which ranks
    far worse (docs/findings.md).
    """
    lines = describe_user(profile, summary, history)
    if evidence:
        lines.append("Often liked next to this user's recent items:")
        lines.extend(f"- {line}" for line in evidence)
    lines.append("Which item will this user choose next?")
    return [{"role": "system", "content": RANKER_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def choice_chat(history: Sequence[str], shown: Sequence[str], profile: str = "", summary: str = "",
                neighbours: str = "") -> Chat:
    """Fast thinking of the simulated user: pick one of the recommended items at once, say if you like it, and why."""
    lines = describe_user(profile, summary, history, neighbours)
    lines.append("You are recommended:")
    lines.extend(f"{candidate_label(i)} {title}" for i, title in enumerate(shown))
    lines.append("Which one do you choose? Answer in one line: the label, like or dislike, and a short reason, "
                 "e.g. [2] like - <your reason>.")
    return [{"role": "system", "content": USER_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def next_choice_chat(history: Sequence[str], profile: str = "", summary: str = "") -> Chat:
    """The simulated user asked what it would choose next, with no list: each candidate is scored as its answer
    (its ordering of a whole candidate set, where listing 20 items would cost more than the user's description)."""
    lines = describe_user(profile, summary, history)
    lines.append("Which item do you choose next?")
    return [{"role": "system", "content": USER_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def summary_chat(history: Sequence[str], profile: str = "") -> Chat:
    """Slow thinking, first pass: write the preference summary from the interaction history."""
    lines = describe_user(profile, "", history)
    lines.append("Describe this user's tastes in two short sentences (genres, eras, moods they like).")
    return [{"role": "system", "content": USER_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def reflection_chat(summary: str, history: Sequence[str], target: str, predicted: str, actual: str,
                    profile: str = "") -> Chat:
    """Slow thinking on a mismatch: read memory, target, prediction and real feedback; rewrite the summary."""
    lines = describe_user(profile, summary, history)
    lines += [f"Target item: {target}", f"Predicted behaviour: {predicted}", f"Real behaviour: {actual}",
              "Think step by step about why the user really chose the target item and not the prediction, in one "
              f"sentence starting with 'Reflection:'. Then write a new line starting with '{SUMMARY_HEAD}' and two "
              "short sentences describing the user's tastes."]
    return [{"role": "system", "content": USER_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


LLMRANK_STYLES = ("sequential", "recency", "icl")


def llmrank_chat(history: Sequence[str], candidates: Sequence[str], style: str = "recency") -> Chat:
    """LLMRank's zero-shot prompts (Hou et al., ECIR 2024): sequential, recency-focused, in-context learning."""
    if style not in LLMRANK_STYLES:
        raise ValueError(f"unknown LLMRank prompt {style!r}; expected one of {LLMRANK_STYLES}")
    listed = "\n".join(f"{i + 1}. {title}" for i, title in enumerate(history))
    if style == "icl" and len(history) > 1:
        opening = ("If I've liked the following items in the past in order:\n"
                   + "\n".join(f"{i + 1}. {t}" for i, t in enumerate(history[:-1]))
                   + f"\nthen you should recommend {history[-1]} to me, and now that I've liked {history[-1]}, ")
    else:
        opening = f"I've liked the following items in the past in order:\n{listed}\n"
    lines = [opening + f"there are {len(candidates)} candidate items that I can consume next:"]
    lines.extend(f"{candidate_label(i)} {title}" for i, title in enumerate(candidates))
    if style == "recency" and history:
        lines.append(f"Note that my most recently liked item is {history[-1]}.")
    lines.append(f"Please rank these {len(candidates)} items by how likely I am to like them next, according to my "
                 "history. Answer with the labels of all candidates, best first, as a list like [3, 1, 2, ...].")
    return [{"role": "user", "content": "\n".join(lines)}]


def agentcf_item_chat(item: str, user_summary: str, chosen: bool) -> Chat:
    """AgentCF's item-side reflection: the item agent rewrites its description from one user's choice."""
    verdict = "chose" if chosen else "passed over"
    return [{"role": "system", "content": "You describe items for a recommender system, briefly."},
            {"role": "user", "content": f"Item: {item}\nA user described as: {user_summary}\nThat user {verdict} this "
                                        "item. In one sentence, describe what kind of person this item suits."},
            {"role": "assistant", "content": "It suits people who"}]
