"""Structured evidence for a small ranker: how often each candidate is liked next to the user's recent items.

The interaction graph links two items each time some user liked them one right after the other (either order); a
candidate's evidence is the summed weight of its edges to the user's last `window` items. Sorting by it alone
(`CoLikedPolicy`, the row an evidence-reading LLM must beat to add anything) is a strong item-to-item recommender,
and a model can read it off the prompt: something a 135M model can be taught to use. A training case asks about a
transition that is itself in the graph, so `counts(..., without_user=u)` leaves out user u's own edges: the evidence
is then what other users say, as it is for a held-out case. `EvidenceSource` gathers what a `PromptConfig` asks a
ranking prompt to say: these counts, the most popular candidates, and a tool's ranking (`policies.tools`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import networkx as nx
import numpy as np

from starec_env.agents.prompts import PromptConfig
from starec_env.policies.base import Policy, PopularityPolicy
from starec_env.policies.tools import Tool
from starec_env.protocol import Cases, TrainView


@dataclass(frozen=True)
class Evidence:
    """What a ranking prompt says about its candidates, and the order it implies."""

    counts: list[int]  # per candidate, its co-liked count; empty without co-liked evidence
    popular: list[int] = field(default_factory=list)  # positions of the most popular candidates, most first
    tool: list[int] = field(default_factory=list)  # positions of the tool's best candidates, best first
    tool_name: str = ""

    def order(self) -> list[int]:
        """Every position: co-liked by count, then the popular ones, then the rest as listed."""
        first = most_co_liked(self.counts, len(self.counts))
        first += [i for i in self.popular if i not in first]
        return first + [i for i in range(len(self.counts)) if i not in first]

    def line(self) -> str:
        """The co-liked line: the ten most co-liked candidates' labels with their counts."""
        return describe(self.counts)

    def popular_line(self) -> str:
        return labels(self.popular)

    def tool_line(self) -> str:
        return labels(self.tool)

    def lines(self) -> dict[str, str]:
        """The ranking prompt's evidence lines, as `FeedbackLoop.ranking_chat` takes them."""
        return {"evidence": self.line(), "popular": self.popular_line(), "tool": self.tool_line(),
                "tool_name": self.tool_name}


class EvidenceSource:
    """The evidence a `PromptConfig` asks for: co-liked counts (`evidence`, with `popular`) and a tool's ranking
    (`tool`, fitted with `threads` torch threads), from the training view `train` only."""

    def __init__(self, train: TrainView, prompt: PromptConfig, seed: int = 0, threads: int = 2):
        self.graph = CoLikedGraph(train, popular=prompt.popular) if prompt.evidence else None
        self.tool = Tool(prompt.tool, train, seed, threads=threads) if prompt.tool else None

    @classmethod
    def of(cls, train: TrainView, prompt: PromptConfig, seed: int = 0) -> EvidenceSource | None:
        """The source, or None where the prompt shows no evidence."""
        return cls(train, prompt, seed) if prompt.evidence or prompt.tool else None

    def evidence(self, users: Sequence[int], histories: Sequence[Sequence[int]],
                 candidates: Sequence[Sequence[int]], train_rounds: int = 0) -> list[Evidence]:
        """Per case, its evidence. `train_rounds` > 0: the cases are of the env's `train` split (among each user's
        last `train_rounds` training interactions), so the counts leave out the user's own edges and the tool is the
        fit that never saw those interactions."""
        found = [Evidence([]) for _ in users] if self.graph is None else [
            self.graph.evidence(h, c, without_user=int(u) if train_rounds else None)
            for u, h, c in zip(users, histories, candidates)]
        if self.tool is None:
            return found
        orders = self.tool.orders(users, histories, candidates, held_out=train_rounds)
        return [replace(e, tool=order, tool_name=self.tool.name) for e, order in zip(found, orders)]


class CoLikedGraph:
    """The interaction graph of a training view, item popularity, and each user's own sequence (left out of a
    training case)."""

    def __init__(self, train: TrainView, window: int = 10, popular: int = 0):
        self.window, self.popular = window, popular
        self.graph = nx.Graph()
        self.graph.add_weighted_edges_from((a, b, n) for (a, b), n in _edges(train.sequences).items())
        self.sequences = {int(user): sequence for user, sequence in zip(train.users, train.sequences)}
        self.popularity = PopularityPolicy().fit(train).counts  # the Pop row's counts, not a second copy

    def evidence(self, history: Sequence[int], candidates: Sequence[int], without_user: int | None = None) -> Evidence:
        """The co-liked counts and the `popular` most popular candidates, both from other users than `without_user`."""
        counts = self.counts(history, candidates, without_user)
        if not self.popular:
            return Evidence(counts)
        own = Counter(int(item) for item in self.sequences.get(without_user, ()))
        liked = [int(self.popularity[int(c)]) - own[int(c)] for c in candidates]
        return Evidence(counts, sorted(range(len(liked)), key=lambda i: -liked[i])[:self.popular])

    def counts(self, history: Sequence[int], candidates: Iterable[int], without_user: int | None = None) -> list[int]:
        """Per candidate, its edge weight to the last `window` history items (minus `without_user`'s own edges)."""
        own = _edges([self.sequences.get(without_user, ())]) if without_user is not None else Counter()
        recent = [int(item) for item in history[-self.window:]]
        return [sum(self._weight(item, int(c)) - own[_edge(item, int(c))] for item in recent) for c in candidates]

    def _weight(self, a: int, b: int) -> int:
        return self.graph.get_edge_data(a, b, {"weight": 0})["weight"]


class CoLikedPolicy(Policy):
    """Ranks by the evidence alone, in the order a prompt's evidence implies: an item-to-item neighbourhood
    recommender over the last `window` items, then (with `popular`) the most popular candidates."""

    def __init__(self, window: int = 10, popular: int = 0):
        self.window, self.popular, self.graph = window, popular, None
        self.name = "co-liked" + (f"+pop{popular}" if popular else "")

    def fit(self, train: TrainView) -> CoLikedPolicy:
        self.graph = CoLikedGraph(train, self.window, self.popular)
        return self

    def score(self, cases: Cases) -> np.ndarray:
        if self.graph is None:
            raise RuntimeError("CoLikedPolicy.score called before fit")
        return np.array([_scores(self.graph.evidence(h, c).order()) for h, c in zip(cases.histories, cases.candidates)])


def describe(counts: Sequence[int], top: int = 10) -> str:
    """The evidence line of a ranking prompt: the `top` most co-liked candidates' labels with their counts."""
    if not counts:
        return ""
    return ", ".join(f"[{i + 1}] {counts[i]} times" for i in most_co_liked(counts, top)) or "none"


def labels(positions: Sequence[int]) -> str:
    return ", ".join(f"[{i + 1}]" for i in positions)


def most_co_liked(counts: Sequence[int], top: int = 5) -> list[int]:
    """Positions of the `top` candidates with the highest non-zero counts, highest first (ties: listed order)."""
    return sorted((i for i, n in enumerate(counts) if n), key=lambda i: -counts[i])[:top]


def _scores(order: list[int]) -> np.ndarray:
    """Scores that rank positions in `order`, first highest."""
    scores = np.empty(len(order))
    scores[order] = np.arange(len(order), 0, -1)
    return scores


def _edge(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a <= b else (b, a)


def _edges(sequences) -> Counter:
    return Counter(_edge(int(a), int(b)) for sequence in sequences for a, b in zip(sequence[:-1], sequence[1:]))
