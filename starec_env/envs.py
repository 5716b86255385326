"""Gymnasium environments: one episode is one user; a recommender policy acts by scoring the candidates.

Each step shows ids only — the user, their padded history and the 20 candidates (target + 19 negatives); text for
any id comes from `env.unwrapped.protocol.items`. The reward is the paper's positional reward of the item the user
chose, `info` carries NDCG@k, the choice and its rationale. In `replay` mode the user's logged next item is the
choice, which is exactly the paper's offline protocol; `rounds=2` walks the validation then the test interaction.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from starec_env.metrics import DEFAULT_KS, ndcg, target_ranks
from starec_env.protocol import Cases, Protocol, build_protocol, default_config
from starec_env.rewards import positional_reward

ENV_DATASETS = {"STARec-ML1M-v0": "ml-1m", "STARec-CDs-v0": "amazon-cds"}


class UserEnv(gym.Env):
    metadata = {"render_modes": ["ansi"]}

    def __init__(self, dataset: str = "ml-1m", mode: str = "replay", rounds: int = 1, protocol: Protocol | None = None,
                 protocol_seed: int = 0, history_length: int = 40, render_mode: str | None = None):
        if mode != "replay":
            raise ValueError(f"mode {mode!r} is not available yet; use mode='replay'")
        if rounds not in (1, 2):
            raise ValueError("replay mode has rounds=1 (the test interaction) or 2 (validation, then test)")
        self.protocol = protocol or build_protocol(dataset, default_config(dataset, seed=protocol_seed))
        self.mode, self.rounds, self.history_length, self.render_mode = mode, rounds, history_length, render_mode
        n_items, n_candidates = self.protocol.n_items, self.protocol.test.candidates.shape[1]
        self.observation_space = spaces.Dict({
            "user": spaces.Discrete(self.protocol.n_users),
            "history": spaces.Box(-1, n_items - 1, (history_length,), np.int64),
            "candidates": spaces.Box(0, n_items - 1, (n_candidates,), np.int64),
        })
        largest = np.finfo(np.float32).max  # any finite score: only the order among candidates matters
        self.action_space = spaces.Box(-largest, largest, (n_candidates,), np.float32)
        self._cases: list[Cases] = []
        self._round = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start a user's episode: `options={"case": i}` picks the i-th test user, else one is drawn."""
        super().reset(seed=seed)
        index = (options or {}).get("case")
        if index is None:
            index = int(self.np_random.integers(len(self.protocol.test)))
        splits = (self.protocol.valid, self.protocol.test)[2 - self.rounds:]
        self._cases = [split.subset([index]) for split in splits]
        self._round = 0
        return self._observation(), {"case": index, "round": 0}

    def step(self, action):
        scores = self._check(action)
        case = self._cases[self._round]
        rank = int(target_ranks(scores[None], case.target_index)[0])
        choice = int(case.targets[0])
        info = {"rank": rank, **{f"ndcg@{k}": float(ndcg(rank, k)) for k in DEFAULT_KS}, "choice": choice,
                "choice_text": self.protocol.item_text(choice), "rationale": "logged next interaction (replay)",
                "memory": None, "round": self._round}
        self._round += 1
        terminated = self._round == len(self._cases)
        observation = self._observation(self._round - 1 if terminated else self._round)
        return observation, float(positional_reward(rank)[0]), terminated, False, info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or not self._cases:
            return None
        case = self._cases[min(self._round, len(self._cases) - 1)]
        lines = [f"user {case.users[0]}: " + "; ".join(self.protocol.item_text(i) for i in case.histories[0][-5:])]
        lines += [f"  [{j + 1}] {self.protocol.item_text(i)}" for j, i in enumerate(case.candidates[0])]
        return "\n".join(lines)

    def _observation(self, round_index: int | None = None) -> dict:
        case = self._cases[self._round if round_index is None else round_index]
        return {"user": int(case.users[0]), "history": case.history_matrix(self.history_length)[0],
                "candidates": case.candidates[0].copy()}

    def _check(self, action) -> np.ndarray:
        if not self._cases or self._round >= len(self._cases):
            raise RuntimeError("step() called before reset() or after the episode ended")
        scores = np.asarray(action, dtype=np.float64)
        expected = self.action_space.shape
        if scores.shape != expected:
            raise ValueError(f"action must be {expected[0]} scores, one per candidate; got shape {scores.shape}")
        if not np.isfinite(scores).all():
            raise ValueError(f"action scores must be finite; got {scores[~np.isfinite(scores)][:3]} "
                             f"at candidates {np.flatnonzero(~np.isfinite(scores))[:3].tolist()}")
        return scores


def register_envs() -> None:
    for env_id, dataset in ENV_DATASETS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="starec_env.envs:UserEnv", kwargs={"dataset": dataset})
