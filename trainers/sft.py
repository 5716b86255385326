"""SFT anchoring: fine-tune the student on screened teacher traces, loss on the completion only (TRL SFTTrainer).

The traces' prompts are the STARec policy's own fast-thinking and reflection prompts, so the result plugs straight into
`starec bench --policies starec --option model=hf:OUT/final --option fast=generate`. Checkpoints are written every
`save_every` steps; a rerun resumes from the last one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from starec_env.trainers.curves import write_curves


@dataclass(frozen=True)
class SFTRunConfig:
    """Supervised anchoring on the teacher's traces."""

    model: str | None = field(default=None, metadata={"help": "student: HF id or folder (default: embedded SmolLM2)"})
    steps: int = field(default=8, metadata={
        "help": "optimizer steps; few on purpose, so the student keeps the spread of answers GRPO learns from"})
    batch_size: int = field(default=4, metadata={"help": "traces per step"})
    learning_rate: float = field(default=5e-5, metadata={"help": "peak learning rate"})
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters (peft), merged on save"})
    save_every: int = field(default=20, metadata={"help": "steps between checkpoints"})
    max_length: int = field(default=1024, metadata={"help": "tokens per trace, prompt included"})
    bf16: bool | None = field(default=None, metadata={
        "help": "bfloat16 autocast (default: where bf16 matrix products are native)"})
    seed: int = field(default=0, metadata={"help": "data order and initialisation seed"})


def model_path(model: str | None) -> str:
    if model is None:
        from starec_env.agents.llm.embedded import default_model_dir

        return str(default_model_dir())
    return model.removeprefix("hf:")


def sft(traces: Path | Sequence[Path], out: Path, config: SFTRunConfig = SFTRunConfig()) -> Path:
    """Train on the accepted traces of one JSONL file or several (fast-thinking and reflection traces)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    files = [traces] if isinstance(traces, Path) else list(traces)
    rows = [json.loads(line) for path in files if path.is_file() for line in path.open()]
    kept = [{"prompt": row["prompt"], "completion": [{"role": "assistant", "content": row["completion"]}]}
            for row in rows if row["accepted"]]
    if not kept:
        raise ValueError(f"{', '.join(map(str, files))}: no accepted trace to train on "
                         f"({len(rows)} rejected by screening)")
    keep_freed_memory()
    args = SFTConfig(output_dir=str(out / "checkpoints"), max_steps=config.steps,
                     per_device_train_batch_size=config.batch_size, learning_rate=config.learning_rate,
                     logging_steps=1, save_steps=config.save_every, save_total_limit=2, report_to="none",
                     **hardware(config.bf16), seed=config.seed, max_length=config.max_length, completion_only_loss=True,
                     disable_tqdm=False)
    trainer = SFTTrainer(model=model_path(config.model), args=args, train_dataset=Dataset.from_list(kept),
                         peft_config=_lora() if config.lora else None)
    trainer.train(resume_from_checkpoint=last_checkpoint(out / "checkpoints"))
    final = out / "final"
    save_merged(trainer, final)
    write_curves(trainer.state.log_history, out, "sft", ("loss", "mean_token_accuracy"))
    return final


def hardware(bf16: bool | None = None) -> dict:
    """Trainer settings for the machine. bfloat16 autocast by default where bf16 matrix products are native
    (`native_bf16`: a GPU that supports them, or a CPU with AVX512-BF16 or AMX; `starec speed train` measures the
    difference). No gradient checkpointing on a CPU: recomputation costs more time than the memory it saves."""
    import torch

    from starec_env.agents.llm.transformers_backend import native_bf16

    if torch.cuda.is_available():
        return {"bf16": native_bf16("cuda") if bf16 is None else bf16}
    return {"use_cpu": True, "bf16": native_bf16() if bf16 is None else bf16, "gradient_checkpointing": False}


def keep_freed_memory() -> None:
    """Have glibc keep freed memory for reuse instead of unmapping it. A training step allocates and frees tensors of
    hundreds of MB, and where page faults are slow, re-faulting them can dominate a CPU step (docs/findings.md)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt(-4, 0)  # M_MMAP_MAX: no allocation gets its own mapping, which free() would unmap
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: never hand the top of the heap back
    except (OSError, AttributeError):
        pass  # not glibc: that allocator keeps its own policy


def save_merged(trainer, folder: Path) -> None:
    """A plain HF folder any backend loads (`hf:FOLDER`): LoRA adapters are merged into the weights first."""
    model = trainer.model.merge_and_unload() if hasattr(trainer.model, "merge_and_unload") else trainer.model
    model.save_pretrained(str(folder))
    trainer.processing_class.save_pretrained(str(folder))


def last_checkpoint(folder: Path) -> str | None:
    """The newest complete `checkpoint-N` under `folder` (by N, not by name), or None to start afresh. The trainer
    writes `trainer_state.json` last, so a checkpoint whose state file is missing or cut short was being written when
    the process died: it is skipped (and replaced when training passes that step again)."""
    checkpoints = sorted(folder.glob("checkpoint-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))
    complete = [path for path in checkpoints if _complete(path)]
    return str(complete[-1]) if complete else None


def _complete(checkpoint: Path) -> bool:
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def _lora():
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
