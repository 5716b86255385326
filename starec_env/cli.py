"""The `starec` command line: thin flag parsing onto the library's dataclasses and functions."""

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

    args = parser.parse_args(argv)
    from starec_env.sources import DataError

    try:
        return args.func(args) or 0
    except DataError as error:
        print(f"starec: data error: {error}", file=sys.stderr)
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


if __name__ == "__main__":
    sys.exit(main())
