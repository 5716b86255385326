"""A grounded choice model: the simulated user's utility for an item combines the LLM's judgement with a
collaborative prior, and the user picks by a softmax over what it is shown (a multinomial logit, as in RecSim's
choice models).

    utility(i) = llm_weight · z(LLM score of i) + prior_weight · z(prior score of i)

`z` standardises each score within the case (over the items the user is shown), so the weights are comparable
across users and absorb the softmax temperature. The weights are fitted by maximum likelihood on the choices real
users made in validation cases (`fit`), never on test cases: this is how a small CPU model can still give realistic
users, and how a fidelity table shows honestly whether the LLM adds anything over the prior (a fitted
`llm_weight` near 0 says it does not).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from starec_env.protocol import Cases


@dataclass(frozen=True)
class GroundedChoice:
    llm_weight: float = 1.0
    prior_weight: float = 0.0

    def utility(self, llm_scores, prior_scores) -> np.ndarray:
        """(B, C) utilities of the shown items from the LLM's and the prior's (B, C) scores."""
        return self.llm_weight * standardise(llm_scores) + self.prior_weight * standardise(prior_scores)

    def probabilities(self, llm_scores, prior_scores) -> np.ndarray:
        return softmax(self.utility(llm_scores, prior_scores), axis=1)

    def sample(self, llm_scores, prior_scores, rng: np.random.Generator) -> np.ndarray:
        """One seeded pick per case, drawn from the softmax: the same seed gives the same episode."""
        cumulative = self.probabilities(llm_scores, prior_scores).cumsum(1)
        draws = rng.random((len(cumulative), 1))
        return np.minimum((cumulative < draws).sum(1), cumulative.shape[1] - 1)

    @classmethod
    def fit(cls, llm_scores, prior_scores, chosen) -> GroundedChoice:
        """The weights that make the real choices (`chosen[b]`, an index into case b's items) most likely."""
        features = np.stack([standardise(llm_scores), standardise(prior_scores)], -1)
        rows = np.arange(len(features))

        def loss(weights):
            log_p = log_softmax(features @ weights, axis=1)[rows, chosen]
            p = softmax(features @ weights, axis=1)
            gradient = features[rows, chosen].sum(0) - np.einsum("bc,bcf->f", p, features)
            return -log_p.sum(), -gradient

        weights = minimize(loss, np.zeros(2), jac=True, method="L-BFGS-B").x
        return cls(float(weights[0]), float(weights[1]))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def load(cls, path: str | Path) -> GroundedChoice:
        """The weights `starec fidelity --fit` wrote (`grounded.json`)."""
        saved = json.loads(Path(path).read_text())
        return cls(float(saved["llm_weight"]), float(saved["prior_weight"]))


@dataclass(frozen=True)
class Grounding:
    """What a population needs to choose the grounded way: the fitted weights and the prior, any fitted policy's
    `score` (`Cases` → (B, C) scores), e.g. `make_policy("co-liked").fit(protocol.train("full")).score`."""

    model: GroundedChoice
    prior: Callable[[Cases], np.ndarray]

    def pick(self, llm_scores: Sequence[Sequence[float]], users: Sequence[int], histories: Sequence[Sequence[int]],
             shown: Sequence[Sequence[int]], seeds: Sequence[int]) -> list[int]:
        """Each user's pick among its shown items, drawn from the softmax with its own seed."""
        picks = []
        for scores, user, history, items, seed in zip(llm_scores, users, histories, shown, seeds):
            case = Cases(np.array([user]), [np.asarray(history, dtype=np.int64)], np.array([items]),
                         np.zeros(1, dtype=np.int64))
            draw = self.model.sample(np.array([scores]), self.prior(case), np.random.default_rng([seed, 1]))
            picks.append(int(draw[0]))
        return picks


def standardise(scores) -> np.ndarray:
    """Each row to mean 0 and standard deviation 1 (a constant row becomes 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    spread = scores.std(1, keepdims=True)
    return np.divide(scores - scores.mean(1, keepdims=True), spread, out=np.zeros_like(scores), where=spread > 0)
