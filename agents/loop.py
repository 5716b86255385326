"""The STARec feedback loop, written once: summarise → rank → compare with the real choice → reflect → rewrite.

Every user of the loop — the simulated users (`agents.society`), the STARec and AgentCF policies and the trainers'
case generation — brings its own fast thinking (a `Decide`: how it predicts the user's choice in a round) and runs
the same slow thinking around it: a first preference summary written from the history, and, where the prediction
misses what the user really chose, a reflection on the difference that rewrites the summary and is logged in the
memory (`Memory.record_reflection`). The ranking prompts the policies and trainers share are built here too, from
one `PromptConfig`, so a model is trained and evaluated on the same prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from starec_env.agents import fast, prompts, slow
from starec_env.agents.catalogue import Catalogue
from starec_env.agents.llm import LLM, Chat
from starec_env.agents.memory import Memory
from starec_env.agents.prompts import PromptConfig

REFLECT_WHEN = ("mismatch", "always", "never")


@dataclass(frozen=True)
class Round:
    """One round: predict which of `candidates` the user picks, knowing their past `history` (oldest first).
    `target` is what they really chose; None where it is unknown (a held-out case being scored)."""

    history: Sequence[int]
    candidates: Sequence[int]
    target: int | None = None


@dataclass(frozen=True)
class Decision:
    """Fast thinking's prediction for a round: the item it expects the user to choose, and the prediction in the
    words the reflection prompt shows (e.g. "chose Heat (1995; Action)")."""

    pick: int
    said: str


Decide = Callable[[Sequence[Memory], Sequence[Round]], list[Decision]]


class FeedbackLoop:
    """Slow thinking around any fast thinking, batched over users; `describe` names items in reflection prompts
    (default: the catalogue's text; AgentCF shows what its item agents learned)."""

    def __init__(self, llm: LLM | None, catalogue: Catalogue, prompt: PromptConfig = PromptConfig(),
                 describe: Callable[[int], str] | None = None):
        self.llm, self.catalogue, self.prompt = llm, catalogue, prompt
        self.describe = describe or catalogue.item_text

    # ------------------------------------------------------------------------------------------- the loop
    def summarize(self, memories: Sequence[Memory], histories: Sequence[Sequence[int]]) -> None:
        """Slow thinking, first pass: each memory's summary written from the given history."""
        for memory, summary in zip(memories, self.first_summaries(histories, [m.profile for m in memories])):
            memory.summary = summary

    def first_summaries(self, histories: Sequence[Sequence[int]], profiles: Sequence[str]) -> list[str]:
        chats = [prompts.summary_chat(self.recent(history), profile) for history, profile in zip(histories, profiles)]
        return slow.summarize(self.llm, chats, self.prompt.summary_tokens) if chats else []

    def step(self, memories: Sequence[Memory], rounds: Sequence[Round], decide: Decide,
             reflect: str = "mismatch") -> list[tuple[Decision, slow.Reflection | None]]:
        """One round for every memory: fast thinking decides, the decision is compared with the real choice, and
        slow thinking reflects on a miss (`reflect="mismatch"`), on every round (`"always"`) or never; a round
        without a real choice (target None) is never reflected on."""
        if reflect not in REFLECT_WHEN:
            raise ValueError(f"reflect must be one of {REFLECT_WHEN}, got {reflect!r}")
        decisions = decide(memories, rounds)
        todo = [i for i, (r, d) in enumerate(zip(rounds, decisions)) if r.target is not None  # a real choice to
                and (reflect == "always" or (reflect == "mismatch" and d.pick != r.target))]  # compare with
        reflections: list[slow.Reflection | None] = [None] * len(rounds)
        done = self.reflect([memories[i] for i in todo], [rounds[i] for i in todo], [decisions[i] for i in todo])
        for i, reflection in zip(todo, done):
            reflections[i] = reflection
        return list(zip(decisions, reflections))

    def reflect(self, memories: Sequence[Memory], rounds: Sequence[Round],
                decisions: Sequence[Decision]) -> list[slow.Reflection]:
        """Reflect on each decision against the round's real choice, rewrite the summaries, log the reflections."""
        if not memories:
            return []
        chats = [self.reflection_chat(m, r, d) for m, r, d in zip(memories, rounds, decisions)]
        results = slow.reflect(self.llm, chats, [m.summary for m in memories],
                               [self.catalogue.item_text(r.target) for r in rounds], self.prompt.reflection_tokens)
        for memory, round_, decision, result in zip(memories, rounds, decisions, results):
            memory.record_reflection(len(round_.history), round_.target, decision.pick, result)
        return results

    # ------------------------------------------------------------------------------------------- prompts
    def reflection_chat(self, memory: Memory, round_: Round, decision: Decision) -> Chat:
        """The paper's four inputs: current memory, the target item, the prediction and the real behaviour."""
        target = self.describe(round_.target)
        return prompts.reflection_chat(memory.summary, self.recent(round_.history), target, decision.said,
                                       f"chose {target}", memory.profile)

    def ranking_chat(self, memory: Memory, round_: Round, **evidence: str) -> Chat:
        """Generative fast thinking: the candidates listed with labels, and the evidence lines when given
        (`Evidence.lines()`: `evidence`, `popular`, `tool`, `tool_name`)."""
        return prompts.ranking_chat(self.recent(round_.history), self.catalogue.titles(round_.candidates),
                                    memory.profile, memory.summary, think=self.prompt.think, **evidence)

    def rank_by_likelihood(self, memories: Sequence[Memory], rounds: Sequence[Round],
                           named: Sequence[Sequence[str]] | None = None) -> list[np.ndarray]:
        """Fast thinking as one scoring pass: each candidate's likelihood as the user's next item, after a prompt
        that describes the user (and `named` evidence lines) but lists no candidates."""
        named = named or [()] * len(memories)
        chats = [prompts.next_item_chat(self.recent(r.history), m.profile, m.summary, n)
                 for m, r, n in zip(memories, rounds, named)]
        scores = fast.rank_by_likelihood(self.llm, chats, [self.catalogue.titles(r.candidates) for r in rounds])
        return [np.asarray(row) for row in scores]

    def recent(self, history: Sequence[int]) -> list[str]:
        """The last `prompt.history` items as prompt text."""
        return self.catalogue.titles(history[-self.prompt.history:]) if self.prompt.history else []

    # ------------------------------------------------------------------------------------------- decisions
    def top_pick(self, round_: Round, scores) -> Decision:
        """The decision a ranking implies: its best-scored candidate (ties: the earlier one)."""
        pick = int(round_.candidates[int(np.argmax(scores))])
        return Decision(pick, f"chose {self.describe(pick)}")

    def likelihood_decide(self, memories: Sequence[Memory], rounds: Sequence[Round]) -> list[Decision]:
        """`rank_by_likelihood`'s top candidate as the decision."""
        return [self.top_pick(r, s) for r, s in zip(rounds, self.rank_by_likelihood(memories, rounds))]
