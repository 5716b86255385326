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
from starec_env.benchmarks.report import row_label, summary_table
from starec_env.files import read_json, write_text
from starec_env.metrics import ndcg, paired_difference, summarize

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


def render_combined(folders, against: str | None = None) -> str:
    """One table of every `starec bench` row in `folders` per dataset, each row scored on the users all rows of its
    dataset share (the first N test users, N the fewest any row has), under each run's provenance: runs of different
    sizes, such as the classical rows on 1,000 users and an LLM row on 32, compared on the same cases. With
    `against` (a row label such as `SASRec_full`), a second table compares every other row with it user by user."""
    runs = [(Path(folder), read_json(Path(folder) / "run.json", "run record")) for folder in folders]
    datasets = list(dict.fromkeys(record["config"]["dataset"] for _, record in runs))
    return "\n\n".join(_combined_section([run for run in runs if run[1]["config"]["dataset"] == dataset], dataset,
                                          against) for dataset in datasets)


def _combined_section(runs: list[tuple[Path, dict]], dataset: str, against: str | None) -> str:
    rows = [{**row, "folder": folder} for folder, _ in runs
            for row in read_json(folder / "results.json", "results file")["rows"]]
    if not rows or any("ranks" not in row for row in rows):
        raise ValueError(f"--combined needs `starec bench` runs whose rows keep their per-user ranks (rows without "
                         f"ranks: {sorted({str(r['folder']) for r in rows if 'ranks' not in r})})")
    keys = [(row["policy"], row["view"], row["seed"]) for row in rows]
    if len(set(keys)) < len(keys):
        raise ValueError(f"--combined: a row (policy, view, seed) is in more than one run: {sorted(keys)}")
    shared = min(len(row["ranks"]) for row in rows)
    frame = pd.DataFrame([{**{k: v for k, v in row.items() if k not in ("ranks", "curve", "folder", "chosen")},
                           **summarize(np.asarray(row["ranks"][:shared])), "users": shared} for row in rows])
    parts = [*(provenance(folder, record) for folder, record in runs),
             f"### {dataset}: every row on the first {shared} test users", summary_table(frame, dataset)]
    if against:
        parts += [f"### {dataset}: each row against {against}, user by user", paired_table(rows, shared, against)]
    return "\n\n".join(parts)


def paired_table(rows: list[dict], users: int, against: str) -> str:
    """NDCG@10 ×100 of each row minus the row labelled `against`, on the first `users` test users: mean ± standard
    error, the Wilcoxon signed-rank p-value, and the users ranked better / worse."""
    labels = [row_label(row["policy"], row["view"]) for row in rows]
    if labels.count(against) != 1:
        raise ValueError(f"--against {against!r} must name exactly one row; the rows are {labels}")
    base = ndcg(np.asarray(rows[labels.index(against)]["ranks"][:users]), 10)
    lines = ["| Method | Δ NDCG@10 | p (Wilcoxon) | better | worse | users |", "|---|---|---|---|---|---|"]
    for label, row in zip(labels, rows):
        if label != against:
            paired = paired_difference(base, ndcg(np.asarray(row["ranks"][:users]), 10))
            lines.append(f"| {label} | {100 * paired['mean']:+.2f} ± {100 * paired['se']:.2f} | "
                         f"{paired['p_wilcoxon']:.2g} | {paired['better']} | {paired['worse']} | {users} |")
    return "\n".join(lines)


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
