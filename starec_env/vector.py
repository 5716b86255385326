"""N users stepped at once, their LLM calls batched: `gymnasium.make_vec("STARec-ML1M-v0", num_envs=N)`.

Each sub-environment is a `UserEnv` keeping its own state and RNG; one shared `Population` answers all of their
feedback requests in a single fast-thinking call and a single slow-thinking call per step. Results equal N single
environments on the same seeds. Finished episodes restart on the following step (gymnasium's NEXT_STEP autoreset).
"""

from __future__ import annotations

from copy import deepcopy

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from starec_env.envs import SIMULATED, UserEnv, make_population
from starec_env.protocol import build_protocol, default_config


class UserVectorEnv(VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 4, dataset: str = "ml-1m", mode: str = "replay", protocol=None,
                 protocol_seed: int = 0, population=None, llm=None, agent: dict | None = None, grounding=None,
                 **env_options):
        protocol = protocol or getattr(population, "catalogue", None) or build_protocol(
            dataset, default_config(dataset, seed=protocol_seed))
        if mode in SIMULATED and population is None:
            population = make_population(protocol, llm, agent, grounding)
        self.population = population if mode in SIMULATED else None
        self.envs = [UserEnv(dataset, mode, protocol=protocol, population=self.population, **env_options)
                     for _ in range(num_envs)]
        self.num_envs, self.protocol = num_envs, protocol
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._observations = create_empty_array(self.single_observation_space, num_envs)
        self._needs_reset = np.zeros(num_envs, dtype=bool)

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        """Seeds as in gymnasium (`seed + i` per env); `options={"cases": [...]}` picks each env's test user."""
        seeds = [None] * self.num_envs if seed is None else (
            [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else list(seed))
        cases = (options or {}).get("cases", [None] * self.num_envs)
        infos = [env.begin_episode(s, None if c is None else {"case": c}) for env, s, c in zip(self.envs, seeds, cases)]
        self._start(range(self.num_envs))
        self._needs_reset[:] = False
        return self._batch_observations(), self._batch_infos(infos)

    def step(self, actions):
        actions = list(iterate(self.action_space, actions))
        restarting = np.flatnonzero(self._needs_reset)
        stepping = np.flatnonzero(~self._needs_reset)
        infos: list[dict] = [{} for _ in range(self.num_envs)]
        for i in restarting:
            infos[i] = self.envs[i].begin_episode()
        self._start(restarting)
        requests = [self.envs[i].request(actions[i]) for i in stepping]
        feedback = self.population.respond(requests) if self.population is not None else [None] * len(stepping)
        rewards = np.zeros(self.num_envs)
        terminations = np.zeros(self.num_envs, dtype=bool)
        truncations = np.zeros(self.num_envs, dtype=bool)
        for i, answer in zip(stepping, feedback):
            _, rewards[i], terminations[i], truncations[i], infos[i] = self.envs[i].finish(answer)
        self._needs_reset = terminations | truncations
        return self._batch_observations(), rewards, terminations, truncations, self._batch_infos(infos)

    def _start(self, indices) -> None:
        """One batched slow-thinking call writes the first summaries of every user starting an episode."""
        if self.population is not None and len(indices):
            self.population.start(*zip(*(self.envs[i].starting_point() for i in indices)))

    def _batch_observations(self):
        observations = [env.observation() for env in self.envs]
        return deepcopy(concatenate(self.single_observation_space, observations, self._observations))

    def _batch_infos(self, infos: list[dict]) -> dict:
        batched: dict = {}
        for i, info in enumerate(infos):
            batched = self._add_info(batched, info, i)
        return batched
