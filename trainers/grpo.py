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

from dataclasses import dataclass, field
from pathlib import Path

from starec_env.agents import slow
from starec_env.agents.llm import LLM, load_llm
from starec_env.agents.loop import FeedbackLoop, Round
from starec_env.agents.memory import Memory
from starec_env.agents.parsing import parse_ranking
from starec_env.agents.prompts import PromptConfig
from starec_env.policies.evidence import CoLikedGraph
from starec_env.metrics import target_rank
from starec_env.protocol import Protocol
from starec_env.rewards import memory_reward, positional_reward
from starec_env.trainers.cases import ReflectionCase, reflection_cases, training_cases
from starec_env.trainers.curves import write_curves
from starec_env.trainers.sft import hardware, keep_freed_memory, last_checkpoint, save_merged


@dataclass(frozen=True)
class GRPORunConfig:
    """GRPO's budget and optimiser; what the prompts show is the pipeline's `PromptConfig`."""

    steps: int = field(default=16, metadata={"help": "optimizer steps"})
    generations: int = field(default=8, metadata={"help": "completions per prompt (the group)"})
    prompts_per_step: int = field(default=2, metadata={"help": "prompts per optimizer step"})
    micro_batch: int = field(default=4, metadata={
        "help": "completions per forward/backward pass; must divide generations × prompts_per_step (smaller: less "
                "memory)"})
    beta: float = field(default=1e-3, metadata={"help": "KL coefficient to the reference (SFT) model"})
    learning_rate: float = field(default=1e-5, metadata={"help": "peak learning rate (linear decay)"})
    temperature: float = field(default=1.0, metadata={
        "help": "sampling temperature of the groups (higher: fewer groups with no reward spread)"})
    max_completion_length: int = field(default=128, metadata={
        "help": "tokens per completion (a <think> naming three labels + 20 labels is about 80)"})
    save_every: int = field(default=10, metadata={"help": "steps between checkpoints"})
    users: int = field(default=40, metadata={"help": "users whose last training round is a ranking prompt"})
    reflection_users: int = field(default=48, metadata={
        "help": "users whose feedback loop is replayed; each miss is a reflection prompt"})
    bf16: bool | None = field(default=None, metadata={
        "help": "bfloat16 autocast (default: where bf16 matrix products are native)"})
    seed: int = field(default=1, metadata={"help": "draw of training users (another than distillation's)"})


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

    def __init__(self, scorer: LLM, protocol: Protocol, cases: list[ReflectionCase], prompt: PromptConfig):
        self.loop, self.cases = FeedbackLoop(scorer, protocol, prompt), cases

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
        profiles = self.loop.catalogue.profiles
        memories = [Memory(case.user, profiles[case.user], summary=r.summary) for case, r in zip(cases, read)]
        rounds = [Round(case.follow_up.history, case.follow_up.candidates) for case in cases]
        scores = self.loop.rank_by_likelihood(memories, rounds)
        ranks = [None if r.status == "failed" else target_rank(row, case.follow_up.target_index)
                 for case, r, row in zip(cases, read, scores)]
        return [float(reward) for reward in memory_reward(ranks)]


def _text(completion) -> str:
    return completion[0]["content"] if isinstance(completion, list) else completion


def grpo(model: str, protocol: Protocol, out: Path, config: GRPORunConfig, prompt: PromptConfig) -> Path:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    group_batch = config.generations * config.prompts_per_step
    if group_batch % config.micro_batch:
        raise ValueError(f"micro_batch {config.micro_batch} must divide "
                         f"generations × prompts_per_step = {group_batch}")
    keep_freed_memory()
    scorer = load_llm(f"hf:{model}")
    reflections = reflection_cases(protocol, scorer, config.reflection_users, config.seed, prompt)
    graph = CoLikedGraph(protocol.train("full"), popular=prompt.popular) if prompt.evidence else None
    rows = [{"prompt": case.chat, "target_index": case.target_index, "n_candidates": len(case.candidates),
             "reflection": -1}
            for case in training_cases(protocol, config.users, config.seed, prompt, 1, graph)]
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
    rewards = [ranking_reward, MemoryReward(scorer, protocol, reflections, prompt)]
    trainer = GRPOTrainer(model=model, reward_funcs=rewards, args=args, train_dataset=dataset)
    trainer.train(resume_from_checkpoint=last_checkpoint(out / "checkpoints"))
    final = out / "final"
    save_merged(trainer, final)
    write_curves(trainer.state.log_history, out, "grpo", ("reward", "rewards/ranking_reward/mean",
                                                          "rewards/memory_reward/mean", "kl", "loss",
                                                          "completions/mean_length"))
    return final
