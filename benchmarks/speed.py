"""Speed benchmarks, measured side by side in one run and reported as numbers and ratios (never asserted in tests).

`classical`: building the ML-1M protocol from raw files, training SASRec_full (total and time to its best
validation epoch, and its test NDCG@10 under a 3-minute budget), and replay scoring throughput in candidate lists/s
beside the ceiling this machine's matmul rate puts on it.
`llm`: prefill and decode tokens/s, batched vs one-call-per-prompt generation of ranking prompts, peak RSS.
`env`: replay user-steps/s (single and vector env), and simulate mode with the LLM user agents: the batched vector
env against the same users stepped one by one, with tokens per user-step.
`train`: the student's SFT steps (TRL) and GRPO-style sampled rollouts, in float32 and under bfloat16 autocast.

`run_speed` writes each run as a recorded run (`run.json` and `speed.json` in its own folder), which `starec report`
renders with `speed_tables`.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from starec_env.benchmarks.replay import evaluate
from starec_env.benchmarks.report import new_results_dir
from starec_env.files import write_json
from starec_env.policies.registry import make_policy
from starec_env.protocol import Cases, build_protocol
from starec_env.records import run_record

KINDS = ("classical", "llm", "env", "train")


@dataclass(frozen=True)
class SpeedConfig:
    """One `starec speed` run: `kind` and the settings it reads (`model`: an LLM spec, None for the embedded model;
    `users`, `rounds`, `choices`: env; `max_tokens`: llm; `recbole_python`: classical's side-by-side)."""
    kind: str
    dataset: str = "ml-1m"
    model: str | None = None
    threads: int = 2
    users: int = 16
    rounds: int = 2
    choices: str = "likelihood,generate"
    max_tokens: int = 32
    recbole_python: str | None = None


def run_speed(config: SpeedConfig, out: str | Path = "results") -> Path:
    """Measure `config.kind` and write `run.json` (at the start, and again with the run's seconds) and `speed.json`
    into a new folder under `out`, which is returned."""
    if config.kind not in KINDS:
        raise ValueError(f"unknown speed kind {config.kind!r}; expected one of {', '.join(KINDS)}")
    folder = new_results_dir(str(out), f"speed-{config.kind}-{config.dataset}")
    protocols = [build_protocol(config.dataset).record()]
    write_json(folder / "run.json", run_record(config, protocols, []), indent=1, default=str)
    started = time.perf_counter()
    report = _measure(config)
    write_json(folder / "speed.json", {"kind": config.kind, **report}, indent=1)
    write_json(folder / "run.json", run_record(config, protocols, [
        {"stage": config.kind, "seconds": time.perf_counter() - started}]), indent=1, default=str)
    return folder


def _measure(config: SpeedConfig) -> dict:
    if config.kind == "classical":
        return classical_speed(config.dataset, threads=config.threads, recbole_python=config.recbole_python)
    if config.kind == "train":
        return train_speed(config.dataset, threads=config.threads)
    if config.kind == "env":
        return env_speed(config.model, threads=config.threads, users=config.users, rounds=config.rounds,
                         dataset=config.dataset, choices=config.choices.split(","))
    return llm_speed(config.model, threads=config.threads, max_tokens=config.max_tokens, dataset=config.dataset)


def classical_speed(dataset: str = "ml-1m", threads: int = 2, repeat: int = 20, recbole_python: str | None = None,
                    recbole_epochs: int = 1, budget_seconds: float = 180) -> dict:
    """SASRec_full trained to early stopping, then again under a `budget_seconds` training budget (what it reaches
    in that time), replay throughput, and RecBole's SASRec side by side when its venv is given."""
    started = time.perf_counter()
    protocol = build_protocol(dataset, use_cache=False)
    report = {"dataset": dataset, "threads": threads, "protocol_build_seconds": time.perf_counter() - started}
    policy = make_policy("sasrec", seed=0, threads=threads)
    report["sasrec_full"] = _timed_fit(policy, protocol)
    report["sasrec_lists_per_second"] = _throughput(policy, protocol.test, repeat)
    report["sasrec_scoring_ceiling"] = _scoring_ceiling(policy, protocol.test, threads)
    report[f"sasrec_full_{budget_seconds:g}s_budget"] = _timed_fit(
        make_policy("sasrec", seed=0, threads=threads, max_seconds=budget_seconds), protocol)
    pop = make_policy("pop").fit(protocol.train("full"))
    report["pop_lists_per_second"] = _throughput(pop, protocol.test, repeat)
    if recbole_python:
        report["recbole"] = recbole_side_by_side(protocol, recbole_python, recbole_epochs, threads)
        ours = report["sasrec_full"]["train_seconds"] / report["sasrec_full"]["epochs_run"]
        report["sasrec_seconds_per_epoch"] = ours
        report["recbole_over_ours_seconds_per_epoch"] = report["recbole"]["recbole_sasrec_seconds_per_epoch"] / ours
    return report


def _timed_fit(policy, protocol) -> dict:
    started = time.perf_counter()
    policy.fit(protocol.train("full"))
    best = max(policy.history, key=lambda entry: entry["valid_ndcg@10"])
    return {"train_seconds": time.perf_counter() - started, "seconds_to_best_epoch": best["seconds"],
            "best_epoch": best["epoch"], "epochs_run": policy.history[-1]["epoch"],
            "test_ndcg@10": evaluate(policy, protocol).metrics["ndcg@10"]}


def _scoring_ceiling(policy, cases: Cases, threads: int) -> dict:
    """The lists/s scoring would reach if its matrix products (torch's FLOP counter; attention is not counted) ran
    at this machine's fp32 matmul rate on a projection of the model's shape: an upper bound to read lists/s against."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        policy.score(cases)
    flops_per_list = counter.get_total_flops() / len(cases)
    torch.set_num_threads(threads)
    dim = policy.config.dim
    states, weight = torch.randn(4096, dim), torch.randn(3 * dim, dim)
    torch.matmul(states, weight.T)  # warm-up
    started, calls = time.perf_counter(), 50
    for _ in range(calls):
        torch.matmul(states, weight.T)
    matmul_flops = calls * 2 * states.numel() * weight.shape[0] / (time.perf_counter() - started)
    return {"mflop_per_list": flops_per_list / 1e6, "matmul_gflops": matmul_flops / 1e9,
            "lists_per_second_at_matmul_rate": matmul_flops / flops_per_list}


def recbole_side_by_side(protocol, python: str, epochs: int, threads: int) -> dict:
    """Export the `_full` training sequences as a RecBole atomic file and time RecBole's SASRec on them."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "starec"
        folder.mkdir()
        lines = ["user_id:token\titem_id:token\ttimestamp:float"]
        for user, sequence in zip(protocol.train("full").users, protocol.train("full").sequences):
            lines += [f"{user}\t{item}\t{step}" for step, item in enumerate(sequence)]
        (folder / "starec.inter").write_text("\n".join(lines) + "\n")
        script = Path(__file__).with_name("recbole_sasrec.py")
        result = subprocess.run([python, str(script), scratch, str(epochs), str(threads)], capture_output=True,
                                text=True, check=False)
    if result.returncode != 0:
        return {"error": result.stderr.strip()[-1500:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def _throughput(policy, cases: Cases, repeat: int) -> float:
    """Candidate lists scored per second over `repeat` copies of the test cases in one call."""
    tiled = cases.subset(np.tile(np.arange(len(cases)), repeat))
    policy.score(cases.subset(slice(0, 64)))  # warm-up
    started = time.perf_counter()
    policy.score(tiled)
    return len(tiled) / (time.perf_counter() - started)


def llm_speed(spec: str | None = None, threads: int = 2, prompts: int = 32, batch_size: int = 16,
              max_tokens: int = 32, dataset: str = "ml-1m") -> dict:
    import torch

    from starec_env.agents.llm import Sampling, load_llm
    from starec_env.agents.prompts import ranking_chat

    llm = load_llm(spec, threads=threads, batch_size=batch_size)
    protocol = build_protocol(dataset)
    chats = [ranking_chat([protocol.item_text(i) for i in history[-15:]],
                          [protocol.item_text(i) for i in row])
             for history, row in zip(protocol.test.histories[:prompts], protocol.test.candidates[:prompts])]
    sampling = Sampling(max_tokens=max_tokens)
    report = {"model": llm.spec, "threads": threads, "prompts": prompts, "batch_size": batch_size,
              "max_tokens": max_tokens}
    if hasattr(llm, "model"):  # transformers: time one prefill on its own
        ids = llm.tokenizer(llm.render(chats[0]), return_tensors="pt")
        with torch.inference_mode():
            llm.model(**ids)
            started = time.perf_counter()
            llm.model(**ids)
        report["prompt_tokens"] = int(ids["input_ids"].shape[1])
        report["prefill_tokens_per_second"] = ids["input_ids"].shape[1] / (time.perf_counter() - started)
    one = _timed(lambda: [llm.generate([chat], sampling)[0] for chat in chats])
    batched = _timed(lambda: llm.generate(chats, sampling))
    report["one_by_one"], report["batched"] = one, batched
    report["single_stream_tokens_per_second"] = one["completion_tokens"] / one["seconds"]
    report["batched_speedup"] = batched["completion_tokens_per_second"] / one["completion_tokens_per_second"]
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


def env_speed(spec: str | None = None, threads: int = 2, users: int = 16, rounds: int = 2,
              replay_steps: int = 20000, dataset: str = "ml-1m",
              choices: Sequence[str] = ("likelihood", "generate")) -> dict:
    """Replay throughput (single and vector env), then simulate mode batched vs one by one in each of `choices`
    (`users=0` skips it)."""
    import gymnasium as gym

    env_id = "starec_env:STARec-v0"
    protocol = build_protocol(dataset)
    actions = np.random.default_rng(0).random((16, protocol.test.candidates.shape[1]))
    report = {"dataset": dataset, "rounds": rounds, "threads": threads}
    single = gym.make(env_id, protocol=protocol, rounds=rounds)
    single.reset(seed=0)
    started = time.perf_counter()
    for step in range(replay_steps):
        if single.step(actions[step % 16])[2]:
            single.reset()
    report["replay_user_steps_per_second"] = replay_steps / (time.perf_counter() - started)
    vector = gym.make_vec(env_id, num_envs=16, protocol=protocol, rounds=rounds)
    vector.reset(seed=0)
    stepped, started = 0, time.perf_counter()
    while stepped < replay_steps:
        stepped += int(vector.step(actions)[4].get("_rank", np.zeros(1)).sum())  # restarting envs take no step
    report["replay_vector16_user_steps_per_second"] = stepped / (time.perf_counter() - started)
    if users:
        report.update(_simulate_speed(env_id, protocol, spec, threads, users, rounds, choices))
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


def _simulate_speed(env_id: str, protocol, spec, threads: int, users: int, rounds: int,
                    choices: Sequence[str]) -> dict:
    """Simulate mode on the same users and seeds, for each choice mode batched and one by one, and for the default
    (likelihood) user also batched without the prefix cache, with the rationale written and, where bfloat16 is the
    native default, in float32 (with the share of identical picks); each run with its time per phase
    (`LLM.profile`)."""
    import gymnasium as gym

    from starec_env.agents.society import AgentConfig, Population

    config = AgentConfig()
    actions = np.random.default_rng(0).random((users, protocol.test.candidates.shape[1]))
    report = {"users": users, "agent": asdict(config)}

    def batched(config: AgentConfig, prefix_cache: int = 32, **dtype) -> dict:
        population = Population(protocol, _local_llm(spec, threads=threads, batch_size=users,
                                                     prefix_cache=prefix_cache, **dtype), config)
        vector = gym.make_vec(env_id, num_envs=users, mode="simulate", rounds=rounds, population=population)
        started = time.perf_counter()
        vector.reset(seed=0)
        choices = [vector.step(actions)[4]["choice"].tolist() for _ in range(rounds)]
        return {**_simulated(population, time.perf_counter() - started), "choices": choices}

    def one_by_one(config: AgentConfig) -> dict:
        population = Population(protocol, _local_llm(spec, threads=threads, batch_size=users), config)
        started = time.perf_counter()
        for i in range(users):
            env = gym.make(env_id, mode="simulate", rounds=rounds, population=population)
            env.reset(seed=i)
            for _ in range(rounds):
                env.step(actions[i])
        return _simulated(population, time.perf_counter() - started)

    for choice in choices:
        mode = replace(config, choice=choice)
        suffix = "" if choice == "likelihood" else f"_{choice}"
        report[f"simulate_batched{suffix}"] = batched(mode)
        if choice == "likelihood":
            report["simulate_batched_without_prefix_cache"] = batched(mode, prefix_cache=0)
            report["simulate_batched_with_rationale"] = batched(replace(mode, rationale=True))
            if _bf16_default() and (spec is None or spec.startswith(("hf:", "default", "embedded"))):
                report["simulate_batched_float32"] = batched(mode, dtype="float32")
        report[f"simulate_one_by_one{suffix}"] = one_by_one(mode)
    rate = {name: run["user_steps_per_second"] for name, run in report.items() if name.startswith("simulate_")}
    for choice in choices:
        suffix = "" if choice == "likelihood" else f"_{choice}"
        report[f"simulate_batched_speedup{suffix}"] = rate[f"simulate_batched{suffix}"] / rate[
            f"simulate_one_by_one{suffix}"]
    if "likelihood" in choices:
        report["prefix_cache_speedup"] = rate["simulate_batched"] / rate["simulate_batched_without_prefix_cache"]
        report["rationale_slowdown"] = rate["simulate_batched"] / rate["simulate_batched_with_rationale"]
    if "simulate_batched_float32" in report:  # the default dtype is bfloat16 here: what it costs in decisions
        report["bf16_speedup"] = rate["simulate_batched"] / rate["simulate_batched_float32"]
        report["bf16_same_choice_as_float32"] = float(np.mean(np.equal(
            report["simulate_batched"]["choices"], report["simulate_batched_float32"]["choices"])))
    return report


def _local_llm(spec: str | None, **options):
    """The model under test; the in-process settings (threads, batch size, prefix cache) reach hf: models only, a
    served one (`openai:`) is timed as its server runs it."""
    from starec_env.agents.llm import load_llm

    return load_llm(spec, **(options if spec is None or spec.startswith(("hf:", "default", "embedded")) else {}))


def train_speed(dataset: str = "ml-1m", threads: int = 2, steps: int = 2, batch_size: int = 4, rollouts: int = 8,
                rollout_tokens: int = 64) -> dict:
    """Seconds per SFT step of the embedded SmolLM2 in float32 and under bfloat16 autocast, on the same traces (the
    fast-thinking prompts of training cases, answered in the offline teacher's format with the real choice first),
    then sampled rollouts of one prompt as GRPO draws them, in both precisions."""
    import tempfile

    import pandas as pd
    import torch

    from starec_env.trainers.cases import training_cases
    from starec_env.trainers.pipeline import PipelineConfig
    from starec_env.trainers.sft import SFTRunConfig, model_path, sft

    torch.set_num_threads(threads)
    cases = training_cases(build_protocol(dataset), steps * batch_size, seed=0, prompt=PipelineConfig().prompt)
    report = {"dataset": dataset, "threads": threads, "steps": steps, "batch_size": batch_size}
    with tempfile.TemporaryDirectory() as scratch:
        traces = Path(scratch) / "traces.jsonl"
        traces.write_text("".join(json.dumps({"prompt": case.chat, "completion": _teacher_shaped(case),
                                              "accepted": True}) + "\n" for case in cases))
        for name, bf16 in (("float32", False), ("bf16_autocast", True)):
            sft(traces, Path(scratch) / name, SFTRunConfig(steps=steps, batch_size=batch_size, save_every=steps,
                                                           bf16=bf16))
            log = pd.read_csv(Path(scratch) / name / "sft.csv")
            report[f"sft_{name}"] = {"seconds_per_step": float(log["train_runtime"].dropna().iloc[0]) / steps,
                                     "loss": log["loss"].dropna().round(4).tolist()}
    report["sft_bf16_speedup"] = (report["sft_float32"]["seconds_per_step"]
                                  / report["sft_bf16_autocast"]["seconds_per_step"])
    report.update(_rollout_speed(model_path(None), cases[0].chat, rollouts, rollout_tokens))
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


def _teacher_shaped(case) -> str:
    order = [case.target_index] + [i for i in range(len(case.candidates)) if i != case.target_index]
    ranking = ", ".join(str(i + 1) for i in order)
    return f"<think>The user's recent history points to one candidate.</think>\n[{ranking}]"


def _rollout_speed(model_dir: str, chat, rollouts: int, tokens: int) -> dict:
    """`rollouts` sampled completions of exactly `tokens` tokens for one prompt, in float32 and bf16 autocast."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    prompt = {key: value.repeat(rollouts, 1) for key, value in prompt.items()}
    report = {"rollouts": rollouts, "rollout_tokens": tokens}
    for name, bf16 in (("float32", False), ("bf16_autocast", True)):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            started = time.perf_counter()
            model.generate(**prompt, do_sample=True, max_new_tokens=tokens, min_new_tokens=tokens,
                           pad_token_id=tokenizer.pad_token_id)
            report[f"rollout_tokens_per_second_{name}"] = rollouts * tokens / (time.perf_counter() - started)
    report["rollout_bf16_speedup"] = (report["rollout_tokens_per_second_bf16_autocast"]
                                      / report["rollout_tokens_per_second_float32"])
    return report


def _bf16_default() -> bool:
    """Whether in-process models load in bfloat16 by default here (then a float32 run is timed beside it)."""
    from starec_env.agents.llm.transformers_backend import native_bf16

    return native_bf16()


def _simulated(population, seconds: float) -> dict:
    """Rates of a simulate run (its seconds include the first summaries written at reset) and its phases."""
    steps = population.counts["steps"]
    phases = {name: {**entry, "tokens_per_second": entry["tokens"] / max(entry["seconds"], 1e-9),
                     "share_of_time": entry["seconds"] / seconds}
              for name, entry in population.llm.profile.items()}
    return {"model": population.llm.spec, "dtype": population.llm.dtype,
            "seconds": seconds, "user_steps": steps, "user_steps_per_second": steps / seconds,
            "tokens_per_user_step": population.counts["tokens"] / max(steps, 1), **population.counts,
            "llm_tokens": dict(population.llm.tokens), "phases": phases}


def _timed(run) -> dict:
    started = time.perf_counter()
    results = run()
    seconds = time.perf_counter() - started
    tokens = sum(c.completion_tokens for group in results for c in group)
    return {"seconds": seconds, "completion_tokens": tokens, "completion_tokens_per_second": tokens / seconds,
            "prompts_per_second": len(results) / seconds}


def speed_tables(reports: Sequence[dict]) -> str:
    """Markdown tables of `speed.json` reports: one table per kind with a row per run (a dataset, a setting), and for
    `env` each run's simulate variants and where its batched step's time goes."""
    parts = []
    for kind in dict.fromkeys(report["kind"] for report in reports):
        same = [report for report in reports if report["kind"] == kind]
        parts += {"classical": _classical_tables, "llm": _llm_tables, "env": _env_tables,
                  "train": _train_tables}[kind](same)
    return "\n\n".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def _count(rate: float) -> str:
    """A throughput as people read it: 11.5 M, 457 K, 6,401, 0.170."""
    if rate >= 1e6:
        return f"{rate / 1e6:.1f} M"
    if rate >= 1e5:
        return f"{rate / 1e3:.0f} K"
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"


def _classical_tables(reports: Sequence[dict]) -> list[str]:
    training, scoring = [], []
    for report in reports:
        full = report["sasrec_full"]
        budget_key = next(key for key in report if key.startswith("sasrec_full_") and key.endswith("s_budget"))
        budget, seconds = report[budget_key], budget_key.removeprefix("sasrec_full_").removesuffix("s_budget")
        ours = full["train_seconds"] / full["epochs_run"]
        recbole = report.get("recbole", {})
        training.append([report["dataset"], report["threads"], f"{ours:.2f}",
                         f"{full['best_epoch']}, at {full['seconds_to_best_epoch']:.0f} s (stopped at "
                         f"{full['epochs_run']})", f"{100 * full['test_ndcg@10']:.2f}",
                         f"{100 * budget['test_ndcg@10']:.2f} ({seconds} s, {budget['epochs_run']} epochs)",
                         f"{recbole['recbole_sasrec_seconds_per_epoch']:.1f} "
                         f"(**{recbole['recbole_sasrec_seconds_per_epoch'] / ours:.1f}×** ours)"
                         if "recbole_sasrec_seconds_per_epoch" in recbole else "—"])
        ceiling = report["sasrec_scoring_ceiling"]
        scoring.append([report["dataset"], _count(report["pop_lists_per_second"]),
                        _count(report["sasrec_lists_per_second"]),
                        _count(ceiling["lists_per_second_at_matmul_rate"]), f"{ceiling['mflop_per_list']:.2f}",
                        f"{ceiling['matmul_gflops']:.1f}", f"{report['protocol_build_seconds']:.1f}"])
    return [_table(["SASRec_full", "threads", "seconds per epoch", "best validation epoch", "test NDCG@10",
                    "test NDCG@10 under a budget", "RecBole 1.2.1 SASRec, seconds per epoch"], training),
            _table(["replay scoring, lists/s", "Pop", "SASRec_full", "SASRec at the matmul rate", "SASRec MFLOP/list",
                    "fp32 matmul GFLOP/s", "protocol built from raw files, s"], scoring)]


def _model_name(spec: str) -> str:
    """A model spec as a reader needs it: a local model folder by its name, not this machine's path."""
    return f"hf:{Path(spec[3:]).name}" if spec.startswith("hf:/") else spec


def _llm_tables(reports: Sequence[dict]) -> list[str]:
    rows = [[_model_name(report["model"]), report["threads"], report["max_tokens"], report["prompts"],
             f"{report['one_by_one']['seconds']:.0f} s", f"{report['batched']['seconds']:.0f} s "
             f"({report['batch_size']} per call)", f"**{report['batched_speedup']:.2f}×**",
             f"{report['single_stream_tokens_per_second']:.1f}",
             f"{report['batched']['completion_tokens_per_second']:.1f}",
             f"{report['prefill_tokens_per_second']:.0f} ({report['prompt_tokens']})"
             if "prefill_tokens_per_second" in report else "—", f"{report['peak_rss_mib'] / 1024:.1f}"]
            for report in reports]
    return [_table(["model", "threads", "tokens generated per prompt", "prompts", "one call per prompt", "batched",
                    "speed-up", "tokens/s one by one", "tokens/s batched", "prefill tokens/s (prompt tokens)",
                    "peak RSS GiB"], rows)]


SIMULATE_RUNS = {  # report key: what the run changes from the default step
    "simulate_batched": "batched: likelihood pick, digit-likelihood rating, prompt prefixes reused",
    "simulate_batched_without_prefix_cache": "batched, prefix cache off",
    "simulate_batched_with_rationale": "batched, rationale written too (`AgentConfig(rationale=True)`)",
    "simulate_batched_float32": "batched, float32 instead of the native bfloat16",
    "simulate_one_by_one": "one user at a time",
    "simulate_batched_generate": "batched, the pick generated (`choice=\"generate\"`)",
    "simulate_one_by_one_generate": "generated pick, one user at a time",
}


def _env_tables(reports: Sequence[dict]) -> list[str]:
    parts = [_table(["replay mode", "rounds", "user-steps/s through gym.make", "16-env vector env"],
                    [[report["dataset"], report["rounds"], _count(report["replay_user_steps_per_second"]),
                      _count(report["replay_vector16_user_steps_per_second"])] for report in reports])]
    for report in (report for report in reports if "simulate_batched" in report):
        base = report["simulate_batched"]
        runs = [(label, report[key]) for key, label in SIMULATE_RUNS.items() if key in report]
        parts.append(_table([f"simulate step, {report['dataset']}, {report['users']} users × {report['rounds']} "
                             "rounds", "seconds", "user-steps/s", "tokens / step", "vs batched"],
                            [[label, f"{run['seconds']:.0f}", f"{run['user_steps_per_second']:.3f}",
                              f"{run['tokens_per_user_step']:,.0f}",
                              f"{run['user_steps_per_second'] / base['user_steps_per_second']:.2f}×"]
                             for label, run in runs]))
        parts.append(_table(["phase of the batched step", "seconds", "share", "tokens read or written", "tokens/s"],
                            [[name, f"{phase['seconds']:.1f}", f"{100 * phase['share_of_time']:.0f}%",
                              f"{phase['tokens']:,}", f"{phase['tokens_per_second']:,.0f}"]
                             for name, phase in base["phases"].items()]))
    return parts


def _train_tables(reports: Sequence[dict]) -> list[str]:
    rows = [[report["dataset"], report["threads"], f"{report['sft_float32']['seconds_per_step']:.1f}",
             f"{report['sft_bf16_autocast']['seconds_per_step']:.1f}", f"{report['sft_bf16_speedup']:.2f}×",
             f"{report['rollout_tokens_per_second_float32']:.1f}",
             f"{report['rollout_tokens_per_second_bf16_autocast']:.1f}", f"{report['rollout_bf16_speedup']:.2f}×"]
            for report in reports]
    return [_table(["dataset", "threads", "SFT s/step, float32", "SFT s/step, bf16 autocast", "bf16 speed-up",
                    "rollout tokens/s, float32", "rollout tokens/s, bf16 autocast", "bf16 speed-up"], rows)]
