import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from policies.registry import make_policy
from starec_env.metrics import target_ranks
from starec_env.rewards import positional_reward


@pytest.fixture(scope="module")
def env(ml1m):
    return gym.make("starec_env:STARec-ML1M-v0", protocol=ml1m)


@pytest.mark.parametrize("env_id", ["STARec-ML1M-v0", "STARec-CDs-v0"])
def test_check_env_passes(env_id, ml1m, cds):
    protocol = ml1m if "ML1M" in env_id else cds
    check_env(gym.make(f"starec_env:{env_id}", protocol=protocol).unwrapped, skip_render_check=True)


def test_replay_episode_rewards_a_policys_ranking(env, ml1m):
    pop = make_policy("pop").fit(ml1m.train("full"))
    observation, info = env.reset(seed=0, options={"case": 5})
    assert observation["user"] == ml1m.test.users[5]
    scores = pop.counts[observation["candidates"]]
    _, reward, terminated, truncated, step_info = env.step(scores)
    rank = int(target_ranks(scores[None], ml1m.test.target_index[5:6])[0])
    assert (step_info["rank"], reward, terminated, truncated) == (rank, positional_reward(rank)[0], True, False)
    assert step_info["choice"] == ml1m.test.targets[5] and step_info["ndcg@20"] > 0


def test_same_seed_same_episode(env):
    first, _ = env.reset(seed=7)
    second, _ = env.reset(seed=7)
    assert all(np.array_equal(first[key], second[key]) for key in first)


def test_two_rounds_walk_validation_then_test(ml1m):
    env = gym.make("starec_env:STARec-ML1M-v0", protocol=ml1m, rounds=2)
    observation, _ = env.reset(seed=0, options={"case": 3})
    _, _, terminated, _, info = env.step(np.zeros(20))
    assert not terminated and info["choice"] == ml1m.valid.targets[3]
    second, _, terminated, _, info = env.step(np.zeros(20))
    assert terminated and info["choice"] == ml1m.test.targets[3]


@pytest.mark.parametrize("action, message", [(np.zeros(19), "20 scores"), (np.full(20, np.nan), "finite"),
                                             (np.full(20, np.inf), "finite")])
def test_invalid_actions_are_clear_errors(env, action, message):
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)
