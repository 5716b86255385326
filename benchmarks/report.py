"""Results on disk: a paper-style markdown table, CSV + JSON of every number, PNG plots and a run record."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from starec_env.benchmarks.references import PAPER, REFERENCE  # noqa: E402
from starec_env.files import atomic_path, read_json, write_json, write_text  # noqa: E402
from starec_env.records import run_record  # noqa: E402

DISPLAY = {"random": "Random", "pop": "Pop", "bpr": "BPR", "gru4rec": "GRU4Rec", "sasrec": "SASRec"}
KS = (1, 5, 10, 20)


def new_results_dir(root: str, dataset: str) -> Path:
    """A fresh folder `<dataset>-<time>`, suffixed `-2`, `-3`, … when a run started in the same second has it."""
    stamp = f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    Path(root).mkdir(parents=True, exist_ok=True)
    for number in itertools.count(1):
        folder = Path(root) / (stamp if number == 1 else f"{stamp}-{number}")
        try:
            folder.mkdir()  # atomic: of two runs asking for one name, one gets it and the other the next
            return folder
        except FileExistsError:
            continue


def row_label(policy: str, view: str) -> str:
    name = DISPLAY.get(policy, policy)
    return name if view == "-" else f"{name}_{view}"


RESUME_KEYS = ("dataset", "n_users", "policy_options", "model")  # what rows of one table must share


def resume_state(out: Path, config) -> tuple[list[dict], list[dict]]:
    """(rows, protocol records) of a results folder that this run continues. A folder that is not a results folder,
    or whose rows were made under other settings (dataset, users, options, model), is an error naming the
    difference, before anything runs."""
    if not (out / "results.json").is_file():
        raise ValueError(f"{out}: no results.json to resume; name a results folder, or start without --resume")
    saved = read_json(out / "results.json", "results file")
    earlier = read_json(out / "run.json", "run record")["config"] if (out / "run.json").is_file() else {}
    now = json.loads(json.dumps(asdict(config), default=str))
    differ = [f"{key}: {earlier.get(key)!r} there, {now[key]!r} now" for key in RESUME_KEYS
              if earlier.get(key) != now[key]]
    if differ:
        raise ValueError(f"{out} holds rows made under other settings ({'; '.join(differ)}); resume with the same "
                         "settings, or start a new results folder")
    return saved["rows"], saved.get("protocols", [])


def check_same_protocol(earlier: list[dict], record: dict, out: Path) -> None:
    """A resumed seed must rebuild the protocol it had: same config and the same data files."""
    for old in earlier:
        if old["config"]["seed"] == record["config"]["seed"] and (
                old["config"], old["sources_sha256"]) != (record["config"], record["sources_sha256"]):
            raise ValueError(f"{out}: seed {record['config']['seed']} was run on another protocol or other data "
                             "files than this run's; start a new results folder")


def write_results(rows: list[dict], records: list[dict], config, out: Path, quiet: bool = False) -> None:
    frame = pd.DataFrame([{k: v for k, v in row.items() if k not in ("curve", "spec", "view_asked", "ranks")}
                          for row in rows])
    timings = frame[["policy", "view", "seed", "train_seconds", "eval_seconds"]].to_dict("records")
    write_json(out / "run.json", run_record(config, records, timings), indent=1, default=str)  # before the rows: a
    with atomic_path(out / "results.csv") as scratch:  # folder with results.json always has the record to resume by
        frame.to_csv(scratch, index=False)
    write_json(out / "results.json", {"rows": rows, "protocols": records}, indent=1, default=float)
    table = summary_table(frame, config.dataset)
    write_text(out / "table.md", table + "\n")
    plot_ndcg(frame, config.dataset, out / "ndcg.png")
    curves = [row for row in rows if row.get("curve")]
    if curves:
        plot_curves(curves, out / "curves.png")
    if not quiet:
        print(table)
        print(f"\nresults: {out}")


def summary_table(frame: pd.DataFrame, dataset: str, anchors: bool = True) -> str:
    """Mean ± std over seeds of NDCG@1/5/10/20 ×100, one row per policy/view, with paper and reference @10 unless
    the rows are scored on a subset of the test users (`anchors=False`), which those numbers are not."""
    header = ("| Method | " + " | ".join(f"NDCG@{k}" for k in KS) + " | seeds | users | train s |"
              + (" paper @10 | reference @10 |" if anchors else ""))
    lines = [header, "|" + "---|" * (len(KS) + 4 + 2 * anchors)]
    for (policy, view), group in frame.groupby(["policy", "view"], sort=False):
        cells = [_mean_std(group[f"ndcg@{k}"]) for k in KS]
        line = (f"| {row_label(policy, view)} | " + " | ".join(cells) + f" | {group['seed'].nunique()} | "
                f"{int(group['users'].iloc[0])} | {group['train_seconds'].mean():.1f} |")
        if anchors:
            paper, reference = (anchor_ndcg10(table, dataset, policy, view) for table in (PAPER, REFERENCE))
            line += f" {number_cell(paper)} | {number_cell(reference)} |"
        lines.append(line)
    return "\n".join(lines)


def anchor_ndcg10(table: dict, dataset: str, policy: str, view: str) -> float | None:
    """NDCG@10 in `table` (PAPER or REFERENCE) of `policy_view`, else of `policy` (rows such as Pop that the paper
    gives once), else of the policy's family (`starec-lik-noreflect` → `starec`)."""
    rows, key = table.get(dataset, {}), policy if view == "-" else f"{policy}_{view}"
    return (rows.get(key) or rows.get(policy) or rows.get(policy.split("-")[0]) or (None, None))[1]


def _mean_std(values: pd.Series) -> str:
    values = values * 100
    return f"{values.mean():.2f}" if len(values) == 1 else f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"


def number_cell(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def plot_ndcg(frame: pd.DataFrame, dataset: str, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for (policy, view), group in frame.groupby(["policy", "view"], sort=False):
        means = [group[f"ndcg@{k}"].mean() * 100 for k in KS]
        axis.plot(KS, means, marker="o", label=row_label(policy, view))
    axis.set(xlabel="K", ylabel="NDCG@K × 100", xticks=KS, title=f"{dataset}: replay NDCG@K (20 candidates)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    with atomic_path(path) as scratch:
        figure.savefig(scratch, dpi=120)
    plt.close(figure)


def plot_curves(rows: list[dict], path: Path) -> None:
    """Validation NDCG@10 against training wall time: where time-to-quality is read off."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        curve = pd.DataFrame(row["curve"])
        axis.plot(curve["seconds"], curve["valid_ndcg@10"] * 100,
                  label=f"{row_label(row['policy'], row['view'])} seed {row['seed']}")
    axis.set(xlabel="training seconds", ylabel="validation NDCG@10 × 100", title="training curves")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    with atomic_path(path) as scratch:
        figure.savefig(scratch, dpi=120)
    plt.close(figure)
