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

from agents import fast, prompts, slow
from agents.llm import LLM, Chat
from policies.evidence import CoLikedGraph, Evidence
from starec_env.envs import UserEnv
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


def training_cases(protocol: Protocol, users: int, seed: int, rounds: int = 1, history: int = 20,
                   graph: CoLikedGraph | None = None) -> list[TrainingCase]:
    """One ranking case per (user, round) for `users` users drawn with `seed`; rounds of a user are consecutive.
    With a `graph`, the prompt ends with the evidence lines of the most co-liked (and, if the graph names them, most
    popular) candidates, from other users' interactions only, as in the STARec policy with `evidence=True`."""
    env = UserEnv(protocol=protocol, rounds=rounds, split="train")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(protocol.test), size=min(users, len(protocol.test)), replace=False)
    cases = []
    for index in chosen:
        observation, _ = env.reset(seed=int(seed + index), options={"case": int(index)})
        for _ in range(rounds):
            candidates, seen = observation["candidates"], observation["history"]
            observation, _, _, _, info = env.step(np.zeros(len(candidates)))  # replay: the choice is the logged item
            cases.append(_ranking_case(protocol, int(observation["user"]), seen[seen >= 0], candidates,
                                       int(np.flatnonzero(candidates == info["choice"])[0]), history, graph))
    return cases


def reflection_cases(protocol: Protocol, llm: LLM, users: int, seed: int, history: int = 20) -> list[ReflectionCase]:
    """Run summary → rank → compare over two training rounds per user; every miss becomes a reflection case."""
    rounds = training_cases(protocol, users, seed, rounds=2, history=history)
    pairs = list(zip(rounds[::2], rounds[1::2]))  # each user's rounds t and t+1
    profiles = [protocol.profiles[now.user] for now, _ in pairs]
    histories = [protocol.titles(now.history[-history:]) for now, _ in pairs]
    summaries = slow.summarize(llm, [prompts.summary_chat(h, p) for h, p in zip(histories, profiles)])
    scores = fast.rank_by_likelihood(llm, [prompts.next_item_chat(h, p, s)
                                           for h, p, s in zip(histories, profiles, summaries)],
                                     [protocol.titles(now.candidates) for now, _ in pairs])
    cases = []
    for (now, after), past, profile, summary, row in zip(pairs, histories, profiles, summaries, scores):
        pick, target = now.candidates[int(np.argmax(row))], now.candidates[now.target_index]
        if pick == target:
            continue  # a hit needs no reflection, as in the STARec policy's loop
        target_title = protocol.item_text(target)
        chat = prompts.reflection_chat(summary, past, target_title, f"chose {protocol.item_text(pick)}",
                                       f"chose {target_title}", profile)
        cases.append(ReflectionCase(now.user, summary, target_title, chat, after))
    return cases


def _ranking_case(protocol, user, history, candidates, target_index, length, graph) -> TrainingCase:
    evidence = graph.evidence(history, candidates, without_user=user) if graph is not None else None
    lines = {"evidence": evidence.line(), "popular": evidence.popular_line()} if evidence else {}
    chat = prompts.ranking_chat(protocol.titles(history[-length:]), protocol.titles(candidates),
                                protocol.profiles[user], think=True, **lines)
    return TrainingCase(int(user), [int(i) for i in history], [int(i) for i in candidates], int(target_index), chat,
                        evidence)
