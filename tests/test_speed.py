"""Speed benchmarks report numbers and ratios; the tests check that they measure what they say, never how fast."""

import pytest

from starec_env.benchmarks.render import RENDERED, render, write_block
from starec_env.benchmarks.speed import SpeedConfig, _count, env_speed, run_speed, speed_tables
from starec_env.files import read_json


def test_env_speed_reports_replay_rates_of_single_and_vector_envs(ml1m, tmp_path):
    report = env_speed(users=0, replay_steps=64)
    assert report["replay_user_steps_per_second"] > 0 and report["replay_vector16_user_steps_per_second"] > 0
    assert "simulate_batched" not in report  # users=0 skips the LLM users


def test_a_speed_run_is_a_recorded_run(ml1m, tmp_path):
    folder = run_speed(SpeedConfig("env", users=0), tmp_path)
    assert folder.name.startswith("speed-env-ml-1m-")
    record, report = read_json(folder / "run.json"), read_json(folder / "speed.json")
    assert record["config"]["kind"] == "env" and record["protocols"][0]["sources_sha256"]
    assert record["timings"][0]["stage"] == "env" and report["kind"] == "env"
    assert report["replay_user_steps_per_second"] > 0
    with pytest.raises(ValueError, match="unknown speed kind 'fast'"):
        run_speed(SpeedConfig("fast"), tmp_path)
    page = render([folder])
    assert page.startswith(f"{RENDERED} {folder.name}") and "Made by `starec" in page
    replay = f"| ml-1m | 2 | {_count(report['replay_user_steps_per_second'])} |"
    assert replay in page
    kept = write_block(tmp_path / "speed.md", "env", [folder], records=tmp_path / "runs")
    assert (tmp_path / "runs" / folder.name / "speed.json").is_file() and replay in kept.read_text()
    with pytest.raises(ValueError, match="`starec speed` runs or result runs, not both"):
        render([folder, tmp_path / "runs"])


def test_speed_tables_put_each_kind_in_a_row_per_run():
    llm = {"kind": "llm", "model": "hf:x", "threads": 2, "max_tokens": 32, "prompts": 4, "batch_size": 4,
           "one_by_one": {"seconds": 40.0}, "batched": {"seconds": 20.0, "completion_tokens_per_second": 6.4},
           "batched_speedup": 2.0, "single_stream_tokens_per_second": 3.2, "peak_rss_mib": 2048}
    tables = speed_tables([llm, {**llm, "max_tokens": 192, "batched_speedup": 3.0}])
    rows = [line for line in tables.splitlines() if line.startswith("| hf:x")]
    assert rows == ["| hf:x | 2 | 32 | 4 | 40 s | 20 s (4 per call) | **2.00×** | 3.2 | 6.4 | — | 2.0 |",
                    "| hf:x | 2 | 192 | 4 | 40 s | 20 s (4 per call) | **3.00×** | 3.2 | 6.4 | — | 2.0 |"]
    assert [_count(rate) for rate in (11.5e6, 457e3, 6401.2, 0.1704)] == ["11.5 M", "457 K", "6,401", "0.17"]


@pytest.mark.slow
def test_simulate_speed_times_each_phase_of_the_same_steps_in_every_run(smollm, monkeypatch):
    import starec_env.benchmarks.speed as speed

    monkeypatch.setattr(speed, "_bf16_default", lambda: True)  # as where bfloat16 is native: float32 timed beside it
    report = env_speed(users=2, rounds=1, replay_steps=16, choices=("likelihood", "generate"))
    runs = [name for name in report if name.startswith("simulate_") and isinstance(report[name], dict)]
    assert set(runs) == {"simulate_batched", "simulate_batched_without_prefix_cache", "simulate_batched_with_rationale",
                         "simulate_one_by_one", "simulate_batched_generate", "simulate_one_by_one_generate",
                         "simulate_batched_float32"}
    assert report["simulate_batched_float32"]["dtype"] == "float32"
    assert 0 <= report["bf16_same_choice_as_float32"] <= 1 and report["bf16_speedup"] > 0
    for name in runs:
        run = report[name]
        assert run["user_steps"] == 2 and {"summary", "choice", "rating"} <= set(run["phases"])
        assert sum(p["seconds"] for p in run["phases"].values()) <= run["seconds"]
    assert "rationale" in report["simulate_batched_with_rationale"]["phases"]
    assert "rationale" not in report["simulate_batched"]["phases"]  # no decode for it unless asked
    assert report["simulate_batched"]["tokens"] == report["simulate_batched_without_prefix_cache"]["tokens"]
    assert report["simulate_batched_speedup_generate"] > 0 and report["prefix_cache_speedup"] > 0
