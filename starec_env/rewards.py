"""The paper's positional reward: the one place a ranking is turned into a scalar for RL and the env.

Rank 1 → +1; ranks 2-5 → +0.5; 6-10 → 0; 11-20 → -0.5; absent or unparseable (rank 0 or None) → -1.
Slow thinking is rewarded by what it earns next: a rewritten memory gets the positional reward of the follow-up
ranking made with it (`memory_reward`).
"""

from __future__ import annotations

import numpy as np

MISSING = 0  # the rank that stands for "the item is not in the ranking at all"
RANK_EDGES = np.array([1, 2, 6, 11])  # rank < 1 | 1 | 2-5 | 6-10 | >= 11
REWARDS = np.array([-1.0, 1.0, 0.5, 0.0, -0.5])


def positional_reward(ranks) -> np.ndarray:
    """Vectorised reward of 1-based ranks; 0, negative or None ranks count as missing."""
    ranks = np.atleast_1d(ranks)
    if ranks.dtype == object:
        ranks = np.array([MISSING if r is None else r for r in ranks], dtype=np.int64)
    return REWARDS[np.searchsorted(RANK_EDGES, ranks, side="right")]


def memory_reward(follow_up_ranks) -> np.ndarray:
    """Reward of a memory update: the positional reward of the target's rank in the next ranking made with the new
    memory (None when the update produced no usable memory, which counts as missing)."""
    return positional_reward(follow_up_ranks)
