"""GRPO rollouts that are episodes of the env: TRL's `rollout_func` plays one `UserEnv` episode per completion.

One rollout is one training user's multi-round episode (`split="train"`: no validation or test target is ever
shown), written as one conversation of the policy being trained:

    round 1's ranking prompt → the policy's ranking → `env.step` → on a miss, the reflection prompt about what the
    user chose → the policy's reflection, whose rewritten summary the next prompt shows → round 2's ranking → …

Each prompt is the STARec policy's own (`FeedbackLoop.ranking_chat` / `reflection_chat`, one `PromptConfig`), so
round 1 sees exactly what the policy sees at evaluation; later turns also see the conversation before them. The
prompts between the policy's answers are the env's tokens (`env_mask` 0): TRL trains only on what the policy wrote.
Every turn is sampled by the trainer's own generation (`GRPOTrainer._generate_single_turn`: transformers, or vLLM
where `use_vllm` is on) from the exact token sequence it is trained on, so the rollout is on-policy.

Rewards are what `env.step` returned: in `replay` the logged item's positional reward; in `simulate` and `session`
the simulated user's pick and like (no logged target). An answer that names no candidate is an invalid action: the
env is stepped with equal scores so the episode goes on, and the round earns the missing reward. The round after a
reflection also prices that reflection (`rewards.memory_reward`: the positional reward of the next ranking). A
prompt's group shares the user and the env seed, so it shares round 1's candidates; in simulated modes each member
of a group has its own population of simulated users (sharing one LLM), so no member's episode changes another's.

`rollout_func` and not `environment_factory`: the latter exposes env methods as tools the model calls in its chat
template's tool syntax; this policy acts by writing a ranking, which the rollout reads into the env's action.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from starec_env.agents.llm import LLM, Chat
from starec_env.agents.loop import Decision, FeedbackLoop, Round
from starec_env.agents.memory import Memory
from starec_env.agents.parsing import parse_ranking
from starec_env.agents.prompts import PromptConfig
from starec_env.agents.slow import read_reflection
from starec_env.agents.society import AgentConfig, Population
from starec_env.envs import SIMULATED, UserEnv
from starec_env.policies.evidence import EvidenceSource
from starec_env.rewards import positional_reward
from starec_env.trainers.cases import drawn_cases

Sample = Callable[[list[list[int]]], tuple[list[list[int]], list[list[float]] | None]]  # contexts → answers
ANSWER = "\x00answer\x00"  # stands for the policy's last answer while the template renders what follows it


@dataclass
class Episode:
    """One rollout in progress: the env, the policy's memory of the user and the tokens so far."""

    env: UserEnv
    population: Population | None
    memory: Memory
    prompt_ids: list[int]
    messages: Chat  # the conversation so far (answers as text), for rendering the next turn
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)  # 1 where the policy wrote the token
    logprobs: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)  # one per round, as env.step returned
    memory_rewards: list[float] = field(default_factory=list)  # rounds that follow a reflection
    actions: list[list[float]] = field(default_factory=list)
    round: Round | None = None  # the last round played, with what the user chose as its target
    decision: Decision | None = None  # the policy's top pick in it
    parsed: bool = True  # whether the last ranking named any candidate
    reflected: bool = False  # the policy missed the last round: it reflects, and the next round prices that
    done: bool = False


class EnvRollouts:
    """`rollout_func` for `trl.GRPOTrainer`: rows from `prompts(...)`, episodes of `rounds` rounds in `mode`.

    `population_llm` is the simulated user's model in `simulate`/`session` (default the embedded one); the evidence
    source adds the evidence lines (co-liked, popular, a tool's ranking) where the `PromptConfig` asks for them.
    """

    def __init__(self, protocol, prompt: PromptConfig, mode: str = "replay", rounds: int = 2, seed: int = 1,
                 population_llm: LLM | str | None = None, agent: AgentConfig | None = None):
        self.protocol, self.prompt, self.mode, self.rounds, self.seed = protocol, prompt, mode, rounds, seed
        self.loop = FeedbackLoop(None, protocol, prompt)  # prompts only: the trainer's model answers
        self.source = EvidenceSource.of(protocol.train("full"), prompt)
        self.population_llm, self.agent = population_llm, agent or AgentConfig()
        self.populations: list[Population] = []
        self.cases: dict[str, int] = {}  # first prompt → its training user's case index
        self.counts: Counter = Counter()

    # ------------------------------------------------------------------------------------------ dataset rows
    def prompts(self, users: int) -> list[dict]:
        """Round 1's prompt of `users` training users drawn with the seed: the rows of the trainer's dataset."""
        rows = []
        for case in drawn_cases(self.protocol, users, self.seed):
            env = self._env(self._population(0))
            env.begin_episode(self.episode_seed(case), {"case": int(case)})  # where an episode starts, no LLM call
            user, _ = env.starting_point()
            chat = self._ranking_chat(Memory(user, self.protocol.profiles[user]), env.observation())
            self.cases[_key(chat)] = int(case)
            rows.append({"prompt": chat})
        return rows

    # ------------------------------------------------------------------------------------------ rollouts
    def __call__(self, prompts: list[Chat], trainer) -> dict:
        """TRL's entry point: each prompt (already repeated once per group member) becomes one episode."""
        if not hasattr(trainer, "_generate_single_turn"):
            raise RuntimeError("this TRL version's GRPOTrainer has no _generate_single_turn; install trl>=1.16")
        return self.play(prompts, trainer.processing_class,
                         lambda contexts: trainer._generate_single_turn(contexts, None, {}, 1))

    def play(self, prompts: Sequence[Chat], tokenizer, sample: Sample) -> dict:
        """Play every prompt's episode to its end, all episodes in lockstep (one generation call per turn)."""
        episodes = self._start(prompts, tokenizer)
        for _ in range(self.rounds):
            active = [e for e in episodes if not e.done]
            if not active:
                break
            self._rank(active, tokenizer, sample)
            reflecting = [e for e in active if not e.done and e.reflected]
            if reflecting:
                self._reflect(reflecting, tokenizer, sample)
        return {"prompt_ids": [e.prompt_ids for e in episodes], "completion_ids": [e.completion_ids for e in episodes],
                "logprobs": [e.logprobs for e in episodes], "env_mask": [e.env_mask for e in episodes],
                "env_rewards": [e.rewards for e in episodes], "memory_rewards": [e.memory_rewards for e in episodes],
                "actions": [e.actions for e in episodes]}

    def _start(self, prompts: Sequence[Chat], tokenizer) -> list[Episode]:
        seen: Counter = Counter()
        episodes = []
        for chat in prompts:
            case = self.case_of(chat)
            member, seen[case] = seen[case], seen[case] + 1
            population = self._population(member)
            env = self._env(population)
            env.begin_episode(self.episode_seed(case), {"case": case})
            user, _ = env.starting_point()
            episodes.append(Episode(env, population, Memory(user, self.protocol.profiles[user]),
                                    _ids(tokenizer, tokenizer.apply_chat_template(
                                        chat, tokenize=False, add_generation_prompt=True)), list(chat)))
        for population in {id(e.population): e.population for e in episodes if e.population is not None}.values():
            mine = [e for e in episodes if e.population is population]
            population.start(*zip(*(e.env.starting_point() for e in mine)))
        return episodes

    def _rank(self, episodes: list[Episode], tokenizer, sample: Sample) -> None:
        """One round: every policy ranks its candidates, the env steps, a miss asks for a reflection."""
        for episode in episodes:
            if episode.completion_ids:  # round 1's prompt is the row itself
                chat = self._ranking_chat(episode.memory, episode.env.observation())
                self._add_turn(episode, tokenizer, chat)
        answers = self._sample(episodes, tokenizer, sample)
        rounds = [_round(e.env.observation()) for e in episodes]
        actions = []
        for episode, round_, answer in zip(episodes, rounds, answers):
            parsed = parse_ranking(answer, ["?"] * len(round_.candidates))
            self.counts[f"ranking_{parsed.status}"] += 1
            actions.append(parsed.scores() if parsed.status != "failed" else np.zeros(len(round_.candidates)))
            episode.actions.append([float(a) for a in actions[-1]])
            episode.parsed = parsed.status != "failed"
        for (episode, round_, action), (_, reward, terminated, truncated, info) in zip(
                zip(episodes, rounds, actions), self._step(episodes, actions)):
            reward = reward if episode.parsed else float(positional_reward(None)[0])
            episode.rewards.append(reward)
            if episode.reflected:  # rewards.memory_reward: the round after a rewrite prices it
                episode.memory_rewards.append(reward)
            episode.done = terminated or truncated
            episode.round = Round(round_.history, round_.candidates, info["choice"])
            episode.decision = self.loop.top_pick(round_, action)
            episode.reflected = episode.decision.pick != info["choice"]

    def _reflect(self, episodes: list[Episode], tokenizer, sample: Sample) -> None:
        """Slow thinking on a miss: the reflection prompt about the user's real choice; the new summary is kept."""
        openings = []
        for episode in episodes:
            target = self.protocol.item_text(episode.round.target)
            openings.append(f"Reflection: the user chose {target} because")
            chat = self.loop.reflection_chat(episode.memory, episode.round, episode.decision)
            self._add_turn(episode, tokenizer, chat, prefill=openings[-1])
        for episode, opening, answer in zip(episodes, openings, self._sample(episodes, tokenizer, sample)):
            reflection = read_reflection(answer, episode.memory.summary, opening[len("Reflection: "):])
            self.counts[f"reflection_{reflection.status}"] += 1
            episode.memory.record_reflection(len(episode.round.history), episode.round.target, episode.decision.pick,
                                             reflection)

    # ------------------------------------------------------------------------------------------ helpers
    def _step(self, episodes: list[Episode], actions: list[np.ndarray]) -> list[tuple]:
        """`env.step` for every episode, each population's feedback requests answered in one batched call."""
        requests = [e.env.request(a) for e, a in zip(episodes, actions)]
        feedback: list = [None] * len(episodes)
        for population in {id(e.population): e.population for e in episodes if e.population is not None}.values():
            mine = [i for i, e in enumerate(episodes) if e.population is population]
            for i, answer in zip(mine, population.respond([requests[i] for i in mine])):
                feedback[i] = answer
        return [e.env.finish(answer) for e, answer in zip(episodes, feedback)]

    def _sample(self, episodes: list[Episode], tokenizer, sample: Sample) -> list[str]:
        """One generation call for every episode's next answer, appended as the policy's own tokens."""
        completions, logprobs = sample([e.prompt_ids + e.completion_ids for e in episodes])
        texts = []
        for i, (episode, ids) in enumerate(zip(episodes, completions)):
            ids = list(ids)
            episode.completion_ids += ids
            episode.env_mask += [1] * len(ids)
            episode.logprobs += list(logprobs[i]) if logprobs is not None else [0.0] * len(ids)
            texts.append(tokenizer.decode(ids, skip_special_tokens=True).strip())
            if episode.messages[-1]["role"] == "assistant":  # the answer continues a prefill
                episode.messages[-1] = {"role": "assistant", "content": f"{episode.messages[-1]['content']} {texts[-1]}"}
            else:
                episode.messages.append({"role": "assistant", "content": texts[-1]})
        return texts

    def _add_turn(self, episode: Episode, tokenizer, chat: Chat, prefill: str = "") -> None:
        """The env's tokens between the policy's last answer and its next one: the end of that answer's turn, the
        next prompt's messages (a system message equal to the conversation's first is not repeated) and a prefill."""
        new = [m for m in chat if not (m["role"] == "system" and m == episode.messages[0])]
        last = [*episode.messages[:-1], {"role": "assistant", "content": ANSWER}, *new]
        if prefill:
            text = tokenizer.apply_chat_template([*last, {"role": "assistant", "content": prefill}], tokenize=False,
                                                 continue_final_message=True)
        else:
            text = tokenizer.apply_chat_template(last, tokenize=False, add_generation_prompt=True)
        between = text.split(ANSWER, 1)[1]
        ended = episode.completion_ids[-1:] and tokenizer.decode(episode.completion_ids[-1:])
        if ended and ended == tokenizer.eos_token and between.startswith(ended):
            between = between[len(ended):]  # the answer's own end-of-turn token is already there
        ids = _ids(tokenizer, between)
        episode.completion_ids += ids
        episode.env_mask += [0] * len(ids)
        episode.logprobs += [0.0] * len(ids)
        episode.messages += [*new, *([{"role": "assistant", "content": prefill}] if prefill else [])]

    def _ranking_chat(self, memory: Memory, observation: dict) -> Chat:
        round_ = _round(observation)
        if self.source is None:
            return self.loop.ranking_chat(memory, round_)
        evidence, = self.source.evidence([memory.user], [round_.history], [round_.candidates], self.rounds)
        return self.loop.ranking_chat(memory, round_, **evidence.lines())

    def _env(self, population: Population | None) -> UserEnv:
        return UserEnv(protocol=self.protocol, mode=self.mode, rounds=self.rounds, split="train",
                       population=population)

    def _population(self, member: int) -> Population | None:
        """The simulated users of group member `member` (one population each, one LLM for all)."""
        if self.mode not in SIMULATED:
            return None
        while len(self.populations) <= member:
            llm = self.populations[0].llm if self.populations else self.population_llm
            self.populations.append(Population(self.protocol, llm, self.agent))
        return self.populations[member]

    def episode_seed(self, case: int) -> int:
        """The env seed of a case's episodes: one per case, shared by its group."""
        return int(self.seed + case)

    def case_of(self, prompt: Chat) -> int:
        """The training case whose episode starts with `prompt` (one that `prompts` wrote)."""
        if _key(prompt) not in self.cases:
            raise KeyError("a GRPO prompt that EnvRollouts.prompts did not write: rollouts can only replay the "
                           "episodes whose first prompts they made")
        return self.cases[_key(prompt)]


def _round(observation: dict) -> Round:
    history = observation["history"]
    return Round(history[history >= 0], observation["candidates"])


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def _key(chat: Chat) -> str:
    return json.dumps([[m["role"], m["content"]] for m in chat])


def episode_reward(completions, env_rewards, **_) -> list[float]:
    """The episode's mean round reward, as `env.step` returned it (TRL reward function)."""
    return [float(np.mean(rewards)) for rewards in env_rewards]


def reflection_reward(completions, memory_rewards, **_) -> list[float | None]:
    """The mean memory-update reward of the episode's reflections; None (left out) where the policy never missed."""
    return [float(np.mean(rewards)) if len(rewards) else None for rewards in memory_rewards]
