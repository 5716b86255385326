"""Offline replay evaluation: every policy on the same protocol and the same fixed candidates.

`evaluate(policy, protocol)` scores one policy; `run_benchmark(config)` trains and evaluates many over views and
seeds and writes a results folder (see `benchmarks.report`). Built-in and user policies go through the same path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from starec_env.policies.registry import check_options, make_policy, policy_name
from starec_env.datasets import dataset_spec
from starec_env.files import read_json, write_json
from starec_env.metrics import check_scores, summarize, target_ranks
from starec_env.protocol import Cases, Protocol, build_protocol, default_config


@dataclass
class BenchConfig:
    """`starec bench`: which policies, on which training views and seeds, with which options."""

    dataset: str = field(default="ml-1m", metadata={
        "help": "a registered dataset (ml-1m, amazon-cds, agentcf-cds) or a path to your own data"})
    policies: tuple[str, ...] = field(default=("random", "pop", "bpr", "gru4rec", "sasrec"), metadata={
        "help": "built-in names or your classes as 'module:Class' or 'path/to/file.py:Class'"})
    views: tuple[str, ...] = field(default=("full", "sample"), metadata={
        "flag": "--train", "help": "training views: full, sample or both"})
    seeds: tuple[int, ...] = field(default=(0,), metadata={"help": "protocol and training seeds, e.g. 0,1,2"})
    n_users: int | None = field(default=None, metadata={
        "flag": "--users", "help": "evaluate on the first N test users only"})
    out: str = field(default="results", metadata={"help": "parent folder of the results folder"})
    data_path: str | None = field(default=None, metadata={
        "flag": "--path", "help": "data folder (default: $STAREC_DATA_DIR, ./data)"})
    policy_options: dict = field(default_factory=dict, metadata={
        "flag": "--option", "help": "option for every policy whose constructor takes it, e.g. --option epochs=20"})
    model: str | None = field(default=None, metadata={
        "help": "LLM spec for the LLM policies (default: the embedded SmolLM2)"})
    cache: bool = field(default=True, metadata={
        "help": "reuse the cached protocol; --no-cache rebuilds it from the data files"})

    def options(self) -> dict:
        """The keyword options every policy of the run is offered."""
        return {**self.policy_options, **({"model": self.model} if self.model else {})}


@dataclass
class EvalResult:
    ranks: np.ndarray
    metrics: dict[str, float]
    seconds: float


def evaluate(policy, protocol: Protocol, split: str = "test", n_users: int | None = None,
             partial: Path | None = None) -> EvalResult:
    """Score the split's cases with `policy` and compute the metrics; invalid scores are a clear error.

    With `partial` (policies with `state()`, i.e. LLM policies) users are scored in chunks and the scores so far
    are saved there after each, so a killed run resumes at the first unscored chunk.
    """
    cases = {"test": protocol.test, "valid": protocol.valid}[split]
    if n_users is not None:
        cases = cases.subset(slice(0, n_users))
    started = time.perf_counter()
    if partial is None:
        scores, earlier = policy.score(cases), 0.0
    else:
        scores, earlier = score_resumably(policy, cases, partial)
    seconds = time.perf_counter() - started + earlier
    try:
        scores = check_scores(scores, cases.candidates.shape)
    except ValueError as error:
        raise ValueError(f"policy {getattr(policy, 'name', type(policy).__name__)!r} returned invalid scores: "
                         f"{error}") from None
    ranks = target_ranks(scores, cases.target_index)
    return EvalResult(ranks, summarize(ranks), seconds)


def score_resumably(policy, cases: Cases, partial: Path, chunk: int | None = None) -> tuple[np.ndarray, float]:
    """Scores of all `cases`, continuing from `partial` (JSON: users done, their scores, the policy's state and the
    seconds spent); returns (scores, seconds of earlier runs). Chunks are whole batches, so a resumed run draws the
    same per-batch random numbers as an uninterrupted one."""
    chunk = chunk or 4 * getattr(policy, "batch_users", 16)
    saved = read_json(partial, "partial row") if partial.is_file() else {"users": [], "scores": [], "seconds": 0.0}
    done = len(saved["users"])
    if saved["users"] != cases.users[:done].tolist() or saved.get("policy", policy.name) != policy.name:
        raise ValueError(f"{partial} holds scores from another run (policy {saved.get('policy')!r}, other users or "
                         "another policy than this run's); delete it to score this row from the start")
    if done:
        policy.load_state(saved["state"])
    blocks = [np.asarray(saved["scores"], dtype=float).reshape(done, cases.candidates.shape[1])]
    started = time.perf_counter()
    with tqdm(total=len(cases), initial=done, desc=policy.name, unit="user") as bar:
        for start in range(done, len(cases), chunk):
            blocks.append(np.asarray(policy.score(cases.subset(slice(start, start + chunk))), dtype=float))
            scored = np.concatenate(blocks)
            write_json(partial, {"policy": policy.name, "users": cases.users[:len(scored)].tolist(),
                                        "scores": scored.tolist(), "state": policy.state(),
                                        "seconds": saved["seconds"] + time.perf_counter() - started})
            bar.update(len(blocks[-1]))
    return np.concatenate(blocks), saved["seconds"]


def run_benchmark(config: BenchConfig, resume: Path | None = None) -> tuple[list[dict], list[dict], Path]:
    """Train + evaluate every (policy, view, seed); returns (rows, protocol records, results folder).

    Results are rewritten after every row into a new folder under `config.out`, or into `resume`, an earlier run's
    folder (`--resume`), skipping the rows it already holds; an LLM row also saves its scores every few batches (`partial/`), so a killed run loses at most
    those batches.
    """
    from starec_env.benchmarks.report import check_same_protocol, new_results_dir, resume_state, write_results

    rows, earlier = resume_state(resume, config) if resume is not None else ([], [])
    check_options(config.policies, config.options())
    out = resume or new_results_dir(config.out, dataset_spec(config.dataset).name)
    records = [record for record in earlier if record["config"]["seed"] not in config.seeds]
    done = {(row["spec"], row["view_asked"], row["seed"]) for row in rows}
    for seed in config.seeds:
        protocol = build_protocol(config.dataset, default_config(config.dataset, seed=seed), config.data_path,
                                  use_cache=config.cache)
        check_same_protocol(earlier, protocol.record(), out)
        records.append(protocol.record())
        jobs = [(spec, view) for spec in config.policies for view in config.views if (spec, view, seed) not in done]
        for spec, view in tqdm(jobs, desc=f"{config.dataset} seed {seed}"):
            row = _run_one(spec, view, seed, protocol, config, out)
            if row is not None:
                rows.append(row)
                write_results(rows, records, config, out, quiet=True)
    write_results(rows, records, config, out)
    return rows, records, out


def _llm_usage(policy, protocol: Protocol, trace_path: Path, users: int) -> dict:
    """For LLM policies: parse-status rates and cost per user for the row, and the HTML trace report on disk."""
    usage = dict(getattr(policy, "usage", None) or {})
    if not usage:
        return {}
    from starec_env.benchmarks.traces import write_trace_report

    targets = dict(zip(protocol.test.users[:users].tolist(), protocol.test.targets[:users].tolist()))
    write_trace_report(trace_path, f"{policy.name} on {protocol.dataset}", policy.traces, targets,
                       protocol.item_text, usage)
    answers = max(usage.get("answers", 0), 1)
    return {"parse_failed_rate": usage.get("parse_failed", 0) / answers,
            "parse_partial_rate": usage.get("parse_partial", 0) / answers,
            "tokens_per_user": usage.get("tokens", 0) / users, "seconds_per_user": usage.get("seconds", 0) / users}


def _run_one(spec: str, view: str, seed: int, protocol: Protocol, config: BenchConfig, out: Path) -> dict | None:
    policy = make_policy(spec, seed=seed, **config.options())
    learns = getattr(policy, "learns", True)
    if not learns and view != config.views[0]:
        return None  # the view does not change this policy: one row, not one per view
    started = time.perf_counter()
    if callable(getattr(policy, "fit", None)):
        policy.fit(protocol.train(view))
    train_seconds = time.perf_counter() - started
    partial = out / "partial" / f"{spec}_{view}_seed{seed}.json" if callable(getattr(policy, "state", None)) else None
    result = evaluate(policy, protocol, n_users=config.n_users, partial=partial)
    name = policy_name(policy, spec)
    if callable(getattr(policy, "save", None)):
        policy.save(out / "checkpoints" / f"{name}_{view}_seed{seed}.safetensors")
    usage = _llm_usage(policy, protocol, out / "traces" / f"{name}_seed{seed}.html", len(result.ranks))
    if partial is not None:
        partial.unlink()  # the row is complete: its results live in results.json from here on
        if not any(partial.parent.iterdir()):
            partial.parent.rmdir()
    return {**usage, "policy": name, "view": view if learns else "-", "seed": seed, "spec": spec, "view_asked": view,
            "users": len(result.ranks), "ranks": result.ranks.tolist(),  # per test user, in case order
            **result.metrics, "train_seconds": round(train_seconds, 3), "eval_seconds": round(result.seconds, 4),
            "lists_per_second": round(len(result.ranks) / max(result.seconds, 1e-9), 1),
            **({"curve": policy.history} if getattr(policy, "history", None) else {}),
            **({"chosen": policy.chosen} if getattr(policy, "chosen", None) else {})}
