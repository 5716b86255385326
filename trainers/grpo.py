"""GRPO on prompts and rewards from the environment (TRL GRPOTrainer), anchored by KL to the SFT reference.

Prompts are rounds of the Gymnasium env's `train` split (the user's last training interactions), written in the
STARec policy's fast-thinking format. Each prompt gets a group of `generations` completions; a completion's reward is
the env's positional reward for the ranking it writes (`starec_env.rewards`), and an answer that names no candidate
earns the "missing" reward. KL β = 1e-3 to the starting (SFT) model. Because this is TRL's trainer,
`accelerate launch` spreads it over GPUs and `use_vllm=True` speeds up generation where vLLM runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from agents.parsing import parse_ranking
from starec_env.metrics import target_rank
from starec_env.protocol import Protocol
from starec_env.rewards import positional_reward
from trainers.curves import write_curves
from trainers.distill import DistillConfig, training_cases
from trainers.sft import hardware, last_checkpoint, save_merged


@dataclass(frozen=True)
class GRPORunConfig:
    steps: int = 20
    generations: int = 8  # completions per prompt (the group)
    prompts_per_step: int = 2
    micro_batch: int = 4  # completions per forward/backward: activations of 16 × ~800 tokens OOM-killed a 24 GB box
    beta: float = 1e-3  # KL to the reference (SFT) model
    learning_rate: float = 2e-6
    temperature: float = 1.0
    max_completion_length: int = 128
    save_every: int = 10
    users: int = 200
    seed: int = 1  # a different draw of training users than distillation's


def ranking_reward(completions, target_index, n_candidates, **_) -> list[float]:
    """The env's positional reward of each completion's ranking; unparseable answers get the missing reward."""
    rewards = []
    for completion, target, n in zip(completions, target_index, n_candidates):
        text = completion[0]["content"] if isinstance(completion, list) else completion
        parsed = parse_ranking(text, ["?"] * int(n))
        rank = target_rank(parsed.scores(), int(target)) if parsed.status != "failed" else None
        rewards.append(float(positional_reward(rank)[0]))
    return rewards


def grpo(model: str, protocol: Protocol, out: Path, config: GRPORunConfig = GRPORunConfig()) -> Path:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    cases = training_cases(protocol, replace(DistillConfig(), users=config.users, seed=config.seed))
    dataset = Dataset.from_list([{"prompt": case.chat, "target_index": case.target_index,
                                  "n_candidates": len(case.candidates)} for case in cases])
    group_batch = config.generations * config.prompts_per_step
    if group_batch % config.micro_batch:
        raise ValueError(f"micro_batch {config.micro_batch} must divide generations × prompts_per_step = {group_batch}")
    args = GRPOConfig(output_dir=str(out / "checkpoints"), max_steps=config.steps,
                      per_device_train_batch_size=config.micro_batch,
                      gradient_accumulation_steps=group_batch // config.micro_batch,
                      num_generations=config.generations, beta=config.beta, learning_rate=config.learning_rate,
                      temperature=config.temperature, max_completion_length=config.max_completion_length,
                      logging_steps=1, save_steps=config.save_every, save_total_limit=2, report_to="none",
                      **hardware(), seed=config.seed, disable_tqdm=False)
    trainer = GRPOTrainer(model=model, reward_funcs=ranking_reward, args=args, train_dataset=dataset)
    trainer.train(resume_from_checkpoint=last_checkpoint(out / "checkpoints"))
    final = out / "final"
    save_merged(trainer, final)
    write_curves(trainer.state.log_history, out, "grpo", ("reward", "kl", "loss", "completions/mean_length"))
    return final
