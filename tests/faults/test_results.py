"""Results are never silently mixed or lost: unique folders, checked resumes, atomic files, kill -9 and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from starec_env.benchmarks.replay import BenchConfig, run_benchmark
from starec_env.benchmarks.report import new_results_dir
from starec_env.files import atomic_path, read_json
from starec_env.protocol import build_protocol, default_config
from starec_env.trainers.distill import _complete_lines

QUICK = BenchConfig(dataset="ml-1m", policies=("random", "pop"), views=("full",))


def test_two_runs_started_in_the_same_second_get_two_folders(tmp_path):
    folders = {new_results_dir(str(tmp_path), "ml-1m") for _ in range(3)}
    assert len(folders) == 3 and all(folder.is_dir() for folder in folders)


@pytest.mark.parametrize("change", [{"dataset": "amazon-cds"}, {"n_users": 10}, {"model": "hf:other"},
                                    {"policy_options": {"epochs": 3}}])
def test_resuming_under_other_settings_is_refused_before_anything_runs(ml1m, tmp_path, change):
    _, _, out = run_benchmark(replace(QUICK, out=str(tmp_path)))
    before = (out / "results.json").read_text()
    with pytest.raises(ValueError, match=f"other settings \\({next(iter(change))}"):
        run_benchmark(replace(QUICK, **change, policies=("random", "pop", "bpr")), out)
    assert (out / "results.json").read_text() == before  # nothing lost or mixed


def test_resuming_nothing_or_a_truncated_file_is_a_clear_error(ml1m, tmp_path):
    with pytest.raises(ValueError, match="no results.json to resume"):
        run_benchmark(QUICK, tmp_path / "missing")
    _, _, out = run_benchmark(replace(QUICK, out=str(tmp_path)))
    text = (out / "results.json").read_text()
    (out / "results.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="results.json: this results file is not valid JSON.*Delete it"):
        run_benchmark(QUICK, out)


def test_a_corrupt_protocol_cache_entry_is_rebuilt(ml1m, monkeypatch, tmp_path):
    monkeypatch.setenv("STAREC_CACHE_DIR", str(tmp_path))
    first = build_protocol("ml-1m", default_config("ml-1m", seed=5))
    (arrays,) = tmp_path.glob("protocol/*/arrays.npz")
    arrays.write_bytes(arrays.read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable protocol cache"):
        again = build_protocol("ml-1m", default_config("ml-1m", seed=5))
    assert np.array_equal(first.test.candidates, again.test.candidates)
    assert build_protocol("ml-1m", default_config("ml-1m", seed=5)).stats == first.stats  # the rebuilt entry loads


def test_a_failed_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "results.json"
    target.write_text('{"rows": [1]}')
    with pytest.raises(RuntimeError), atomic_path(target) as scratch:
        scratch.write_text('{"rows": [1, 2')
        raise RuntimeError("killed mid-write")
    assert read_json(target) == {"rows": [1]} and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_trace_file_cut_mid_line_resumes_at_its_last_whole_line(tmp_path):
    traces = tmp_path / "traces.jsonl"
    traces.write_text('{"a": 1}\n{"a": 2}\n{"a": ')
    assert _complete_lines(traces) == 2 and traces.read_text() == '{"a": 1}\n{"a": 2}\n'


@pytest.mark.slow
def test_kill_9_during_a_bench_row_then_resume_gives_the_uninterrupted_rows(ml1m, tmp_path):
    """A real `starec bench` process is killed while BPR trains, then resumed with `--resume`."""
    starec = str(Path(sys.executable).with_name("starec"))
    command = [starec, "bench", "--dataset", "ml-1m", "--policies", "pop,bpr", "--train", "full",
               "--option", "epochs=10", "--option", "eval_every=5"]
    whole = subprocess.run([*command, "--out", str(tmp_path / "whole")], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-1000:]
    killed = subprocess.Popen([*command, "--out", str(tmp_path / "killed")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list((tmp_path / "killed").glob("*/results.json")):
        time.sleep(0.05)  # the pop row is written; bpr is training
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    (out,) = (tmp_path / "killed").glob("ml-1m-*")
    assert [row["policy"] for row in read_json(out / "results.json")["rows"]] == ["pop"]
    resumed = subprocess.run([*command, "--resume", str(out)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-1000:]
    rows = {r["policy"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    (reference,) = (tmp_path / "whole").glob("ml-1m-*")
    expected = {r["policy"]: r for r in json.loads((reference / "results.json").read_text())["rows"]}
    assert rows.keys() == expected.keys() == {"pop", "bpr"}
    assert all(rows[p][k] == expected[p][k] for p in rows for k in ("ndcg@1", "ndcg@10", "mrr"))
