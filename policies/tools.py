"""Recommenders as tools: a fitted policy of this library whose ranking the STARec agent reads in its prompt.

A tool is fitted on training data only, and its prompt line names its ten best candidates, best first: one ordered
line of labels, as the co-liked evidence is (what a small model learns to copy, and to correct). A case of the env's
`train` split — one of each user's last `rounds` training interactions — is answered by a second fit, on the
training view with every user's last `rounds` interactions removed: the tool never saw the case it is asked about,
nor anything after it, as the `full` view never contains a validation or test target.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from starec_env.policies.base import Policy
from starec_env.policies.registry import make_policy
from starec_env.protocol import Cases, TrainView


_FITTED: dict[tuple, Policy] = {}  # one fit per (tool, seed, view, held_out) in a process: a pipeline's stages share it


class Tool:
    """The policy `spec` (any name `starec bench` takes) fitted on `train`, and on `train` without each user's last
    `held_out` interactions for training cases, with `threads` torch threads; each fit is made on first use, once
    per process."""

    def __init__(self, spec: str, train: TrainView, seed: int = 0, top: int = 10, threads: int = 2):
        self.spec, self.train, self.seed, self.top, self.threads = spec, train, seed, top, threads
        self.name = make_policy(spec, seed).name

    def policy(self, held_out: int = 0) -> Policy:
        """The tool fitted without each user's last `held_out` training interactions (0: on the whole view)."""
        if held_out < 0:
            raise ValueError(f"held_out must be >= 0, got {held_out}")
        key = (self.spec, self.seed, self.train.dataset, self.train.name, self.train.n_interactions,
               hash(self.train.valid.candidates.tobytes()), held_out)  # validation cases steer early stopping
        if key not in _FITTED:
            view = self.train if not held_out else replace(
                self.train, sequences=[s[:max(len(s) - held_out, 0)] for s in self.train.sequences])
            _FITTED[key] = make_policy(self.spec, self.seed, threads=self.threads).fit(view)
        return _FITTED[key]

    def orders(self, users: Sequence[int], histories: Sequence[Sequence[int]], candidates: Sequence[Sequence[int]],
               held_out: int = 0) -> list[list[int]]:
        """Per case, the positions of the tool's `top` best candidates, best first (ties: listed order)."""
        cases = Cases(np.asarray(users, dtype=np.int64), [np.asarray(h, dtype=np.int64) for h in histories],
                      np.asarray(candidates, dtype=np.int64), np.zeros(len(users), dtype=np.int64))
        scores = np.asarray(self.policy(held_out).score(cases))
        return [np.argsort(-row, kind="stable")[:self.top].tolist() for row in scores]
