"""A recommender policy acting in STARec users, in both modes: `python examples/run_env.py [--episodes 3]`.

`replay` scores against each user's logged next items (no LLM). `simulate` lets the embedded SmolLM2 user agents
pick among the policy's top items, reflect when their pick differs from the real one, and rewrite their memory.
"""

import argparse

import gymnasium as gym

from starec_env.policies.registry import make_policy
from starec_env.envs import observation_cases


def run(mode: str, episodes: int, rounds: int) -> None:
    env = gym.make("starec_env:STARec-ML1M-v0", mode=mode, rounds=rounds)
    policy = make_policy("pop").fit(env.unwrapped.protocol.train("full"))
    for episode in range(episodes):
        observation, info = env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            observation, reward, done, _, step = env.step(policy.score(observation_cases(observation))[0])
            total += reward
            print(f"{mode} user {info['user']} round {step['round']}: reward {reward:+.1f} "
                  f"NDCG@10 {step['ndcg@10']:.3f} chose {step['choice_text']!r} — {step['rationale']}")
        print(f"{mode} user {info['user']}: return {total:+.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for mode in ("replay", "simulate"):
        run(mode, args.episodes, args.rounds)
