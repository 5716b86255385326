"""Gymnasium environments: one episode is one user; a recommender policy acts by scoring the candidates.

Each step shows ids only — the user, their padded history and 20 candidates (target + 19 negatives); text for any
id comes from `env.unwrapped.protocol.items` (or `protocol.item_text`). The episode walks forward through the user's
last `rounds` real interactions: round -1 is the test case and round -2 the validation case of the protocol (fixed
candidates); earlier rounds draw 19 negatives from the user's non-positive items with the env's seed.
`split="train"` walks the `rounds` interactions that end at the user's last training item instead, never showing a
validation or test target — the episodes trainers may learn from.

- `replay`: the logged next item is the user's choice — exactly the paper's offline protocol, no LLM involved.
  Reward = the positional reward of the logged item's rank.
- `simulate`: an LLM user agent (`agents.society`) sees the policy's top items, picks one with a rationale (fast
  thinking), and — when its pick differs from what the real user did — reflects and rewrites its preference summary
  (slow thinking) before the next round. Reward = the positional reward of the picked item's rank, or the "missing"
  reward when the user dislikes it. NDCG@k in `info` is always measured against the logged item.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from starec_env.metrics import DEFAULT_KS, ndcg, target_rank
from starec_env.protocol import Cases, Protocol, build_protocol, default_config
from starec_env.rewards import positional_reward

ENV_DATASETS = {"STARec-ML1M-v0": "ml-1m", "STARec-CDs-v0": "amazon-cds"}
MODES = ("replay", "simulate")
KS = np.array(DEFAULT_KS)
NDCG_KEYS = [f"ndcg@{k}" for k in DEFAULT_KS]


@dataclass(frozen=True)
class Round:
    history: np.ndarray  # the user's items before this round, oldest first
    candidates: np.ndarray  # (C,) item ids in presentation order
    target_index: int

    @property
    def target(self) -> int:
        return int(self.candidates[self.target_index])


class UserEnv(gym.Env):
    metadata = {"render_modes": ["ansi"]}

    def __init__(self, dataset: str = "ml-1m", mode: str = "replay", rounds: int = 1, protocol: Protocol | None = None,
                 protocol_seed: int = 0, history_length: int = 40, render_mode: str | None = None,
                 population=None, llm=None, agent: dict | None = None, split: str = "test"):
        """`population` (an `agents.society.Population`) or `llm` (a spec string) + `agent` (AgentConfig fields)
        give the simulated users; both default to the embedded model in `simulate` mode."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        self.protocol = protocol or getattr(population, "protocol", None) or build_protocol(
            dataset, default_config(dataset, seed=protocol_seed))
        shortest = min(len(s) for s in self.protocol.sequences)
        if split not in ("test", "train"):
            raise ValueError("split must be 'test' (ends at the test item) or 'train' (ends before validation)")
        held_out = 2 if split == "train" else 0
        if not 1 <= rounds < shortest - held_out:
            raise ValueError(f"rounds must be in [1, {shortest - held_out - 1}] so every user keeps a history; "
                             f"got {rounds}")
        self.split = split
        self.mode, self.rounds, self.history_length, self.render_mode = mode, rounds, history_length, render_mode
        self.population = population if mode == "replay" or population is not None else make_population(
            self.protocol, llm, agent)
        n_items, n_candidates = self.protocol.n_items, self.protocol.test.candidates.shape[1]
        self.observation_space = spaces.Dict({
            "user": spaces.Discrete(self.protocol.n_users),
            "history": spaces.Box(-1, n_items - 1, (history_length,), np.int64),
            "candidates": spaces.Box(0, n_items - 1, (n_candidates,), np.int64),
        })
        largest = np.finfo(np.float32).max  # any finite score: only the order among candidates matters
        self.action_space = spaces.Box(-largest, largest, (n_candidates,), np.float32)
        self._user, self._rounds, self._round = -1, [], 0

    # ------------------------------------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start a user's episode: `options={"case": i}` picks the i-th test user, else one is drawn."""
        info = self.begin_episode(seed, options)
        if self.population is not None:
            user, history = self.starting_point()
            self.population.start([user], [history])
        return self.observation(), info

    def step(self, action):
        request = self.request(action)
        feedback = self.population.respond([request])[0] if self.population is not None else None
        return self.finish(feedback)

    def render(self) -> str | None:
        if self.render_mode != "ansi" or not self._rounds:
            return None
        current = self._rounds[min(self._round, len(self._rounds) - 1)]
        text = self.protocol.item_text
        lines = [f"user {self._user}: " + "; ".join(text(i) for i in current.history[-5:])]
        lines += [f"  [{j + 1}] {text(i)}" for j, i in enumerate(current.candidates)]
        return "\n".join(lines)

    # ------------------------------------------------------------------- phases (the vector env batches these)
    def begin_episode(self, seed: int | None = None, options: dict | None = None) -> dict:
        super().reset(seed=seed)
        index = (options or {}).get("case")
        if index is None:
            index = int(self.np_random.integers(len(self.protocol.test)))
        self._user = int(self.protocol.test.users[index])
        self._rounds = self._walk(index)
        self._round = 0
        return {"case": int(index), "user": self._user, "round": 0}

    def starting_point(self) -> tuple[int, np.ndarray]:
        """(user, history before the first round): where the user agent's memory starts this episode."""
        return self._user, self._rounds[0].history

    def request(self, action):
        """Check the action; in `simulate` mode, what to ask the user agent (`None` in `replay`)."""
        scores = self._check(action)
        self._scores = scores
        if self.population is None:
            return None
        order = np.lexsort((np.arange(len(scores)), -scores))  # best first, ties by position like the metrics
        current = self._rounds[self._round]
        from agents.society import FeedbackRequest

        return FeedbackRequest(self._user, [int(i) for i in current.candidates[order]], current.target,
                               int(self.np_random.integers(2**31)))

    def finish(self, feedback):
        current = self._rounds[self._round]
        rank = target_rank(self._scores, current.target_index)
        info = {"rank": rank, **dict(zip(NDCG_KEYS, ndcg(rank, KS).tolist())), "round": self._round}
        if feedback is None:
            reward = float(positional_reward(rank)[0])
            info.update(choice=current.target, choice_text=self.protocol.item_text(current.target), liked=True,
                        rationale="logged next interaction (replay)", parsed=True, matched=True, memory=None)
        else:
            reward = float(positional_reward(feedback.rank if feedback.liked else None)[0])
            info.update(choice=feedback.item, choice_text=self.protocol.item_text(feedback.item),
                        choice_rank=feedback.rank, liked=feedback.liked, rationale=feedback.rationale,
                        parsed=feedback.parsed, matched=feedback.matched, memory=feedback.memory,
                        reflection=None if feedback.reflection is None else feedback.reflection.reflection,
                        reflection_status=None if feedback.reflection is None else feedback.reflection.status,
                        tokens=feedback.tokens)
        self._round += 1
        terminated = self._round == len(self._rounds)
        return self.observation(), reward, terminated, False, info

    # ------------------------------------------------------------------------------------------------ helpers
    def _walk(self, index: int) -> list[Round]:
        """The episode's rounds: extra ones from training interactions, then the protocol's validation and test."""
        sequence = self.protocol.sequences[self._user]
        if self.split == "train":
            return [self._sampled_round(sequence, len(sequence) - 2 - back) for back in range(self.rounds, 0, -1)]
        fixed = [Round(split.histories[index], split.candidates[index].copy(), int(split.target_index[index]))
                 for split in (self.protocol.valid, self.protocol.test)]
        extra = [self._sampled_round(sequence, len(sequence) - back) for back in range(self.rounds, 2, -1)]
        return (extra + fixed)[-self.rounds:]

    def _sampled_round(self, sequence: np.ndarray, position: int) -> Round:
        n_candidates = self.protocol.test.candidates.shape[1]
        allowed = np.setdiff1d(np.arange(self.protocol.n_items), sequence)
        candidates = np.append(self.np_random.choice(allowed, n_candidates - 1, replace=False), sequence[position])
        order = self.np_random.permutation(n_candidates)
        return Round(sequence[:position], candidates[order], int(np.flatnonzero(order == n_candidates - 1)[0]))

    def observation(self) -> dict:
        current = self._rounds[min(self._round, len(self._rounds) - 1)]
        history = np.full(self.history_length, -1, dtype=np.int64)
        recent = current.history[-self.history_length:]
        history[self.history_length - len(recent):] = recent
        return {"user": self._user, "history": history, "candidates": current.candidates.astype(np.int64)}

    def _check(self, action) -> np.ndarray:
        if not self._rounds or self._round >= len(self._rounds):
            raise RuntimeError("step() called before reset() or after the episode ended")
        scores = np.asarray(action, dtype=np.float64)
        expected = self.action_space.shape
        if scores.shape != expected:
            raise ValueError(f"action must be {expected[0]} scores, one per candidate; got shape {scores.shape}")
        if not np.isfinite(scores).all():
            raise ValueError(f"action scores must be finite; got {scores[~np.isfinite(scores)][:3]} "
                             f"at candidates {np.flatnonzero(~np.isfinite(scores))[:3].tolist()}")
        return scores


def observation_cases(observation: dict) -> Cases:
    """A single or vector observation as `Cases`, so any policy's `score(cases)` can act in the env.

    The target is unknown to the policy; `target_index` is a placeholder 0.
    """
    users = np.atleast_1d(observation["user"])
    histories = [row[row >= 0] for row in np.atleast_2d(observation["history"])]
    return Cases(users, histories, np.atleast_2d(observation["candidates"]), np.zeros(len(users), dtype=np.int64))


def make_population(protocol: Protocol, llm, agent: dict | None):
    """The simulated users: one shared LLM (a spec string, an `LLM`, or None for the embedded model)."""
    from agents.society import AgentConfig, Population

    return Population(protocol, llm, AgentConfig(**(agent or {})))


def register_envs() -> None:
    for env_id, dataset in ENV_DATASETS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="starec_env.envs:UserEnv",
                         vector_entry_point="starec_env.vector:UserVectorEnv", kwargs={"dataset": dataset})
