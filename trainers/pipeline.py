"""`starec train`: distill → SFT → GRPO in one command, resumable, with validation NDCG@10 after every stage.

Each stage writes into its own folder under `out` and is skipped when its result is already there; inside a stage
TRL resumes from the last checkpoint, and distillation appends to its JSONL — so killing the process and running
the same command again loses at most the batch or the steps since the last checkpoint. Each stage's checkpoint is
validated as soon as it exists: the STARec policy ranks the protocol's validation cases (never the test ones) in
generative mode, with the same prompts as training (`PipelineConfig.prompt`) — base model, SFT, SFT+GRPO,
the last again without self-reflection (history only, no summary) and, with `ablations`, GRPO without SFT. Every
row uses the same validation users and candidates, so each stage is compared user by user with the one it builds on:
the mean NDCG@10 difference, its standard error, a Wilcoxon signed-rank p-value and the users better and worse
(`validation.json`, `validation.csv` and `validation.md`), beside the run record (`run.json`) that `starec report`
renders them under.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from starec_env.agents.prompts import PromptConfig
from starec_env.files import read_json, write_json
from starec_env.policies.starec import STARecPolicy
from starec_env.metrics import ndcg, paired_difference, summarize, target_ranks
from starec_env.protocol import build_protocol, default_config
from starec_env.records import run_record
from starec_env.trainers.curves import write_stage_bars
from starec_env.trainers.distill import DistillConfig, distill
from starec_env.trainers.grpo import TRAINING_PROMPT, GRPORunConfig, grpo
from starec_env.trainers.sft import SFTRunConfig, model_path, sft


@dataclass
class PipelineConfig:
    """`starec train`: every stage's config, and the one `PromptConfig` that distillation, GRPO and validation share
    (by default the co-liked evidence line and a `<think>` rationale before each ranking)."""

    dataset: str = field(default="ml-1m", metadata={"help": "a registered dataset name or a path to your own data"})
    out: str = field(default="", metadata={"help": "run folder (default runs/train-<dataset>); rerun the same to resume"})
    prompt: PromptConfig = field(default_factory=lambda: TRAINING_PROMPT, metadata={"prefix": ""})  # its flags are --history, --evidence, --popular, …
    distill: DistillConfig = field(default_factory=DistillConfig)
    sft: SFTRunConfig = field(default_factory=SFTRunConfig)
    grpo: GRPORunConfig = field(default_factory=GRPORunConfig)
    eval_users: int = field(default=40, metadata={"help": "validation users scored after each stage"})
    reflect_steps: int = field(default=1, metadata={
        "help": "self-reflection rounds before each validation ranking (0 is the 'w/o self-reflection' ablation)"})
    ablations: bool = field(default=False, metadata={"help": "also GRPO straight from the base model ('w/o SFT')"})


def run_pipeline(config: PipelineConfig) -> list[dict]:
    out = Path(config.out or f"runs/train-{config.dataset}")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", asdict(config), indent=1)
    protocol = build_protocol(config.dataset, default_config(config.dataset, seed=config.distill.seed))
    timings = _load(out / "timings.json")
    rows = _load(out / "validation.json").get("rows", [])
    _record(out, config, protocol, timings)

    def validate(stage: str, model: str, against: str | None, reflect_steps: int = config.reflect_steps) -> str:
        """Score a stage's checkpoint as soon as it exists, so a bad stage shows before the next one trains; compare
        it user by user with the stage it builds on (`against`)."""
        if stage not in {row["stage"] for row in rows}:
            rows.append(_validate(protocol, stage, model, reflect_steps, config))
            if against is not None:
                rows[-1].update(_paired(next(row for row in rows if row["stage"] == against), rows[-1]))
            _save(out / "validation.json", {"rows": rows})
            tqdm.write(f"{stage}: validation NDCG@10 {100 * rows[-1]['ndcg@10']:.2f} ({rows[-1]['users']} users)")
        return model

    traces = out / "distill"
    if "distill" not in timings:
        timings["distill"] = _timed(lambda: distill(protocol, config.distill, traces, config.prompt))
        _save(out / "timings.json", timings)
    base = validate("base", model_path(config.sft.model), None)
    anchored = validate("sft", _stage(out / "sft", timings, lambda: sft(
        [traces / "traces.jsonl", traces / "reflections.jsonl"], out / "sft", config.sft)), "base")
    full = validate("sft+grpo", _stage(out / "grpo", timings, lambda: grpo(anchored, protocol, out / "grpo",
                                                                           config.grpo, config.prompt)), "sft")
    validate("sft+grpo w/o self-reflection", full, "sft+grpo", reflect_steps=0)
    if config.ablations:
        validate("grpo w/o sft", _stage(out / "grpo-no-sft", timings,
                                        lambda: grpo(base, protocol, out / "grpo-no-sft", config.grpo,
                                                     config.prompt)), "base")
    chance = float(ndcg(np.arange(1, protocol.valid.candidates.shape[1] + 1), 10).mean())
    write_stage_bars(rows, out, "validation", "ndcg@10", chance)
    _record(out, config, protocol, timings)
    return rows


def _validate(protocol, stage: str, model: str, reflect_steps: int, config: PipelineConfig) -> dict:
    """NDCG on the first `users` validation cases for one checkpoint: `reflect_steps` reflections, then generation.
    The row keeps every user's target rank, so two stages can be compared user by user."""
    policy = STARecPolicy(f"hf:{model}", fast="generate", reflect_steps=reflect_steps, prompt=config.prompt,
                          progress=False)
    cases = protocol.valid.subset(slice(0, config.eval_users))
    ranks = target_ranks(policy.fit(protocol.train("full")).score(cases), cases.target_index)
    return {"stage": stage, "model": str(model), "reflect_steps": reflect_steps, "users": len(cases),
            **summarize(ranks), "ranks": [int(rank) for rank in ranks],
            **{f"usage_{k}": v for k, v in policy.usage.items()}}


def _paired(earlier: dict, row: dict) -> dict:
    """NDCG@10 of `row` minus that of `earlier`, user by user (`metrics.paired_difference`), as table columns."""
    difference = paired_difference(ndcg(np.asarray(earlier["ranks"]), 10), ndcg(np.asarray(row["ranks"]), 10))
    return {"vs": earlier["stage"], "delta_ndcg@10": difference["mean"], "delta_se": difference["se"],
            **{key: difference[key] for key in ("p_wilcoxon", "better", "worse", "significant")}}


def _stage(folder: Path, timings: dict, train) -> str:
    """Run a training stage unless its final model exists; returns that model's folder. Timings are saved as each
    stage ends, so an interrupted run keeps those of the stages it finished."""
    final = folder / "final"
    if not (final / "config.json").is_file():
        timings[folder.name] = _timed(train)
        _save(folder.parent / "timings.json", timings)
    return str(final)


def _timed(work) -> dict:
    started = time.perf_counter()
    result = work()
    return {"seconds": time.perf_counter() - started, **(result if isinstance(result, dict) else {})}


def _record(out: Path, config: PipelineConfig, protocol, timings: dict) -> None:
    """`run.json`: config, command, protocol, data checksums, versions, commit and the stage timings so far."""
    _save(out / "run.json", run_record(config, [protocol.record()], [{"stage": k, **v} for k, v in timings.items()]))


def _load(path: Path) -> dict:
    return read_json(path, "run record") if path.is_file() else {}


def _save(path: Path, data: dict) -> None:
    write_json(path, data, indent=1, default=str)
