"""The one protocol every recommender policy follows, classical or LLM: `fit(train)` then `score(cases)`."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from starec_env.protocol import Cases, TrainView


class Policy(ABC):
    """Scores candidates: higher is better; ties are broken by candidate position (see `starec_env.metrics`)."""

    name: str = "policy"
    learns: bool = True  # False: the training view does not matter, so benchmarks evaluate it once, not per view

    def fit(self, train: TrainView) -> "Policy":
        """Learn from a training view; policies that need no training keep this default."""
        return self

    @abstractmethod
    def score(self, cases: Cases) -> np.ndarray:
        """(B, C) float scores for `cases.candidates`."""


class RandomPolicy(Policy):
    """Uniform random scores: the floor every other row must clear (NDCG@10 = 22.72 in expectation)."""

    name = "random"
    learns = False

    def __init__(self, seed: int = 0):
        self.seed = seed

    def score(self, cases: Cases) -> np.ndarray:
        return np.random.default_rng(self.seed).random(cases.candidates.shape)


class PopularityPolicy(Policy):
    """How often each item occurs in the training view."""

    name = "pop"

    def __init__(self):
        self.counts: np.ndarray | None = None

    def fit(self, train: TrainView) -> "PopularityPolicy":
        self.counts = np.bincount(np.concatenate(train.sequences), minlength=train.n_items).astype(np.float64)
        return self

    def score(self, cases: Cases) -> np.ndarray:
        if self.counts is None:
            raise RuntimeError("PopularityPolicy.score called before fit")
        return self.counts[cases.candidates]
