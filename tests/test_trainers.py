"""Distillation screening, and a few real SFT and GRPO optimizer steps on SmolLM2 with env prompts and rewards."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from trainers.distill import DistillConfig, _screened, distill, screen, training_cases
from trainers.grpo import GRPORunConfig, grpo, ranking_reward
from trainers.sft import SFTRunConfig, sft

GOOD = "<think>They like dramas.</think>\n[" + ", ".join(str(i) for i in range(1, 21)) + "]"


@pytest.mark.parametrize("text, error", [
    (GOOD, None), ("[1, 2, 3]", "rationale inside <think>"), ("<think>hm</think> I like [3]", "give all 20 labels"),
    ("<think></think>\n[1, 2]", "rationale inside")])
def test_screen_checks_format(text, error):
    found, _, _ = screen(text, 20, target_index=0, threshold=0.3)
    assert (found is None) if error is None else (error in found)


def test_screen_rejects_a_ranking_below_the_threshold():
    error, quality, about_format = screen(GOOD, 20, target_index=19, threshold=0.3)
    assert "rank 20" in error and quality == 0 and not about_format


class ScriptedTeacher:
    """Answers from a script, one list per attempt (a stand-in teacher for testing the screening loop only)."""

    name, revises_ranking = "scripted", True

    def __init__(self, *attempts):
        self.attempts, self.calls = list(attempts), []

    def write(self, cases, errors, previous):
        self.calls.append(list(errors))
        return [self.attempts[min(len(self.calls), len(self.attempts)) - 1] for _ in cases]


@pytest.fixture(scope="module")
def cases(ml1m):
    return training_cases(ml1m, DistillConfig(users=4, seed=3))


def test_training_cases_never_show_held_out_items(ml1m, cases):
    for case in cases:
        sequence = ml1m.sequences[case.user]
        assert case.candidates[case.target_index] == sequence[-3]  # the last training item, not valid/test
        assert not {int(sequence[-1]), int(sequence[-2])} & set(case.candidates)


def test_rejected_traces_go_back_with_their_error(cases):
    teacher = ScriptedTeacher("no idea", GOOD.replace("[1, 2", "[2, 1"))
    results = _screened(teacher, cases[:2], DistillConfig(ndcg_threshold=0.0))
    assert [r[3] for r in results] == [2, 2] and all(r[1] is None for r in results)
    assert teacher.calls[0] == [None, None] and "rationale" in teacher.calls[1][0]
    stubborn = _screened(ScriptedTeacher("still no idea"), cases[:1], DistillConfig(max_attempts=3))
    assert stubborn[0][1] is not None and stubborn[0][3] == 3


def test_distill_appends_and_resumes(ml1m, tmp_path):
    out = tmp_path / "traces.jsonl"
    config = DistillConfig(users=3, ndcg_threshold=0.0)
    distill(ml1m, config, out, teacher=ScriptedTeacher(GOOD), batch=2)
    lines = [json.loads(line) for line in out.open()]
    assert len(lines) == 3 and all(line["accepted"] and line["teacher"] == "scripted" for line in lines)
    counts = distill(ml1m, config, out, teacher=ScriptedTeacher(GOOD), batch=2)
    assert counts["resumed_from"] == 3 and len(out.read_text().splitlines()) == 3


def test_rewards_come_from_the_env_reward_module():
    completions = [[{"content": GOOD}], [{"content": "garbage"}], [{"content": "<think>x</think>[20, 19, 1]"}]]
    assert ranking_reward(completions, [0, 0, 19], [20, 20, 20]) == [1.0, -1.0, 1.0]


@pytest.fixture(scope="module")
def traces(cases, tmp_path_factory):
    path = tmp_path_factory.mktemp("traces") / "traces.jsonl"
    rng = np.random.default_rng(0)
    with path.open("w") as sink:
        for case in cases:  # varied teacher orders: the student learns the format, not one fixed list
            order = ", ".join(str(i) for i in rng.permutation(20) + 1)
            sink.write(json.dumps({"prompt": case.chat, "completion": f"<think>They like dramas.</think>\n[{order}]",
                                   "accepted": True}) + "\n")
    return path


def _weights(folder):
    return load_file(str(next(folder.glob("*.safetensors"))))


def test_sft_steps_change_weights_and_resume(traces, tmp_path, smollm, monkeypatch):
    import trainers.sft as module

    before = {k: v.clone() for k, v in smollm.model.state_dict().items()}
    final = sft(traces, tmp_path, SFTRunConfig(steps=2, batch_size=2, save_every=1, learning_rate=1e-4))
    after = _weights(final)
    assert any(not torch.equal(before[k], after[k]) for k in after if k in before)
    losses = [row["loss"] for row in json.loads((tmp_path / "checkpoints" / "checkpoint-2" /
                                                  "trainer_state.json").read_text())["log_history"] if "loss" in row]
    assert len(losses) == 2 and np.isfinite(losses).all()
    resumed_from = []
    original = module.last_checkpoint
    monkeypatch.setattr(module, "last_checkpoint", lambda folder: resumed_from.append(original(folder)) or
                        resumed_from[-1])
    sft(traces, tmp_path, SFTRunConfig(steps=3, batch_size=2, save_every=1, learning_rate=1e-4))
    state = json.loads((tmp_path / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text())
    assert resumed_from[0].endswith("checkpoint-2") and state["global_step"] == 3


def test_grpo_steps_with_env_rewards_change_weights(ml1m, traces, tmp_path):
    start = sft(traces, tmp_path / "sft", SFTRunConfig(steps=3, batch_size=2, learning_rate=5e-4))  # learns the format
    config = GRPORunConfig(steps=1, generations=8, prompts_per_step=1, max_completion_length=64, users=4,
                           learning_rate=1e-4, temperature=1.0)
    final = grpo(str(start), ml1m, tmp_path / "grpo", config)
    before, after = _weights(start), _weights(final)
    assert any(not torch.equal(before[k], after[k]) for k in after)
    log = pd.read_csv(tmp_path / "grpo" / "grpo.csv")
    assert {"reward", "reward_std", "kl"} <= set(log.columns) and log["reward_std"].iloc[0] > 0
