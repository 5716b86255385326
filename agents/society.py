"""A population of simulated users sharing one batched LLM and a social graph.

Every user agent runs the same cognition, the feedback loop of `agents.loop`: fast thinking picks among the
recommendations (`agents.fast.choose`), slow thinking writes the preference summary and, after a wrong prediction,
rewrites it. All agents of a step go to the LLM in one call, which is where
simulation speed comes from. Users are linked in a `networkx` graph by co-interaction similarity (Jaccard over
training items); with `neighbours > 0` an agent reads its nearest neighbours' latest choices and summary before
choosing — a configurable collaborative influence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import networkx as nx
import numpy as np

from starec_env.agents import fast, prompts, slow
from starec_env.agents.catalogue import Catalogue
from starec_env.agents.grounded import Grounding
from starec_env.agents.llm import LLM, load_llm
from starec_env.agents.loop import REFLECT_WHEN, Decision, FeedbackLoop, Round
from starec_env.agents.memory import Memory, load_memories, save_memories
from starec_env.agents.prompts import PromptConfig


@dataclass(frozen=True)
class AgentConfig:
    """How a simulated user behaves; `prompt` sets what its prompts show (a shorter history than the ranker's)."""

    choice: str = field(default="likelihood", metadata={"help": "fast thinking: see agents.fast"})
    rationale: bool = field(default=False, metadata={
        "help": "write a one-line rationale for each pick (one decode per step); off: pick and rating only"})
    reflect: str = field(default="mismatch", metadata={
        "help": "slow thinking after a step: on a wrong prediction, always, or never"})
    shown: int = field(default=5, metadata={"help": "the user sees the policy's top `shown` items"})
    shuffle_shown: bool = field(default=True, metadata={
        "help": "show them in random order, so a model's position bias cannot favour the policy's top pick"})
    carry_memory: bool = field(default=False, metadata={
        "help": "a user's summary carries over into their next episode (a learning society); off: every episode "
                "starts from the user's first summary, so the same seed gives the same episode"})
    neighbours: int = field(default=0, metadata={"help": "social influence: graph neighbours the user reads"})
    graph_degree: int = field(default=10, metadata={"help": "edges kept per user when the graph is built"})
    prompt: PromptConfig = PromptConfig(history=10)

    def __post_init__(self):
        if isinstance(self.prompt, dict):  # from JSON or an env's `agent={...}` option
            object.__setattr__(self, "prompt", PromptConfig(**self.prompt))
        if self.choice not in fast.CHOICE_MODES:
            raise ValueError(f"choice must be one of {fast.CHOICE_MODES}, got {self.choice!r}")
        if self.reflect not in REFLECT_WHEN:
            raise ValueError(f"reflect must be one of {REFLECT_WHEN}, got {self.reflect!r}")


@dataclass(frozen=True)
class FeedbackRequest:
    """What an environment asks of a user: react to `shown` (in the policy's order) given the logged `target`, or,
    with no target (a session), with the pick becoming the user's next history item."""

    user: int
    shown: Sequence[int]
    target: int | None
    seed: int  # for the display order of this step


@dataclass
class Feedback:
    item: int  # the item the simulated user picked
    rank: int  # its 1-based place in the policy's ranking
    rating: int  # 1-5, the user's own rating of the pick
    liked: bool  # rating >= agents.fast.LIKED_FROM
    rationale: str  # "" unless AgentConfig.rationale
    parsed: bool
    matched: bool  # the pick equals the user's real (logged) next item
    reflection: slow.Reflection | None
    memory: dict = field(repr=False)  # the memory after the step
    tokens: int = 0


class Population:
    """The simulated users of a catalogue; with `grounding` (`agents.grounded.Grounding`) each picks from a
    softmax over the LLM's and a collaborative prior's scores, seeded per step, instead of the LLM's top item."""

    def __init__(self, catalogue: Catalogue, llm: LLM | str | None = None, config: AgentConfig = AgentConfig(),
                 grounding: Grounding | None = None):
        if grounding is not None and config.choice != "likelihood":
            raise ValueError("a grounded choice combines likelihood scores: it needs choice='likelihood'")
        self.catalogue, self.config, self.grounding = catalogue, config, grounding
        self.llm = llm if isinstance(llm, LLM) else load_llm(llm)
        self.loop = FeedbackLoop(self.llm, catalogue, config.prompt)
        self.memories: dict[int, Memory] = {}
        self.first_summaries: dict[str, str] = {}  # "user:history length" → the summary slow thinking first wrote
        self.counts = {"steps": 0, "unparsed_choices": 0, "reflections": 0, "reflection_unstructured": 0,
                       "reflection_failed": 0, "tokens": 0}
        self._graph: nx.Graph | None = None

    # ------------------------------------------------------------------------------------------------ memory
    def start(self, users: Sequence[int], histories: Sequence[Sequence[int]]) -> list[Memory]:
        """Place each user at the start of an episode; write the first summaries still missing in one call."""
        keys = [f"{int(user)}:{len(history)}" for user, history in zip(users, histories)]
        missing = {key: (int(user), history) for key, user, history in zip(keys, users, histories)
                   if key not in self.first_summaries}
        if missing:
            written = self.loop.first_summaries([history for _, history in missing.values()],
                                                [self.catalogue.profiles[user] for user, _ in missing.values()])
            self.first_summaries.update(zip(missing, written))
        memories = []
        for key, user, history in zip(keys, users, histories):
            carried = self.memories.get(int(user)) if self.config.carry_memory else None
            memory = carried or Memory(int(user), self.catalogue.profiles[int(user)],
                                       summary=self.first_summaries[key])
            memory.history = [int(i) for i in history]
            self.memories[int(user)] = memory
            memories.append(memory)
        return memories

    def save(self, path: str | Path) -> Path:
        return save_memories(self.memories.values(), path, dataset=self.catalogue.dataset, config=asdict(self.config),
                             first_summaries=self.first_summaries)

    def load(self, path: str | Path) -> Population:
        memories, metadata = load_memories(path)
        if metadata.get("dataset") != self.catalogue.dataset:
            raise ValueError(f"{path}: memories of dataset {metadata.get('dataset')!r}, "
                             f"but this population simulates {self.catalogue.dataset!r}")
        self.memories = {m.user: m for m in memories}
        self.first_summaries = dict(metadata.get("first_summaries", {}))
        return self

    # ------------------------------------------------------------------------------------------------ one step
    def respond(self, requests: Sequence[FeedbackRequest]) -> list[Feedback]:
        """Fast thinking for every request in one call, then slow thinking for those that need it in another."""
        memories = [self.memories[r.user] for r in requests]
        rounds = [Round(list(m.history), r.shown, r.target) for m, r in zip(memories, requests)]
        choices: list[fast.Choice] = []

        def choose(memories: Sequence[Memory], rounds: Sequence[Round]) -> list[Decision]:
            """The user's pick among the shown items, in display order; the rationale is part of the prediction."""
            orders = [self._display_order(r) for r in requests]
            shown_titles = [self.catalogue.titles([r.shown[i] for i in order]) for r, order in zip(requests, orders)]
            chats = [prompts.choice_chat(self.loop.recent(m.history), titles, m.profile, m.summary,
                                         self._neighbour_text(m.user)) for m, titles in zip(memories, shown_titles)]
            shown_items = [[r.shown[i] for i in order] for r, order in zip(requests, orders)]
            pick = None if self.grounding is None else lambda scores: self.grounding.pick(
                scores, [r.user for r in requests], [m.history for m in memories], shown_items,
                [r.seed for r in requests])
            choices.extend(fast.choose(self.llm, chats, shown_titles, self.config.choice,
                                       self.config.prompt.choice_tokens, self.config.rationale, pick))
            picks = [items[c.position] for items, c in zip(shown_items, choices)]
            return [Decision(int(item), _said(self.catalogue.item_text(item), c)) for item, c in zip(picks, choices)]

        steps = self.loop.step(memories, rounds, choose, self.config.reflect)
        feedback = []
        for request, memory, choice, (decision, reflection) in zip(requests, memories, choices, steps):
            # a walk follows the user's real interactions; a session, the user's own picks
            memory.remember(decision.pick if request.target is None else request.target)
            feedback.append(Feedback(decision.pick, list(request.shown).index(decision.pick) + 1, choice.rating,
                                     choice.liked, choice.rationale, choice.parsed, decision.pick == request.target,
                                     reflection, memory.to_dict(),
                                     choice.tokens + (reflection.tokens if reflection else 0)))
        self._count(feedback)
        return feedback

    def _count(self, feedback: list[Feedback]) -> None:
        self.counts["steps"] += len(feedback)
        self.counts["unparsed_choices"] += sum(not f.parsed for f in feedback)
        self.counts["tokens"] += sum(f.tokens for f in feedback)
        for f in feedback:
            if f.reflection:
                self.counts["reflections"] += 1
                if f.reflection.status != "ok":
                    self.counts[f"reflection_{f.reflection.status}"] += 1

    # ------------------------------------------------------------------------------------------------ helpers
    def _display_order(self, request: FeedbackRequest) -> list[int]:
        count = min(self.config.shown, len(request.shown))
        order = list(range(count))
        if self.config.shuffle_shown:
            np.random.default_rng(request.seed).shuffle(order)
        return order

    @property
    def graph(self) -> nx.Graph:
        """Users linked to their `graph_degree` most similar users (Jaccard over training items), built once."""
        if self._graph is None:
            self._graph = similarity_graph(*self.catalogue.training_sequences(), self.catalogue.n_items,
                                           self.config.graph_degree)
        return self._graph

    def _neighbour_text(self, user: int) -> str:
        if not self.config.neighbours:
            return ""
        ranked = sorted(self.graph[user].items(), key=lambda edge: -edge[1]["weight"])[: self.config.neighbours]
        known = [self.memories[n] for n, _ in ranked if n in self.memories and self.memories[n].history]
        text = "; ".join(self.catalogue.item_text(m.history[-1]) for m in known)
        return f"{text}. One of them: {known[0].summary}" if known and known[0].summary else text


def _said(item: str, choice: fast.Choice) -> str:
    """The simulated user's decision as the reflection prompt shows it."""
    verdict = f"chose {item} (rated {choice.rating}/5, {'liked' if choice.liked else 'disliked'})"
    return f"{verdict}, {choice.rationale}" if choice.rationale else verdict


def similarity_graph(users: np.ndarray, sequences: Sequence[np.ndarray], n_items: int, degree: int = 10) -> nx.Graph:
    """Co-interaction graph over `users` from their training sequences (held-out items never leak into it)."""
    matrix = np.zeros((len(users), n_items), dtype=np.float32)
    for row, sequence in enumerate(sequences):
        matrix[row, sequence] = 1.0
    overlap = matrix @ matrix.T
    sizes = matrix.sum(1)
    jaccard = overlap / np.maximum(sizes[:, None] + sizes[None, :] - overlap, 1.0)
    np.fill_diagonal(jaccard, 0.0)
    graph = nx.Graph()
    graph.add_nodes_from(int(u) for u in users)
    for row, user in enumerate(users):
        for other in np.argsort(-jaccard[row])[:degree]:
            if jaccard[row, other] > 0:
                graph.add_edge(int(user), int(users[other]), weight=float(jaccard[row, other]))
    return graph
