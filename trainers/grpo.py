"""GRPO on prompts and rewards from the environment (TRL GRPOTrainer), anchored by KL to the SFT reference.

Prompts are the env's simulated feedback loop over training interactions (`trainers.cases`): ranking rounds in the
STARec policy's fast-thinking format (with the co-liked evidence line unless `evidence=False`), and reflections on a
missed round (slow thinking: rewrite the preference summary). Each prompt gets a group of `generations` completions.
A ranking earns the env's positional reward (`starec_env.rewards`; an answer that names no candidate earns the
"missing" reward); a reflection earns the memory-update reward — the positional reward of the user's next round,
ranked by likelihood with the rewritten summary by the frozen starting model. KL β = 1e-3 to the starting (SFT)
model. Because this is TRL's trainer, `accelerate launch` spreads it over GPUs and `use_vllm=True` speeds up
generation where vLLM runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents import fast, prompts, slow
from agents.llm import LLM, load_llm
from agents.parsing import parse_ranking
from policies.evidence import CoLikedGraph
from starec_env.metrics import target_rank
from starec_env.protocol import Protocol
from starec_env.rewards import memory_reward, positional_reward
from trainers.cases import ReflectionCase, reflection_cases, training_cases
from trainers.curves import write_curves
from trainers.sft import hardware, keep_freed_memory, last_checkpoint, save_merged


@dataclass(frozen=True)
class GRPORunConfig:
    steps: int = 16
    generations: int = 8  # completions per prompt (the group)
    prompts_per_step: int = 2
    micro_batch: int = 4  # completions per forward/backward: activations of 16 × ~800 tokens OOM-killed a 24 GB box
    beta: float = 1e-3  # KL to the reference (SFT) model
    learning_rate: float = 1e-5  # at 2e-6, 12 steps left a 135M SFT policy unchanged (KL ≤ 8e-4); 1e-5 moved it
    temperature: float = 1.0
    max_completion_length: int = 128  # a `<think>` naming three labels + 20 labels is ~80 tokens
    save_every: int = 10
    users: int = 40  # users whose last training round is a ranking prompt
    reflection_users: int = 48  # users whose feedback loop is replayed; each miss is a reflection prompt
    history: int = 20  # most recent training items shown in a prompt
    evidence: bool = True  # the co-liked evidence line in ranking prompts, as in distillation and the STARec policy
    popular: int = 0  # with evidence, also name the N most popular candidates (the STARec policy's `popular`)
    bf16: bool | None = None  # bfloat16 autocast; None → where bf16 matrix products are native
    seed: int = 1  # a different draw of training users than distillation's


def ranking_reward(completions, target_index, n_candidates, **_) -> list[float | None]:
    """The env's positional reward of each completion's ranking; unparseable answers get the missing reward.
    Reflection prompts (no candidates) get None: TRL leaves them to the memory reward."""
    rewards = []
    for completion, target, n in zip(completions, target_index, n_candidates):
        if not n:
            rewards.append(None)
            continue
        parsed = parse_ranking(_text(completion), ["?"] * int(n))
        rank = target_rank(parsed.scores(), int(target)) if parsed.status != "failed" else None
        rewards.append(float(positional_reward(rank)[0]))
    return rewards


class MemoryReward:
    """Reward of a reflection: its rewritten summary ranks the user's next round (likelihood, frozen `scorer`), and
    the target's rank there is priced by `rewards.memory_reward`. A reflection with no usable summary is missing."""

    __name__ = "memory_reward"  # TRL logs each reward function under its name

    def __init__(self, scorer: LLM, protocol: Protocol, cases: list[ReflectionCase], history: int = 20):
        self.scorer, self.protocol, self.cases, self.history = scorer, protocol, cases, history

    def __call__(self, completions, reflection, **_) -> list[float | None]:
        rewards: list[float | None] = [None] * len(completions)
        rows = [i for i, case in enumerate(reflection) if case >= 0]
        if rows:
            scored = self.follow_up([self.cases[reflection[i]] for i in rows], [_text(completions[i]) for i in rows])
            for i, reward in zip(rows, scored):
                rewards[i] = reward
        return rewards

    def follow_up(self, cases: list[ReflectionCase], answers: list[str]) -> list[float]:
        read = [slow.read_reflection(answer, case.summary) for case, answer in zip(cases, answers)]
        chats = [prompts.next_item_chat(self.protocol.titles(case.follow_up.history[-self.history:]),
                                        self.protocol.profiles[case.user], reflection.summary)
                 for case, reflection in zip(cases, read)]
        scores = fast.rank_by_likelihood(self.scorer, chats, [self.protocol.titles(c.follow_up.candidates)
                                                              for c in cases])
        ranks = [None if r.status == "failed" else target_rank(np.asarray(row), case.follow_up.target_index)
                 for case, r, row in zip(cases, read, scores)]
        return [float(reward) for reward in memory_reward(ranks)]


def _text(completion) -> str:
    return completion[0]["content"] if isinstance(completion, list) else completion


def grpo(model: str, protocol: Protocol, out: Path, config: GRPORunConfig = GRPORunConfig()) -> Path:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    group_batch = config.generations * config.prompts_per_step
    if group_batch % config.micro_batch:
        raise ValueError(f"micro_batch {config.micro_batch} must divide "
                         f"generations × prompts_per_step = {group_batch}")
    keep_freed_memory()
    scorer = load_llm(f"hf:{model}")
    reflections = reflection_cases(protocol, scorer, config.reflection_users, config.seed, config.history)
    graph = CoLikedGraph(protocol.train("full"), popular=config.popular) if config.evidence else None
    rows = [{"prompt": case.chat, "target_index": case.target_index, "n_candidates": len(case.candidates),
             "reflection": -1}
            for case in training_cases(protocol, config.users, config.seed, 1, config.history, graph)]
    rows += [{"prompt": case.chat, "target_index": -1, "n_candidates": 0, "reflection": i}
             for i, case in enumerate(reflections)]
    dataset = Dataset.from_list(rows)
    args = GRPOConfig(output_dir=str(out / "checkpoints"), max_steps=config.steps,
                      per_device_train_batch_size=config.micro_batch,
                      gradient_accumulation_steps=group_batch // config.micro_batch,
                      num_generations=config.generations, beta=config.beta, learning_rate=config.learning_rate,
                      temperature=config.temperature, max_completion_length=config.max_completion_length,
                      logging_steps=1, save_steps=config.save_every, save_total_limit=2, report_to="none",
                      **hardware(config.bf16), seed=config.seed, disable_tqdm=False)
    rewards = [ranking_reward, MemoryReward(scorer, protocol, reflections, config.history)]
    trainer = GRPOTrainer(model=model, reward_funcs=rewards, args=args, train_dataset=dataset)
    trainer.train(resume_from_checkpoint=last_checkpoint(out / "checkpoints"))
    final = out / "final"
    save_merged(trainer, final)
    write_curves(trainer.state.log_history, out, "grpo", ("reward", "rewards/ranking_reward/mean",
                                                          "rewards/memory_reward/mean", "kl", "loss",
                                                          "completions/mean_length"))
    return final
