"""Speed benchmarks report numbers and ratios; the tests check that they measure what they say, never how fast."""

import json

from starec_env.benchmarks.speed import env_speed, write_report


def test_env_speed_reports_replay_rates_of_single_and_vector_envs(ml1m, tmp_path):
    report = env_speed(users=0, replay_steps=64)
    assert report["replay_user_steps_per_second"] > 0 and report["replay_vector16_user_steps_per_second"] > 0
    assert "simulate_batched" not in report  # users=0 skips the LLM users
    path = write_report(report, str(tmp_path), "env")
    assert json.loads(path.read_text()) == report and path.name.startswith("speed-env-")
