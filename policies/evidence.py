"""Structured evidence for a small ranker: how often each candidate is liked next to the user's recent items.

The interaction graph links two items each time some user liked them one right after the other (either order);
a candidate's evidence is the summed weight of its edges to the user's last `window` items. Sorting by it alone
(`CoLikedPolicy`, the row an evidence-reading LLM must beat to add anything) reaches NDCG@10 63.6 on the 1,000
ML-1M validation cases against 22.7 for random, and a model can read it off the prompt: something a 135M model can
be taught to use. A training case asks about a transition that is itself in the graph, so `counts(...,
without_user=u)` leaves out user u's own edges: the evidence is then what other users say, as it is for a held-out
case.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import networkx as nx
import numpy as np

from policies.base import Policy
from starec_env.protocol import Cases, TrainView


class CoLikedGraph:
    """The interaction graph of a training view, and each user's own sequence to leave out of a training case."""

    def __init__(self, train: TrainView, window: int = 10):
        self.window = window
        self.graph = nx.Graph()
        self.graph.add_weighted_edges_from((a, b, n) for (a, b), n in _edges(train.sequences).items())
        self.sequences = {int(user): sequence for user, sequence in zip(train.users, train.sequences)}

    def counts(self, history: Sequence[int], candidates: Iterable[int], without_user: int | None = None) -> list[int]:
        """Per candidate, its edge weight to the last `window` history items (minus `without_user`'s own edges)."""
        own = _edges([self.sequences.get(without_user, ())]) if without_user is not None else Counter()
        recent = [int(item) for item in history[-self.window:]]
        return [sum(self._weight(item, int(c)) - own[_edge(item, int(c))] for item in recent) for c in candidates]

    def _weight(self, a: int, b: int) -> int:
        return self.graph.get_edge_data(a, b, {"weight": 0})["weight"]


class CoLikedPolicy(Policy):
    """Ranks by the evidence alone: an item-to-item neighbourhood recommender over the last `window` items."""

    name = "co-liked"

    def __init__(self, window: int = 10):
        self.window, self.graph = window, None

    def fit(self, train: TrainView) -> CoLikedPolicy:
        self.graph = CoLikedGraph(train, self.window)
        return self

    def score(self, cases: Cases) -> np.ndarray:
        if self.graph is None:
            raise RuntimeError("CoLikedPolicy.score called before fit")
        return np.array([self.graph.counts(h, c) for h, c in zip(cases.histories, cases.candidates)], dtype=float)


def describe(counts: Sequence[int], top: int = 10) -> str:
    """The evidence line of a ranking prompt: the `top` most co-liked candidates' labels with their counts."""
    if not counts:
        return ""
    return ", ".join(f"[{i + 1}] {counts[i]} times" for i in most_co_liked(counts, top)) or "none"


def most_co_liked(counts: Sequence[int], top: int = 5) -> list[int]:
    """Positions of the `top` candidates with the highest non-zero counts, highest first (ties: listed order)."""
    return sorted((i for i, n in enumerate(counts) if n), key=lambda i: -counts[i])[:top]


def _edge(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a <= b else (b, a)


def _edges(sequences) -> Counter:
    return Counter(_edge(int(a), int(b)) for sequence in sequences for a, b in zip(sequence[:-1], sequence[1:]))
