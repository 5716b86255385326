"""Training prompts from the Gymnasium env's feedback loop: ranking rounds (fast thinking) and reflections (slow).

Every case comes from the env's `train` split — the user's last training interactions with 19 sampled negatives — so
no validation or test target is ever shown. A reflection case replays two consecutive rounds of one user: the agent
writes a preference summary from the history before round t, ranks round t with it (fast thinking by likelihood),
and on a miss is asked to reflect on its prediction against the real choice and rewrite the summary
(`prompts.reflection_chat`). Round t+1 comes with it: ranked with the rewritten summary, it prices the rewrite
(`rewards.memory_reward`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from starec_env.agents.llm import LLM, Chat
from starec_env.agents.loop import FeedbackLoop, Round
from starec_env.agents.memory import Memory
from starec_env.agents.prompts import PromptConfig
from starec_env.envs import UserEnv
from starec_env.policies.evidence import Evidence, EvidenceSource
from starec_env.protocol import Protocol


@dataclass
class TrainingCase:
    user: int
    history: list[int]
    candidates: list[int]
    target_index: int
    chat: Chat  # the fast-thinking prompt the student will see (the STARec policy's own format)
    evidence: Evidence | None  # what the prompt's evidence lines say; None without evidence


@dataclass
class ReflectionCase:
    user: int
    summary: str  # the memory before reflecting
    target: str  # the real choice's title, which the reflection must explain
    chat: Chat  # the reflection prompt: memory, target, the agent's prediction and the real behaviour
    follow_up: TrainingCase  # the next round, ranked with the rewritten summary for the memory-update reward


def training_cases(protocol: Protocol, users: int, seed: int, prompt: PromptConfig, rounds: int = 1,
                   source: EvidenceSource | None = None) -> list[TrainingCase]:
    """One ranking case per (user, round) for `users` users drawn with `seed`; rounds of a user are consecutive.
    With a `source`, the prompt ends with the evidence lines the prompt config asks for (co-liked, popular, a
    tool's ranking), none of them built from the case itself, as in the STARec policy."""
    env = UserEnv(protocol=protocol, rounds=rounds, split="train")
    loop = FeedbackLoop(None, protocol, prompt)  # prompts only: cases are written, not answered
    played = []  # (user, history, candidates, target index) per round
    for index in drawn_cases(protocol, users, seed):
        observation, _ = env.reset(seed=int(seed + index), options={"case": int(index)})
        for _ in range(rounds):
            candidates, seen = observation["candidates"], observation["history"]
            observation, _, _, _, info = env.step(np.zeros(len(candidates)))  # replay: the choice is the logged item
            played.append((int(observation["user"]), [int(i) for i in seen[seen >= 0]], [int(i) for i in candidates],
                           int(np.flatnonzero(candidates == info["choice"])[0])))
    found = [None] * len(played)
    if source is not None and played:
        drawn_users, histories, rows, _ = map(list, zip(*played))
        found = source.evidence(drawn_users, histories, rows, train_rounds=rounds)
    return [_ranking_case(loop, *case, evidence) for case, evidence in zip(played, found)]


def reflection_cases(protocol: Protocol, llm: LLM, users: int, seed: int,
                     prompt: PromptConfig) -> list[ReflectionCase]:
    """Run summary → rank → compare over two training rounds per user; every miss becomes a reflection case."""
    rounds = training_cases(protocol, users, seed, prompt, rounds=2)
    pairs = list(zip(rounds[::2], rounds[1::2]))  # each user's rounds t and t+1
    loop = FeedbackLoop(llm, protocol, prompt)
    memories = [Memory(now.user, protocol.profiles[now.user], now.history) for now, _ in pairs]
    loop.summarize(memories, [m.history for m in memories])
    played = [Round(now.history, now.candidates, now.candidates[now.target_index]) for now, _ in pairs]
    cases = []
    for memory, (now, after), round_, (decision, _) in zip(memories, pairs, played,
                                                            loop.step(memories, played, loop.likelihood_decide,
                                                                      reflect="never")):
        if decision.pick == round_.target:
            continue  # a hit needs no reflection, as in the STARec policy's loop
        cases.append(ReflectionCase(now.user, memory.summary, protocol.item_text(round_.target),
                                    loop.reflection_chat(memory, round_, decision), after))
    return cases


def drawn_cases(protocol: Protocol, users: int, seed: int) -> np.ndarray:
    """The case indices of `users` training users drawn with `seed` (each user's episode ends before validation)."""
    return np.random.default_rng(seed).choice(len(protocol.test), size=min(users, len(protocol.test)), replace=False)


def _ranking_case(loop: FeedbackLoop, user: int, history: list[int], candidates: list[int], target_index: int,
                  evidence: Evidence | None) -> TrainingCase:
    chat = loop.ranking_chat(Memory(user, loop.catalogue.profiles[user]), Round(history, candidates),
                             **(evidence.lines() if evidence else {}))
    return TrainingCase(user, history, candidates, target_index, chat, evidence)
