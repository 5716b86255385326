import json
import shutil
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from starec_env.benchmarks.replay import BenchConfig, run_benchmark
from starec_env.benchmarks.cli import main


def test_custom_policy_by_import_path_runs_through_the_benchmark(ml1m, tmp_path, monkeypatch):
    (tmp_path / "my_policies.py").write_text(textwrap.dedent('''
        import numpy as np

        class RecentGenre:
            """Scores candidates by how many of the user's last 5 items they equal (a toy custom policy)."""
            name = "recent"

            def fit(self, train):
                self.counts = np.bincount(np.concatenate(train.sequences), minlength=train.n_items)
                return self

            def score(self, cases):
                return np.log1p(self.counts[cases.candidates])
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    rows, records, out = run_benchmark(BenchConfig(dataset="ml-1m", policies=("random", "my_policies:RecentGenre"),
                                                   views=("full", "sample"), out=str(tmp_path / "results")))
    assert [(r["policy"], r["view"]) for r in rows] == [("random", "-"), ("recent", "full"), ("recent", "sample")]
    assert rows[1]["ndcg@10"] > rows[0]["ndcg@10"]
    table = (out / "table.md").read_text()
    assert "| recent_full |" in table and "| Random |" in table
    assert len(pd.read_csv(out / "results.csv")) == 3
    record = json.loads((out / "run.json").read_text())
    assert record["protocols"][0]["stats"][3]["interactions"] == 274_545
    assert record["versions"]["torch"] and (out / "ndcg.png").stat().st_size > 1000
    assert "my_policies" in sys.modules


def test_bench_command_with_training_curves(ml1m, tmp_path):
    assert main(["bench", "--policies", "pop,sasrec", "--train", "sample", "--seeds", "0", "--out", str(tmp_path),
                 "--option", "epochs=1", "--option", "progress=false"]) == 0
    folder = next(tmp_path.iterdir())
    frame = pd.read_csv(folder / "results.csv")
    assert list(frame["policy"]) == ["pop", "sasrec"]
    assert (folder / "curves.png").is_file()
    assert (folder / "checkpoints" / "sasrec_sample_seed0.safetensors").is_file()


def test_killed_run_resumes_without_redoing_rows(ml1m, tmp_path):
    config = BenchConfig(dataset="ml-1m", policies=("pop",), views=("full", "sample"), out=str(tmp_path))
    first, _, out = run_benchmark(config)
    config.policies = ("pop", "random")
    rows, _, again = run_benchmark(config, out)
    assert again == out and [(r["policy"], r["view"]) for r in rows] == [("pop", "full"), ("pop", "sample"),
                                                                       ("random", "-")]
    assert rows[0]["eval_seconds"] == first[0]["eval_seconds"]  # read back, not recomputed
    assert len(pd.read_csv(out / "results.csv")) == 3


def test_a_policy_by_file_path_loads_without_shadowing_installed_modules(tmp_path):
    import random

    from starec_env.policies.registry import policy_class

    (tmp_path / "random.py").write_text("class Mine:\n    name = 'mine'\n\n    def score(self, cases):\n"
                                        "        return cases.candidates * 0.0\n")
    assert policy_class(f"{tmp_path / 'random.py'}:Mine")().name == "mine"
    assert sys.modules["random"] is random and hasattr(random, "shuffle")


def test_runs_of_different_sizes_combine_into_one_table_on_the_users_they_share(ml1m, tmp_path):
    from starec_env.benchmarks.render import render_combined
    from starec_env.metrics import ndcg, paired_difference, summarize

    config = BenchConfig(dataset="ml-1m", policies=("random", "pop"), views=("full",), n_users=20, out=str(tmp_path))
    (big, _, first), (_, _, second) = run_benchmark(config), run_benchmark(
        replace(config, policies=("co-liked",), n_users=8))
    text = render_combined([first, second])
    lines = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    assert {"Random", "Pop_full", "co-liked_full"} <= set(lines)
    assert all(" | 8 | " in lines[name] for name in ("Random", "Pop_full", "co-liked_full"))  # the first 8 users
    expected = 100 * summarize(np.asarray(big[1]["ranks"][:8]))["ndcg@10"]
    assert f"| {expected:.2f} |" in lines["Pop_full"] and text.count("rendered by starec report") == 2
    paired = render_combined([first, second], against="Pop_full").split("each row against Pop_full, user by user")[1]
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in paired.splitlines() if line.startswith("| ")}
    assert set(rows) == {"Method", "Random", "co-liked_full"}
    random = paired_difference(ndcg(np.asarray(big[1]["ranks"][:8]), 10), ndcg(np.asarray(big[0]["ranks"][:8]), 10))
    assert rows["Random"][1] == f"{100 * random['mean']:+.2f} ± {100 * random['se']:.2f}"
    assert rows["Random"][3:5] == [str(random["better"]), str(random["worse"])]
    with pytest.raises(ValueError, match="exactly one row"):
        render_combined([first, second], against="SASRec_full")
    with pytest.raises(ValueError, match="more than one run"):
        render_combined([first, first])
    run_cds = run_benchmark(replace(config, dataset="amazon-cds", policies=("pop",), n_users=5))[2]
    both = render_combined([first, second, run_cds])  # one section per dataset, each on its own shared users
    assert both.index("ml-1m: every row on the first 8") < both.index("amazon-cds: every row on the first 5")


def test_cold_start_users_are_reported_apart_where_the_protocol_has_them(cds, tmp_path):
    from starec_env.benchmarks.render import render_combined
    from starec_env.metrics import ndcg, paired_difference, summarize

    config = BenchConfig(dataset="amazon-cds", policies=("random", "pop"), views=("full",), n_users=60,
                         out=str(tmp_path))
    rows, _, run = run_benchmark(config)
    cold = cds.cold_test()[cds.cold_test() < 60]
    assert len(cold) > 0
    text = render_combined([run], against="Pop_full")
    section = text.split("the cold-start users among them")[1].split("###")[0]
    pop = next(line for line in section.splitlines() if line.startswith("| Pop_full"))
    expected = 100 * summarize(np.asarray(rows[1]["ranks"])[cold])["ndcg@10"]
    assert f"| {expected:.2f} |" in pop and f" | {len(cold)} | " in pop
    paired = text.split("cold-start users, each row against Pop_full")[1]
    difference = paired_difference(ndcg(np.asarray(rows[1]["ranks"])[cold], 10),
                                   ndcg(np.asarray(rows[0]["ranks"])[cold], 10))
    assert f"| Random | {100 * difference['mean']:+.2f} ± {100 * difference['se']:.2f} |" in paired


def test_an_option_sweep_renders_a_row_per_run_labelled_by_its_options(cds, tmp_path):
    from starec_env.benchmarks.render import render

    config = BenchConfig(dataset="amazon-cds", policies=("sasrec",), views=("sample",), seeds=(0, 1), n_users=20,
                         out=str(tmp_path), policy_options={"epochs": 2, "eval_every": 1, "threads": 1})
    (plain, _, first), (dropped, _, second) = run_benchmark(config), run_benchmark(
        replace(config, policy_options={**config.policy_options, "dropout": 0.7}))
    lines = [line for line in render([first, second], "options").splitlines() if line.startswith("| `")]
    assert [line.split(" | ")[0] for line in lines] == ["| `epochs=2` `eval_every=1`",
                                                        "| `epochs=2` `eval_every=1` `dropout=0.7`"]
    for line, rows in zip(lines, (plain, dropped)):
        per_seed = ", ".join(f"{100 * row['ndcg@10']:.2f}" for row in rows)
        best = 100 * np.mean([max(entry["valid_ndcg@10"] for entry in row["curve"]) for row in rows])
        assert line.endswith(f" | {per_seed} | {best:.2f} |") and " | SASRec_sample | " in line


def test_a_page_keeps_its_runs_records_and_renders_again_from_them(ml1m, tmp_path):
    """`starec report RUN... --out PAGE --records DIR`: the block's marker is the command that made it, the records
    beside the page are enough to render it again, and a changed record changes the page on refresh."""
    from starec_env.benchmarks.render import refresh, rendered_again, write_block

    config = BenchConfig(dataset="ml-1m", policies=("random", "pop"), views=("full",), n_users=10,
                         out=str(tmp_path / "results"))
    run = run_benchmark(config)[2]
    page, records = tmp_path / "docs" / "page.md", tmp_path / "docs" / "runs"
    page.parent.mkdir()
    page.write_text("# Results\n\nKept.\n")
    write_block(page, "headline", [run], "headline", records=records)
    write_block(page, "classical", [run], "combined", against="Pop_full", records=records)
    text = page.read_text()
    assert text.startswith("# Results\n\nKept.\n") and sorted(p.name for p in (records / run.name).iterdir()) == [
        "results.json", "run.json"]
    assert f"<!-- starec report: begin classical: --combined --against Pop_full runs/{run.name} -->" in text
    headline = text.split("begin headline")[1].split("end headline")[0]
    assert "| Method | ml-1m (ours) | ml-1m (paper) |" in headline and "| Pop_full |" in headline
    assert "| 49.08 |" in headline  # the paper's Pop row, from benchmarks.references
    shutil.rmtree(run)  # the page no longer needs the results folder
    assert rendered_again(page) == text and not refresh(page)
    saved = json.loads((records / run.name / "results.json").read_text())
    assert saved["rows"][1]["policy"] == "pop"
    saved["rows"][1]["ndcg@10"] = 1.0  # as if Pop had ranked every target first
    (records / run.name / "results.json").write_text(json.dumps(saved))
    assert refresh(page) and "| Pop_full | 100.00 | 49.08 |" in page.read_text()
    shutil.rmtree(records / run.name)
    with pytest.raises(ValueError, match="records are not there"):
        rendered_again(page)


def test_a_fused_row_shows_the_weights_it_chose_and_the_best_single_line():
    from starec_env.benchmarks.render import chosen_table

    tried = [{"co_liked": 1.0, "popular": 0.0, "tool": 0.0, "ndcg@10": 0.60},
             {"co_liked": 0.0, "popular": 0.0, "tool": 1.0, "ndcg@10": 0.70},
             {"co_liked": 0.125, "popular": 0.0, "tool": 1.0, "ndcg@10": 0.72}]
    row = {"policy": "fused(co-liked+sasrec)", "view": "full", "seed": 0,
           "chosen": {"weights": {"co_liked": 0.125, "popular": 0.0, "tool": 1.0}, "validation": tried}}
    table = chosen_table([row, {"policy": "sasrec", "view": "full", "seed": 0}]).splitlines()
    assert len(table) == 3 and table[2] == "| fused(co-liked+sasrec)_full | 0 | 0.125 | 0 | 1 | 72.00 | 70.00 |"
