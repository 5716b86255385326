"""Metrics, in one place: ranking (NDCG, HR, MRR over score matrices) and the fidelity of simulated users (like /
dislike agreement at a class ratio, rating error and rank correlation, rating-histogram divergence).

Ties are broken deterministically by candidate position (the earlier candidate ranks higher). Because the protocol
puts the target at a uniformly random position, a policy that scores everything equally gets exactly random rank.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

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


# ---------------------------------------------------------------------------------------------- fidelity
RATING_SCALE = (1, 2, 3, 4, 5)


def agreement_at_ratio(true_positive_rate: float, false_positive_rate: float, ratio: float) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of a liked / not-liked judgement on a set holding `ratio` not-liked items
    per liked one, from its rates on each class: the expectation of subsampling to that ratio, without its noise."""
    tpr, fpr = true_positive_rate, false_positive_rate
    said_liked = tpr + ratio * fpr
    precision = tpr / said_liked if said_liked else 0.0
    f1 = 2 * precision * tpr / (precision + tpr) if precision + tpr else 0.0
    return {"accuracy": (tpr + ratio * (1 - fpr)) / (1 + ratio), "precision": precision, "recall": tpr, "f1": f1}


def rating_errors(predicted: Sequence[float], real: Sequence[float]) -> dict[str, float]:
    """MAE, RMSE and Spearman's ρ of predicted against real ratings (ρ is NaN when either side is constant)."""
    predicted, real = np.asarray(predicted, dtype=np.float64), np.asarray(real, dtype=np.float64)
    error = predicted - real
    constant = len(real) < 2 or np.ptp(predicted) == 0 or np.ptp(real) == 0
    rho = float("nan") if constant else float(stats.spearmanr(predicted, real).statistic)
    return {"mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error ** 2).mean())), "spearman": rho}


def rating_histogram(ratings: Sequence[float]) -> np.ndarray:
    """Share of each rating of `RATING_SCALE`."""
    counts = np.array([np.sum(np.asarray(ratings) == r) for r in RATING_SCALE], dtype=np.float64)
    return counts / max(counts.sum(), 1.0)


def js_divergence(first: Sequence[float], second: Sequence[float]) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between two rating histograms."""
    return float(jensenshannon(first, second, base=2) ** 2)


def bootstrap_se(statistic: Callable[[np.ndarray], float], n_groups: int, resamples: int = 200,
                 seed: int = 0) -> float:
    """Standard error of `statistic(groups)` by resampling whole groups (users) with replacement: items of one
    user are not independent, so they are resampled together."""
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, n_groups, n_groups)) for _ in range(resamples)]
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def paired_difference(before: Sequence[float], after: Sequence[float], alpha: float = 0.05) -> dict[str, float]:
    """`after - before` user by user (the same users, the same candidates): mean, standard error, the Wilcoxon
    signed-rank p-value (two-sided; users with no difference are dropped, as in Wilcoxon's test), counts of users
    better, worse and tied, and whether the difference is significant at `alpha`."""
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if before.shape != after.shape or before.ndim != 1 or len(before) < 2:
        raise ValueError(f"paired values need the same users in both, at least 2; got {before.shape} and "
                         f"{after.shape}")
    difference = after - before
    changed = difference[difference != 0]
    p_value = float(stats.wilcoxon(changed).pvalue) if len(changed) else 1.0
    return {"users": int(len(difference)), "mean": float(difference.mean()),
            "se": float(difference.std(ddof=1) / np.sqrt(len(difference))), "p_wilcoxon": p_value,
            "better": int((difference > 0).sum()), "worse": int((difference < 0).sum()),
            "tied": int((difference == 0).sum()), "significant": bool(p_value < alpha)}
