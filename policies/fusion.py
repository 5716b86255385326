"""One order from a ranking prompt's evidence lines: reciprocal-rank fusion, its weights chosen on validation.

Each evidence line names candidates best first — the co-liked line (the ten most co-liked), the popular line, a
tool's ten best (`policies.tools`). A candidate scores the sum over lines of weight / (its place in the line + 1);
candidates no line names keep their listed order. The order is a function of what the prompt shows, so a student can
learn to write it from the prompt (the `fused` distillation teacher). The weights are chosen by NDCG@10 on
validation cases, each line alone among the choices: on validation the fusion ranks at least as well as each line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import product
from typing import Sequence

import numpy as np

from starec_env.agents.prompts import PromptConfig
from starec_env.metrics import ndcg, target_ranks
from starec_env.policies.base import Policy
from starec_env.policies.evidence import Evidence, EvidenceSource, most_co_liked
from starec_env.protocol import Cases, TrainView

LINES = ("co_liked", "popular", "tool")
STEPS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)  # relative weights tried per line


@dataclass(frozen=True)
class Fusion:
    """Weights of the evidence lines."""

    co_liked: float = 1.0
    popular: float = 0.0
    tool: float = 0.0

    def scores(self, evidence: Evidence, n: int) -> np.ndarray:
        """(n,) fused scores; ties (every unnamed candidate) rank in listed order."""
        score = np.zeros(n)
        for weight, named in zip(asdict(self).values(), named_lines(evidence)):
            for place, position in enumerate(named):
                score[position] += weight / (place + 1)
        return score

    def order(self, evidence: Evidence, n: int) -> list[int]:
        return np.argsort(-self.scores(evidence, n), kind="stable").tolist()

    def describe(self) -> str:
        return ", ".join(f"{name.replace('_', '-')} {weight:g}" for name, weight in asdict(self).items() if weight)


def named_lines(evidence: Evidence) -> tuple[list[int], list[int], list[int]]:
    """The positions each line names, best first, as the prompt shows them (in `LINES` order)."""
    return most_co_liked(evidence.counts, 10), list(evidence.popular), list(evidence.tool)


def choose_fusion(evidence: Sequence[Evidence], target_index: np.ndarray, n: int) -> tuple[Fusion, list[dict]]:
    """The weights with the best mean NDCG@10 over the cases (each line alone first, so ties keep the simpler), and
    every choice tried with its NDCG@10."""
    shown = [name for name, named in zip(LINES, zip(*map(named_lines, evidence))) if any(named)]
    if not shown:
        raise ValueError("no evidence line names any candidate: nothing to fuse")
    tried, seen = [], set()
    choices = [w for w in product(STEPS, repeat=len(shown)) if any(w)]
    for weights in sorted(choices, key=lambda w: (sum(x > 0 for x in w), -max(w))):
        ratio = tuple(round(x / max(weights), 6) for x in weights)  # one choice per ratio: the scale is immaterial
        if ratio in seen:
            continue
        seen.add(ratio)
        fusion = Fusion(**{name: dict(zip(shown, ratio)).get(name, 0.0) for name in LINES})
        scores = np.array([fusion.scores(e, n) for e in evidence])
        tried.append({**asdict(fusion), "ndcg@10": float(ndcg(target_ranks(scores, target_index), 10).mean())})
    best = max(tried, key=lambda row: row["ndcg@10"])  # the first of equals: the fewest lines
    return Fusion(**{name: best[name] for name in LINES}), tried


class FusedPolicy(Policy):
    """Ranks by the fused evidence lines a STARec prompt with `evidence`, `popular` and `tool` shows, its weights
    chosen on the training view's validation cases: the row the `fused` teacher's student is measured against.
    `threads` is the tool's fit's (`starec bench --option threads=N` reaches it)."""

    def __init__(self, tool: str = "", popular: int = 0, co_liked: bool = True, seed: int = 0, threads: int = 2):
        self.prompt = PromptConfig(evidence=co_liked, popular=popular if co_liked else 0, tool=tool)
        self.seed, self.threads, self.source, self.fusion, self.chosen = seed, threads, None, None, None
        lines = (["co-liked"] if co_liked else []) + ([f"pop{popular}"] if co_liked and popular else []) \
            + ([tool] if tool else [])
        self.name = f"fused({'+'.join(lines)})"

    def fit(self, train: TrainView) -> FusedPolicy:
        self.source = EvidenceSource(train, self.prompt, self.seed, self.threads)
        self.fusion, tried = fuse_on(self.source, train.valid)
        self.chosen = {"weights": asdict(self.fusion), "validation": tried}
        return self

    def score(self, cases: Cases) -> np.ndarray:
        if self.source is None:
            raise RuntimeError("FusedPolicy.score called before fit")
        found = self.source.evidence(cases.users, cases.histories, cases.candidates)
        return np.array([self.fusion.scores(e, cases.candidates.shape[1]) for e in found])


def fuse_on(source: EvidenceSource, valid: Cases) -> tuple[Fusion, list[dict]]:
    """`choose_fusion` on validation cases, with the evidence `source` gives them."""
    found = source.evidence(valid.users, valid.histories, valid.candidates)
    return choose_fusion(found, valid.target_index, valid.candidates.shape[1])
