"""The docs' tables rendered back from recorded runs (`starec report`): each under the command, data checksums and
commit that made it, and a marker naming the run, so a test can tell a rendered table from a typed one.

A page holds its rendered tables in named blocks whose opening marker is the report command that made them, run
folders given relative to the page; `--records DIR` keeps the runs' records (`run.json`, `results.json`) there, so
`refresh` can render every block again from them and the docs test can check each table against its run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd

from starec_env.benchmarks.fidelity import fidelity_tables
from starec_env.benchmarks.references import PAPER
from starec_env.benchmarks.report import anchor_ndcg10, number_cell, row_label, summary_table
from starec_env.benchmarks.speed import speed_tables
from starec_env.files import read_json, write_json, write_text
from starec_env.metrics import ndcg, paired_difference, summarize
from starec_env.trainers.curves import stage_table

REPORT_BEGIN, REPORT_END = "<!-- starec report: begin", "<!-- starec report: end"
RENDERED = "<!-- rendered by starec report from"
BLOCK = re.compile(r"<!-- starec report: begin ([\w-]+): (.*?) -->\n.*?\n<!-- starec report: end \1 -->", re.S)
RECORDS = ("results.json", "validation.json", "speed.json")  # read beside run.json: bench and fidelity, train, speed
LAYOUTS = ("runs", "combined", "headline", "options")


def render(folders, layout: str = "runs", against: str | None = None) -> str:
    """`folders` rendered as each run's own tables (`runs`), one table per dataset (`combined`, optionally each row
    against the row labelled `against`), NDCG@10 beside the paper's, one column pair per dataset (`headline`), or
    a row per run and policy, labelled by the run's `--option` settings (`options`)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown report layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if against and layout != "combined":
        raise ValueError("--against compares the rows of a combined table: add --combined")
    if layout == "combined":
        return render_combined(folders, against)
    if layout == "options":
        return render_options(folders)
    return render_headline(folders) if layout == "headline" else render_runs(folders)


def render_runs(folders) -> str:
    """Markdown for recorded runs: per results folder (bench, fidelity or train) its tables, under the command, data
    checksums and commit that made them and a marker naming the run and its config hash; speed runs together, one
    table per kind with a row per run."""
    folders = [Path(folder) for folder in folders]
    speed = [folder for folder in folders if (folder / "speed.json").is_file()]
    if speed:
        if len(speed) < len(folders):
            raise ValueError("a report renders `starec speed` runs or result runs, not both: "
                             f"{sorted(str(folder) for folder in set(folders) - set(speed))} are not speed runs")
        return render_speed(speed)
    parts = []
    for folder in folders:
        record = read_json(folder / "run.json", "run record")
        dataset = record["config"]["dataset"]
        if (folder / "validation.json").is_file():  # a `starec train` run
            table = stage_table(pd.DataFrame(read_json(folder / "validation.json", "validation file")["rows"]),
                                "ndcg@10")
        else:
            frame = pd.DataFrame(read_json(folder / "results.json", "results file")["rows"])
            table = fidelity_tables(frame, dataset) if "row" in frame else summary_table(frame, dataset)
        table = "\n".join(f"#{line}" if line.startswith("#") else line for line in table.splitlines())
        parts.append(f"{provenance(folder, record)}\n\n{table}")
    return "\n\n".join(parts)


def render_speed(folders) -> str:
    """The speed runs' provenance, then their tables (`speed_tables`)."""
    runs = recorded(folders)
    reports = [read_json(folder / "speed.json", "speed report") for folder, _ in runs]
    return "\n\n".join([*(provenance(folder, record) for folder, record in runs), speed_tables(reports)])


def render_combined(folders, against: str | None = None) -> str:
    """One table of every `starec bench` row in `folders` per dataset, each row scored on the users all rows of its
    dataset share (the first N test users, N the fewest any row has), under each run's provenance: runs of different
    sizes, such as the classical rows on 1,000 users and an LLM row on 32, compared on the same cases. With
    `against` (a row label such as `SASRec_full`), a second table compares every other row with it user by user."""
    runs = recorded(folders)
    datasets = list(dict.fromkeys(record["config"]["dataset"] for _, record in runs))
    return "\n\n".join(_combined_section([run for run in runs if run[1]["config"]["dataset"] == dataset], dataset,
                                          against) for dataset in datasets)


def recorded(folders) -> list[tuple[Path, dict]]:
    """(folder, run record) per results folder."""
    return [(Path(folder), read_json(Path(folder) / "run.json", "run record")) for folder in folders]


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
    every = {row["seed"]: np.arange(shared) for row in rows}
    parts = [*(provenance(folder, record) for folder, record in runs),
             f"### {dataset}: every row on the first {shared} test users", _subset_table(rows, every, dataset)]
    if against:
        parts += [f"### {dataset}: each row against {against}, user by user", paired_table(rows, every, against)]
    cold = cold_cases(runs, shared)
    if cold and all(len(cases) for cases in cold.values()):
        parts += [f"### {dataset}: the cold-start users among them (their target never occurs in `_full` training)",
                  _subset_table(rows, cold, dataset, anchors=False)]
        if against:
            parts += [f"### {dataset}: cold-start users, each row against {against}", paired_table(rows, cold, against)]
    if any(row.get("chosen") for row in rows):
        parts += [f"### {dataset}: the fusion weights each fused row chose on validation", chosen_table(rows)]
    return "\n\n".join(parts)


def _subset_table(rows: list[dict], cases: dict[int, np.ndarray], dataset: str, anchors: bool = True) -> str:
    """`summary_table` of the rows scored on `cases[seed]`, the test positions each row's seed keeps."""
    frame = pd.DataFrame([{**{k: v for k, v in row.items() if k not in ("ranks", "curve", "folder", "chosen")},
                           **summarize(np.asarray(row["ranks"])[cases[row["seed"]]]), "users": len(cases[row["seed"]])}
                          for row in rows])
    return summary_table(frame, dataset, anchors)


def cold_cases(runs: list[tuple[Path, dict]], shared: int) -> dict[int, np.ndarray] | None:
    """Per seed, the cold-start positions among the first `shared` test cases, from the protocol records beside the
    rows; None where a run's records predate them."""
    records = [protocol for folder, _ in runs
               for protocol in read_json(folder / "results.json", "results file").get("protocols", [])]
    if not records or any("cold_test_cases" not in protocol for protocol in records):
        return None
    return {protocol["config"]["seed"]: np.array([i for i in protocol["cold_test_cases"] if i < shared], dtype=int)
            for protocol in records}


def chosen_table(rows: list[dict]) -> str:
    """Per `fused` row: the line weights it chose, their validation NDCG@10 ×100 and that of the best line alone."""
    lines = ["| Method | seed | co-liked | popular | tool | validation NDCG@10 | best line alone |", "|---" * 7 + "|"]
    for row in (row for row in rows if row.get("chosen")):
        weights, tried = row["chosen"]["weights"], row["chosen"]["validation"]
        alone = max(t["ndcg@10"] for t in tried if sum(t[line] > 0 for line in weights) == 1)
        best = max(t["ndcg@10"] for t in tried)
        lines.append(f"| {row_label(row['policy'], row['view'])} | {row['seed']} | "
                     + " | ".join(f"{weights[line]:g}" for line in ("co_liked", "popular", "tool"))
                     + f" | {100 * best:.2f} | {100 * alone:.2f} |")
    return "\n".join(lines)


def paired_table(rows: list[dict], cases: dict[int, np.ndarray], against: str) -> str:
    """NDCG@10 ×100 of each row minus the row labelled `against`, on the test positions `cases` keeps for that
    row's seed: mean ± standard error, the Wilcoxon signed-rank p-value, and the users ranked better / worse."""
    labels = [row_label(row["policy"], row["view"]) for row in rows]
    if labels.count(against) != 1:
        raise ValueError(f"--against {against!r} must name exactly one row; the rows are {labels}")
    base_row = rows[labels.index(against)]
    kept = cases[base_row["seed"]]
    base = ndcg(np.asarray(base_row["ranks"])[kept], 10)
    lines = ["| Method | Δ NDCG@10 | p (Wilcoxon) | better | worse | users |", "|---|---|---|---|---|---|"]
    for label, row in zip(labels, rows):
        if label != against:
            paired = paired_difference(base, ndcg(np.asarray(row["ranks"])[kept], 10))
            lines.append(f"| {label} | {100 * paired['mean']:+.2f} ± {100 * paired['se']:.2f} | "
                         f"{paired['p_wilcoxon']:.2g} | {paired['better']} | {paired['worse']} | {len(kept)} |")
    return "\n".join(lines)


def provenance(folder: Path, record: dict) -> str:
    command = "starec " + " ".join(shlex.quote(arg) for arg in record["command"][1:])
    digest = hashlib.sha256(json.dumps(record["config"], sort_keys=True, default=str).encode()).hexdigest()[:12]
    data = ", ".join(dict.fromkeys(f"{name} `{sha[:12]}`" for protocol in record["protocols"]  # once per file
                                   for name, sha in protocol["sources_sha256"].items()))
    commit = (record.get("git_commit") or "unknown")[:10]
    commit += {True: " with uncommitted changes", False: "", None: ", working tree not recorded"}[
        record.get("git_uncommitted_changes")]
    return (f"{RENDERED} {folder.name}; config {digest} -->\n"
            f"Made by `{command}` (commit {commit}); data SHA-256: {data}.")


def render_headline(folders) -> str:
    """NDCG@10 ×100 (mean over seeds) of every row trained on the full view, and Random, per dataset beside the
    paper's row: the README's table."""
    runs = recorded(folders)
    rows = [{**row, "dataset": record["config"]["dataset"]} for folder, record in runs
            for row in read_json(folder / "results.json", "results file")["rows"] if row["view"] in ("full", "-")]
    frame = pd.DataFrame(rows)
    datasets = list(dict.fromkeys(frame["dataset"]))
    means = frame.groupby(["policy", "view", "dataset"], sort=False)["ndcg@10"].mean().unstack("dataset")
    lines = ["| Method | " + " | ".join(f"{d} (ours) | {d} (paper)" for d in datasets) + " |",
             "|---|" + "---|---|" * len(datasets)]
    for (policy, view), scores in means.iterrows():
        cells = [f"{number_cell(100 * scores[d] if pd.notna(scores[d]) else None)} | "
                 f"{number_cell(anchor_ndcg10(PAPER, d, policy, view))}" for d in datasets]
        lines.append(f"| {row_label(policy, view)} | " + " | ".join(cells) + " |")
    return "\n\n".join([*(provenance(folder, record) for folder, record in runs), "\n".join(lines)])


def render_options(folders) -> str:
    """An option sweep: per run and policy/view, the run's `--option` settings (threads left out: they change no
    score), test NDCG@10 ×100 as the mean over seeds and each seed's, and the mean over seeds of the best
    validation NDCG@10 on the training curve."""
    runs = recorded(folders)
    lines = ["| options | Method | test NDCG@10 | per seed | best validation |", "|---|---|---|---|---|"]
    for folder, record in runs:
        settings = {k: v for k, v in record["config"]["policy_options"].items() if k != "threads"}
        label = " ".join(f"`{k}={v}`" for k, v in settings.items()) or "defaults"
        frame = pd.DataFrame(read_json(folder / "results.json", "results file")["rows"]).sort_values("seed")
        for (policy, view), group in frame.groupby(["policy", "view"], sort=False):
            curves = [curve for curve in group.get("curve", []) if isinstance(curve, list) and curve]
            best = np.mean([max(entry["valid_ndcg@10"] for entry in curve) for curve in curves]) if curves else None
            lines.append(f"| {label} | {row_label(policy, view)} | {100 * group['ndcg@10'].mean():.2f} | "
                         + ", ".join(f"{100 * value:.2f}" for value in group["ndcg@10"])
                         + f" | {number_cell(None if best is None else 100 * best)} |")
    return "\n\n".join([*(provenance(folder, record) for folder, record in runs), "\n".join(lines)])


def write_block(page: Path, name: str, folders, layout: str = "runs", against: str | None = None,
                records: Path | None = None) -> Path:
    """The report of `folders` into the page's block `name` (replaced where it is, else added at the end; the rest
    of the page kept). With `records`, the runs' records are copied there first and the block renders from them."""
    if not re.fullmatch(r"[\w-]+", name):
        raise ValueError(f"report block name {name!r}: use letters, digits, '-' or '_'")
    folders = [Path(folder) for folder in folders]
    if records is not None:
        folders = [keep_records(folder, Path(records)) for folder in folders]
    current = page.read_text() if page.is_file() else ""
    return write_text(page, with_block(current, name, block_text(page, name, folders, layout, against)))


def block_text(page: Path, name: str, folders: list[Path], layout: str, against: str | None) -> str:
    """The block: its opening marker is the report command that made it (run folders relative to the page)."""
    where = [os.path.relpath(folder.resolve(), page.resolve().parent) for folder in folders]
    flags = ([] if layout == "runs" else [f"--{layout}"]) + (["--against", against] if against else [])
    return (f"{REPORT_BEGIN} {name}: {shlex.join(flags + where)} -->\n{render(folders, layout, against)}\n"
            f"{REPORT_END} {name} -->")


def with_block(text: str, name: str, block: str) -> str:
    found = [match for match in BLOCK.finditer(text) if match.group(1) == name]
    if found:
        return text[:found[0].start()] + block + text[found[0].end():]
    return (text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n"


def rendered_again(page: Path) -> str:
    """The page with every named block rendered again from the runs its marker names."""
    text = page.read_text()
    for name, flags in [(match.group(1), match.group(2)) for match in BLOCK.finditer(text)]:
        layout, against, folders = parse_block(flags, page)
        text = with_block(text, name, block_text(page, name, folders, layout, against))
    return text


def refresh(page: Path) -> bool:
    """Re-render `page`'s blocks in place; whether anything changed."""
    text = rendered_again(page)
    changed = text != page.read_text()
    if changed:
        write_text(page, text)
    return changed


def keep_records(folder: Path, records: Path) -> Path:
    """`folder`'s run record and results written (atomically, as compact JSON) into `records/<folder name>/`, which
    is returned."""
    kept = records / folder.name
    if kept.resolve() != folder.resolve():
        names = ["run.json", *(name for name in RECORDS if (folder / name).is_file())]
        if len(names) == 1 or not (folder / "run.json").is_file():
            raise ValueError(f"{folder}: not a results folder of `starec bench`, `fidelity`, `train` or `speed` "
                             f"(it needs run.json and one of {', '.join(RECORDS)})")
        for name in names:
            write_json(kept / name, read_json(folder / name, name), separators=(",", ":"))
    return kept


def parse_block(flags: str, page: Path) -> tuple[str, str | None, list[Path]]:
    """(layout, against, run folders) from a block's marker, the folders resolved against the page's folder."""
    words, layout, against, folders = shlex.split(flags), "runs", None, []
    while words:
        word = words.pop(0)
        if word == "--against" and words:
            against = words.pop(0)
        elif word.startswith("--") and word[2:] in LAYOUTS:
            layout = word[2:]
        else:
            folders.append(page.parent / word)
    missing = [str(folder) for folder in folders if not (folder / "run.json").is_file()]
    if missing or not folders:
        raise ValueError(f"{page}: a report block names runs whose records are not there: {missing or 'none named'}")
    return layout, against, folders
