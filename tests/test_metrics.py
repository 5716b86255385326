import numpy as np
import pytest

from starec_env.metrics import ndcg, summarize, target_ranks
from starec_env.rewards import positional_reward


def test_ranks_and_ndcg_by_hand():
    scores = np.array([[0.9, 0.5, 0.1], [0.2, 0.3, 0.8], [0.1, 0.2, 0.3]])
    ranks = target_ranks(scores, np.array([0, 0, 2]))
    assert ranks.tolist() == [1, 3, 1]
    assert ndcg(ranks, 1).tolist() == [1.0, 0.0, 1.0]
    assert ndcg(ranks, 3)[1] == pytest.approx(0.5)  # 1 / log2(4)
    result = summarize(ranks, ks=(1, 3))
    assert result["ndcg@1"] == pytest.approx(2 / 3)
    assert result["mrr"] == pytest.approx((1 + 1 / 3 + 1) / 3)


def test_ties_break_by_candidate_position():
    scores = np.zeros((3, 4))
    assert target_ranks(scores, np.array([0, 2, 3])).tolist() == [1, 3, 4]
    scores = np.array([[1.0, 2.0, 2.0, 0.0]])
    assert target_ranks(scores, np.array([2])).tolist() == [2]


def test_constant_scores_are_random_on_shuffled_targets(ml1m):
    ranks = target_ranks(np.zeros(ml1m.test.candidates.shape), ml1m.test.target_index)
    assert summarize(ranks)["ndcg@10"] == pytest.approx(0.2272, abs=0.03)


@pytest.mark.parametrize("scores, message", [
    (np.array([[0.1, np.nan]]), "finite"),
    (np.array([[0.1, np.inf]]), "finite"),
    (np.zeros((2, 2)), r"shape \(2, 2\), expected \(1, 2\)"),
    (np.zeros(2), "2-D"),
])
def test_invalid_scores_are_clear_errors(scores, message):
    with pytest.raises(ValueError, match=message):
        target_ranks(scores, np.array([0]))


def test_positional_reward_table():
    assert positional_reward([1, 2, 5, 6, 10, 11, 20, 0, None]).tolist() == [
        1.0, 0.5, 0.5, 0.0, 0.0, -0.5, -0.5, -1.0, -1.0]
