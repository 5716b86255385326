"""GRPO on episodes of the environment (TRL GRPOTrainer), anchored by KL to the SFT reference.

Each prompt is round 1 of a training user's episode and each of its `generations` completions plays that episode
to the end in the env (`trainers.rollouts`, TRL's `rollout_func`): rank → the env's reward → on a miss, reflect and
rewrite the preference summary → rank the next round with it. TRL computes the group advantages, the loss, the KL
(β = 1e-3 to the starting model) and the logs from those rollouts: `episode_reward` is the mean round reward
`env.step` returned, `reflection_reward` the reward of the rounds that follow a reflection (the memory-update
reward). `mode="replay"` rewards the logged next items; `mode="simulate"` the simulated user's picks and likes.
Because this is TRL's trainer, `accelerate launch` spreads it over processes or GPUs and `use_vllm=True` generates
with vLLM where it runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from starec_env.agents.prompts import PromptConfig
from starec_env.protocol import Protocol
from starec_env.trainers.rollouts import EnvRollouts, episode_reward, reflection_reward
from starec_env.trainers.curves import write_curves
from starec_env.trainers.sft import hardware, keep_freed_memory, last_checkpoint, save_merged


TRAINING_PROMPT = PromptConfig(evidence=True, think=True)  # what `starec train` and `starec grpo` show by default


@dataclass(frozen=True)
class GRPORunConfig:
    """GRPO's budget and optimiser; what the prompts show is the pipeline's `PromptConfig`."""

    steps: int = field(default=16, metadata={"help": "optimizer steps"})
    generations: int = field(default=8, metadata={"help": "completions per prompt (the group)"})
    prompts_per_step: int = field(default=2, metadata={"help": "prompts per optimizer step"})
    micro_batch: int | None = field(default=None, metadata={
        "help": "episodes per forward/backward pass; × processes it must divide generations × prompts_per_step "
                "(default 4 for one-round episodes, 1 for longer ones: smaller needs less memory)"})
    beta: float = field(default=1e-3, metadata={"help": "KL coefficient to the reference (SFT) model"})
    learning_rate: float = field(default=1e-5, metadata={"help": "peak learning rate (linear decay)"})
    temperature: float = field(default=1.0, metadata={
        "help": "sampling temperature of the groups (higher: fewer groups with no reward spread)"})
    max_completion_length: int = field(default=128, metadata={
        "help": "tokens per answer, ranking or reflection (a <think> naming three labels + 20 labels is about 80)"})
    save_every: int = field(default=10, metadata={"help": "steps between checkpoints"})
    users: int = field(default=40, metadata={"help": "training users whose episodes are the prompts"})
    mode: str = field(default="replay", metadata={
        "help": "what rewards the rollouts: replay (logged next items), simulate or session (the simulated user)"})
    rounds: int = field(default=1, metadata={
        "help": "rounds per episode; from 2 on the policy reflects after each miss and the next round rewards that "
                "(each round makes an episode longer and a CPU step several times slower)"})
    simulator: str = field(default="", metadata={
        "help": "the simulated user's LLM spec in simulate/session mode (default: the embedded model)"})
    bf16: bool | None = field(default=None, metadata={
        "help": "bfloat16 autocast (default: where bf16 matrix products are native)"})
    vllm: str = field(default="", metadata={
        "help": "generate with vLLM: colocate (in the training processes) or server (`trl vllm-serve` at "
                "--grpo-vllm-url); default: transformers"})
    vllm_url: str = field(default="http://127.0.0.1:8000", metadata={"help": "the vLLM server of --grpo-vllm server"})
    seed: int = field(default=1, metadata={"help": "draw of training users (another than distillation's)"})


@dataclass
class GRPOJob:
    """`starec grpo`: GRPO alone on env episodes from a given model — the entry point `accelerate launch` spreads
    over processes or GPUs (each process plays the episodes of its share of the prompts)."""

    model: str = field(default="", metadata={"help": "starting model: an SFT folder or a HF id (default: embedded)"})
    dataset: str = field(default="ml-1m", metadata={"help": "a registered dataset name or a path to your own data"})
    out: str = field(default="", metadata={"help": "run folder (default runs/grpo-<dataset>); rerun it to resume"})
    prompt: PromptConfig = field(default_factory=lambda: TRAINING_PROMPT, metadata={"prefix": ""})
    grpo: GRPORunConfig = field(default_factory=GRPORunConfig)


def run_grpo(job: GRPOJob) -> Path:
    from starec_env.protocol import build_protocol, default_config
    from starec_env.trainers.sft import model_path

    protocol = build_protocol(job.dataset, default_config(job.dataset))
    return grpo(model_path(job.model or None), protocol, Path(job.out or f"runs/grpo-{job.dataset}"), job.grpo,
                job.prompt)


def grpo(model: str, protocol: Protocol, out: Path, config: GRPORunConfig, prompt: PromptConfig) -> Path:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    group_batch = config.generations * config.prompts_per_step
    micro_batch = config.micro_batch or (4 if config.rounds == 1 else 1)
    processes = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch / torchrun
    if config.vllm not in ("", "colocate", "server"):
        raise ValueError(f"vllm must be colocate, server or empty (transformers), got {config.vllm!r}")
    if group_batch % (micro_batch * processes):
        raise ValueError(f"micro_batch {micro_batch} × {processes} processes must divide "
                         f"generations × prompts_per_step = {group_batch}")
    keep_freed_memory()
    rollouts = EnvRollouts(protocol, prompt, config.mode, config.rounds, config.seed, config.simulator or None)
    dataset = Dataset.from_list(rollouts.prompts(config.users))
    args = GRPOConfig(output_dir=str(out / "checkpoints"), max_steps=config.steps,
                      per_device_train_batch_size=micro_batch,
                      gradient_accumulation_steps=group_batch // (micro_batch * processes),
                      num_generations=config.generations, beta=config.beta, learning_rate=config.learning_rate,
                      temperature=config.temperature, max_completion_length=config.max_completion_length,
                      logging_steps=1, save_steps=config.save_every, save_total_limit=2, report_to="none",
                      **hardware(config.bf16), seed=config.seed, disable_tqdm=False, **_vllm(config))
    trainer = GRPOTrainer(model=model, reward_funcs=[episode_reward, reflection_reward], args=args,
                          train_dataset=dataset, rollout_func=rollouts)
    trainer.train(resume_from_checkpoint=last_checkpoint(out / "checkpoints"))
    final = out / "final"
    trainer.accelerator.wait_for_everyone()
    if not trainer.accelerator.is_main_process:
        return final
    save_merged(trainer, final)
    write_curves(trainer.state.log_history, out, "grpo", ("reward", "rewards/episode_reward/mean",
                                                          "rewards/reflection_reward/mean", "kl", "loss",
                                                          "completions/mean_length"))
    return final


def _vllm(config: GRPORunConfig) -> dict:
    if not config.vllm:
        return {}
    server = {"vllm_server_base_url": config.vllm_url} if config.vllm == "server" else {}
    return {"use_vllm": True, "vllm_mode": config.vllm, **server}
