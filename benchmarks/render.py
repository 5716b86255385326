"""The docs' tables rendered back from recorded runs (`starec report`): each under the command, data checksums and
commit that made it, and a marker naming the run, so a test can tell a rendered table from a typed one."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import numpy as np
import pandas as pd

from starec_env.benchmarks.fidelity import fidelity_tables
from starec_env.benchmarks.report import summary_table
from starec_env.files import read_json, write_text
from starec_env.metrics import summarize

REPORT_BEGIN, REPORT_END = "<!-- starec report: begin -->", "<!-- starec report: end -->"
RENDERED = "<!-- rendered by starec report from"


def render_runs(folders) -> str:
    """Markdown for recorded runs: per results folder (bench or fidelity) its tables, under the command, data
    checksums and commit that made them and a marker naming the run and its config hash."""
    parts = []
    for folder in map(Path, folders):
        record = read_json(folder / "run.json", "run record")
        frame = pd.DataFrame(read_json(folder / "results.json", "results file")["rows"])
        dataset = record["config"]["dataset"]
        table = fidelity_tables(frame, dataset) if "row" in frame else summary_table(frame, dataset)
        table = "\n".join(f"#{line}" if line.startswith("#") else line for line in table.splitlines())
        parts.append(f"{provenance(folder, record)}\n\n{table}")
    return "\n\n".join(parts)


def render_combined(folders) -> str:
    """One table of every `starec bench` row in `folders`, each scored on the users all of them share (the first
    N test users, N the fewest any row has), under each run's provenance: runs of different sizes, such as the
    classical rows on 1,000 users and an LLM row on 32, compared on the same cases."""
    records, rows = [], []
    for folder in map(Path, folders):
        records.append((folder, read_json(folder / "run.json", "run record")))
        rows += [{**row, "folder": folder} for row in read_json(folder / "results.json", "results file")["rows"]]
    datasets = {record["config"]["dataset"] for _, record in records}
    if len(datasets) != 1 or not rows or any("ranks" not in row for row in rows):
        raise ValueError(f"--combined needs `starec bench` runs of one dataset whose rows keep their per-user ranks "
                         f"(got datasets {sorted(datasets)}; rows without ranks: "
                         f"{sorted({str(r['folder']) for r in rows if 'ranks' not in r})})")
    keys = [(row["policy"], row["view"], row["seed"]) for row in rows]
    if len(set(keys)) < len(keys):
        raise ValueError(f"--combined: a row (policy, view, seed) is in more than one run: {sorted(keys)}")
    shared = min(len(row["ranks"]) for row in rows)
    frame = pd.DataFrame([{**{k: v for k, v in row.items() if k not in ("ranks", "curve", "folder")},
                           **summarize(np.asarray(row["ranks"][:shared])), "users": shared} for row in rows])
    heading = f"### Every row on the first {shared} test users"
    return "\n\n".join([*(provenance(folder, record) for folder, record in records), heading,
                         summary_table(frame, datasets.pop())])


def provenance(folder: Path, record: dict) -> str:
    command = "starec " + " ".join(shlex.quote(arg) for arg in record["command"][1:])
    digest = hashlib.sha256(json.dumps(record["config"], sort_keys=True, default=str).encode()).hexdigest()[:12]
    data = ", ".join(f"{name} `{sha[:12]}`" for protocol in record["protocols"]
                     for name, sha in protocol["sources_sha256"].items())
    commit = (record.get("git_commit") or "unknown")[:10]
    commit += {True: " with uncommitted changes", False: "", None: ", working tree not recorded"}[
        record.get("git_uncommitted_changes")]
    return (f"{RENDERED} {folder.name}; config {digest} -->\n"
            f"Made by `{command}` (commit {commit}); data SHA-256: {data}.")


def write_into(page: Path, text: str) -> Path:
    """`text` between the page's report markers (the rest of the page kept), or as the whole page if it has none."""
    block = f"{REPORT_BEGIN}\n{text}\n{REPORT_END}"
    current = page.read_text() if page.is_file() else ""
    if REPORT_BEGIN in current and REPORT_END in current:
        head, rest = current.split(REPORT_BEGIN, 1)
        return write_text(page, head + block + rest.split(REPORT_END, 1)[1])
    return write_text(page, block + "\n")
