"""Gymnasium environments: one episode is one user; a recommender policy acts by scoring the candidates.

`UserEnv` states the contract (spaces, rewards, start, end, arguments); `starec_env.vector.UserVectorEnv` steps
many users with one batched LLM call. Ids are registered in `starec_env.registration`.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from starec_env.agents.loop import Round
from starec_env.agents.grounded import Grounding
from starec_env.agents.society import AgentConfig, FeedbackRequest, Population
from starec_env.metrics import DEFAULT_KS, ndcg, target_rank
from starec_env.protocol import Cases, Protocol, build_protocol, default_config, sample_round, sample_unseen
from starec_env.rewards import positional_reward

MODES = ("replay", "simulate", "session")
SIMULATED = ("simulate", "session")  # the modes whose user is an LLM agent
KS = np.array(DEFAULT_KS)
NDCG_KEYS = [f"ndcg@{k}" for k in DEFAULT_KS]


class UserEnv(gym.Env):
    """One user of a recommendation service: a policy ranks candidates, the user (logged or simulated) responds.

    ## Action space
    `Box(-max, max, (C,), float32)` with C = 20 candidates: one finite score each; only their order matters, ties
    go to the earlier candidate. A wrong shape, NaN or inf is a `ValueError` that names the problem.

    ## Observation space
    `Dict(user=Discrete(n_users), history=Box(-1, n_items - 1, (history_length,), int64),
    candidates=Box(0, n_items - 1, (C,), int64))`: ids only; the history holds the user's last items, oldest first,
    right-aligned with -1 padding. Text for any id: `env.unwrapped.protocol.item_text(id)`.

    ## Rewards
    The paper's positional reward (`starec_env.rewards`) of the chosen item's rank in the policy's ranking: rank 1
    → +1, 2-5 → +0.5, 6-10 → 0, 11-20 → -0.5; a missing item, or one the simulated user dislikes, → -1.
    `mode="replay"`: the choice is the user's logged next item — the paper's offline protocol, no LLM.
    `mode="simulate"`: an LLM user agent (`agents.society`) sees the policy's top items, picks one (fast thinking)
    and rates it 1-5, and, when its pick differs from what the real user did, reflects and rewrites its preference
    summary (slow thinking) before the next round.
    `mode="session"`: the same user agent, and the policy's choices change its future: what it picks becomes its
    history (its memory and the next observation), and there is no logged item to compare with, so no reflection.

    ## Starting state
    `reset(options={"case": i})` takes the i-th test user of the protocol, else one is drawn with the seed. In
    `simulate` mode the user's memory starts from a first summary written from the history before round one. A
    `session` starts from the test case's history (`split="train"`: the history before the validation item), and
    each step's candidates are C items the user has not had yet, drawn with the env's seed.

    ## Episode end
    Terminates after `rounds` rounds, which walk the user's last `rounds` real interactions: the last two are the
    protocol's validation and test cases (fixed candidates), earlier ones draw C - 1 negatives from the user's
    non-positive items with the env's seed. `split="train"` walks rounds that end at the user's last training item
    instead, never showing a validation or test target: the episodes trainers may learn from. Never truncates.
    A `session` terminates when the user leaves — after `patience` disliked picks in a row, as an unsatisfied user
    of Agent4Rec exits — and is truncated after `rounds` steps.

    ## Info
    `rank` and `ndcg@k` of the logged item (always), `round`, `choice`, `choice_text`, `liked`, `rating`,
    `rationale`, `parsed`, `matched`, `memory`; in `simulate` mode also `choice_rank`, `reflection`,
    `reflection_status`, `tokens`. A `session` has no logged item: its info is `round`, `choice`, `choice_text`,
    `choice_rank`, `rating`, `liked`, `rationale`, `parsed`, `left`, `memory`, `tokens`. The simulated user's
    `rating` (1-5) is its own decision, by the likelihood of each digit; it likes what it rates 4 or 5; its
    `rationale` is written only with `agent={"rationale": True}`.

    ## Arguments
    `dataset` (a registered name or a path; ignored when `protocol` is given), `mode`, `rounds`, `split`,
    `protocol_seed`, `history_length`, `render_mode="ansi"`, `patience` (session), and for the LLM user either
    `population` (an
    `agents.society.Population`, shared across envs) or `llm` (a spec; default the embedded model) with `agent`
    (`AgentConfig` or its fields), and `grounding` (`agents.grounded.Grounding`: the user picks from a seeded
    softmax over the LLM's and a fitted policy's scores, weights from `starec fidelity --fit`). Building the protocol
    (cached) and loading the LLM happen here, in `__init__`.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, dataset: str = "ml-1m", mode: str = "replay", rounds: int = 1, protocol: Protocol | None = None,
                 protocol_seed: int = 0, history_length: int = 40, render_mode: str | None = None,
                 population: Population | None = None, llm=None, agent: AgentConfig | dict | None = None,
                 split: str = "test", grounding: Grounding | None = None, patience: int = 2):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        self.protocol = protocol or getattr(population, "catalogue", None) or build_protocol(
            dataset, default_config(dataset, seed=protocol_seed))
        shortest = min(len(s) for s in self.protocol.sequences)
        if split not in ("test", "train"):
            raise ValueError("split must be 'test' (ends at the test item) or 'train' (ends before validation)")
        held_out = 2 if split == "train" else 0
        if mode != "session" and not 1 <= rounds < shortest - held_out:
            raise ValueError(f"rounds must be in [1, {shortest - held_out - 1}] so every user keeps a history; "
                             f"got {rounds}")
        if rounds < 1 or patience < 1:
            raise ValueError(f"rounds and patience must be at least 1; got {rounds} and {patience}")
        self.split, self.patience, self._dislikes = split, patience, 0
        self.mode, self.rounds, self.history_length, self.render_mode = mode, rounds, history_length, render_mode
        self.population = None if mode not in SIMULATED else population or make_population(
            self.protocol, llm, agent, grounding)
        n_items, n_candidates = self.protocol.n_items, self.protocol.test.candidates.shape[1]
        self.observation_space = spaces.Dict({
            "user": spaces.Discrete(self.protocol.n_users),
            "history": spaces.Box(-1, n_items - 1, (history_length,), np.int64),
            "candidates": spaces.Box(0, n_items - 1, (n_candidates,), np.int64),
        })
        largest = np.finfo(np.float32).max  # any finite score: only the order among candidates matters
        self.action_space = spaces.Box(-largest, largest, (n_candidates,), np.float32)
        self._user, self._rounds, self._round, self._ended = -1, [], 0, False

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
        self._rounds = [self._session_round(self._session_start(index))] if self.mode == "session" else self._walk(
            index)
        self._round, self._dislikes, self._ended = 0, 0, False
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
        return FeedbackRequest(self._user, [int(i) for i in current.candidates[order]], current.target,
                               int(self.np_random.integers(2**31)))

    def finish(self, feedback):
        if self.mode == "session":
            return self._finish_session(feedback)
        current = self._rounds[self._round]
        rank = target_rank(self._scores, int(np.flatnonzero(current.candidates == current.target)[0]))
        info = {"rank": rank, **dict(zip(NDCG_KEYS, ndcg(rank, KS).tolist())), "round": self._round}
        if feedback is None:
            reward = float(positional_reward(rank)[0])
            info.update(choice=current.target, choice_text=self.protocol.item_text(current.target), liked=True,
                        rating=None, rationale="logged next interaction (replay)", parsed=True, matched=True,
                        memory=None)
        else:
            reward = float(positional_reward(feedback.rank if feedback.liked else None)[0])
            info.update(choice=feedback.item, choice_text=self.protocol.item_text(feedback.item),
                        choice_rank=feedback.rank, rating=feedback.rating, liked=feedback.liked,
                        rationale=feedback.rationale,
                        parsed=feedback.parsed, matched=feedback.matched, memory=feedback.memory,
                        reflection=None if feedback.reflection is None else feedback.reflection.reflection,
                        reflection_status=None if feedback.reflection is None else feedback.reflection.status,
                        tokens=feedback.tokens)
        self._round += 1
        terminated = self._ended = self._round == len(self._rounds)
        return self.observation(), reward, terminated, False, info

    def _finish_session(self, feedback):
        """The pick joins the history; the user leaves after `patience` dislikes in a row, or the horizon ends."""
        reward = float(positional_reward(feedback.rank if feedback.liked else None)[0])
        self._dislikes = 0 if feedback.liked else self._dislikes + 1
        left = self._dislikes >= self.patience
        history = [*self._rounds[self._round].history, feedback.item]
        info = {"round": self._round, "choice": feedback.item, "choice_text": self.protocol.item_text(feedback.item),
                "choice_rank": feedback.rank, "rating": feedback.rating, "liked": feedback.liked,
                "rationale": feedback.rationale, "parsed": feedback.parsed, "left": left, "memory": feedback.memory,
                "tokens": feedback.tokens}
        self._round += 1
        truncated = not left and self._round == self.rounds
        self._ended = left or truncated
        self._rounds.append(self._session_round(history))  # the next observation shows the pick in the history
        return self.observation(), reward, left, truncated, info

    # ------------------------------------------------------------------------------------------------ helpers
    def _session_start(self, index: int) -> np.ndarray:
        sequence = self.protocol.sequences[self._user]
        return sequence[: len(sequence) - 2] if self.split == "train" else self.protocol.test.histories[index]

    def _session_round(self, history) -> Round:
        """C candidates the user has not had, in a seeded random order; no logged target."""
        candidates = sample_unseen(self.np_random, self.protocol.n_items, history,
                                   self.protocol.test.candidates.shape[1])
        return Round(np.asarray(history, dtype=np.int64), candidates, None)

    def _walk(self, index: int) -> list[Round]:
        """The episode's rounds: extra ones from training interactions, then the protocol's validation and test."""
        sequence = self.protocol.sequences[self._user]
        if self.split == "train":
            return [self._sampled_round(sequence, len(sequence) - 2 - back) for back in range(self.rounds, 0, -1)]
        fixed = [Round(split.histories[index], split.candidates[index].copy(), int(split.targets[index]))
                 for split in (self.protocol.valid, self.protocol.test)]
        extra = [self._sampled_round(sequence, len(sequence) - back) for back in range(self.rounds, 2, -1)]
        return (extra + fixed)[-self.rounds:]

    def _sampled_round(self, sequence: np.ndarray, position: int) -> Round:
        candidates = sample_round(self.np_random, self.protocol.n_items, sequence, sequence[position],
                                  self.protocol.test.candidates.shape[1])
        return Round(sequence[:position], candidates, int(sequence[position]))

    def observation(self) -> dict:
        current = self._rounds[min(self._round, len(self._rounds) - 1)]
        history = np.full(self.history_length, -1, dtype=np.int64)
        recent = current.history[-self.history_length:]
        history[self.history_length - len(recent):] = recent
        return {"user": self._user, "history": history, "candidates": current.candidates.astype(np.int64)}

    def _check(self, action) -> np.ndarray:
        if not self._rounds or self._ended:
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


def make_population(protocol: Protocol, llm, agent: AgentConfig | dict | None,
                    grounding: Grounding | None = None) -> Population:
    """The simulated users: one shared LLM (a spec string, an `LLM`, or None for the embedded model)."""
    config = agent if isinstance(agent, AgentConfig) else AgentConfig(**(agent or {}))
    return Population(protocol, llm, config, grounding)
