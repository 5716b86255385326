"""Ranking metrics over score matrices: the one place NDCG, HR and MRR are computed.

Ties are broken deterministically by candidate position (the earlier candidate ranks higher). Because the protocol
puts the target at a uniformly random position, a policy that scores everything equally gets exactly random rank.
"""

from __future__ import annotations

import numpy as np

DEFAULT_KS = (1, 5, 10, 20)


def check_scores(scores: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Scores as a float array of `shape`, or a ValueError saying exactly what is wrong with them."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != tuple(shape):
        raise ValueError(f"scores have shape {scores.shape}, expected {tuple(shape)} (cases × candidates)")
    if not np.isfinite(scores).all():
        bad = np.argwhere(~np.isfinite(scores))[0]
        raise ValueError(f"scores must be finite; found {scores[tuple(bad)]} at case {bad[0]}, candidate {bad[1]}")
    return scores


def target_ranks(scores: np.ndarray, target_index: np.ndarray) -> np.ndarray:
    """1-based rank of each row's target among its candidates."""
    target_index = np.asarray(target_index)
    if np.ndim(scores) != 2:
        raise ValueError(f"scores must be a 2-D (cases × candidates) array, got shape {np.shape(scores)}")
    scores = check_scores(scores, (len(target_index), np.shape(scores)[1]))
    if np.any((target_index < 0) | (target_index >= scores.shape[1])):
        raise ValueError(f"target_index must lie in [0, {scores.shape[1]})")
    rows = np.arange(len(target_index))
    target = scores[rows, target_index][:, None]
    before = np.arange(scores.shape[1])[None, :] < target_index[:, None]
    return 1 + (scores > target).sum(1) + ((scores == target) & before).sum(1)


def target_rank(scores: np.ndarray, target_index: int) -> int:
    """`target_ranks` for one already-checked score vector (the environments' per-step path)."""
    target = scores[target_index]
    return 1 + int((scores > target).sum()) + int((scores[:target_index] == target).sum())


def ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-case NDCG@k with one relevant item: 1/log2(rank+1) inside the top k, else 0."""
    ranks = np.asarray(ranks)
    return np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)


def hit_rate(ranks: np.ndarray, k: int) -> np.ndarray:
    return (np.asarray(ranks) <= k).astype(np.float64)


def reciprocal_rank(ranks: np.ndarray) -> np.ndarray:
    return 1.0 / np.asarray(ranks, dtype=np.float64)


def summarize(ranks: np.ndarray, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, float]:
    """Mean NDCG@k, HR@k for each k, and MRR, as plain floats (fractions, not ×100)."""
    out = {f"ndcg@{k}": float(ndcg(ranks, k).mean()) for k in ks}
    out.update({f"hr@{k}": float(hit_rate(ranks, k).mean()) for k in ks})
    out["mrr"] = float(reciprocal_rank(ranks).mean())
    return out
