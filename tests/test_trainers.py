"""Distillation screening, and a few real SFT and GRPO optimizer steps on SmolLM2 with env prompts and rewards."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from starec_env.agents.prompts import SUMMARY_HEAD, PromptConfig
from starec_env.policies.evidence import CoLikedGraph, CoLikedPolicy, Evidence, EvidenceSource, describe, most_co_liked
from starec_env.metrics import paired_difference, summarize, target_ranks
from starec_env.trainers.cases import ReflectionCase, reflection_cases, training_cases
from starec_env.trainers.curves import write_stage_bars
from starec_env.trainers.distill import (CoLikedTeacher, DistillConfig, _screened, co_liked_answer, distill,
                                         fused_answer, ranking_check, reflection_check, screen, screen_reflection)
from starec_env.trainers.pipeline import PipelineConfig, _paired, _record, _validate
from starec_env.trainers.sft import SFTRunConfig, hardware, model_path, sft

SHORT = PromptConfig(history=5, think=True)  # short prompts: a CPU optimizer step costs per token
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

    def __init__(self, *attempts, llm=None, reflection=""):
        self.attempts, self.calls, self.llm, self.reflection = list(attempts), [], llm, reflection

    def write(self, cases, errors, previous):
        self.calls.append(list(errors))
        return [self.attempts[min(len(self.calls), len(self.attempts)) - 1] for _ in cases]

    def reflect(self, cases, errors, previous):
        return [self.reflection.format(target=case.target) for case in cases]


REFLECTION = ("Reflection: the user chose {target} because it is a classic.\n" + SUMMARY_HEAD
              + " This user likes classic films from the golden age of Hollywood.")


@pytest.fixture(scope="module")
def cases(ml1m):
    return training_cases(ml1m, users=4, seed=3, prompt=SHORT)  # short prompts: a CPU optimizer step costs per token


@pytest.fixture(scope="module")
def reflections(ml1m, smollm):
    return reflection_cases(ml1m, smollm, users=2, seed=3, prompt=SHORT)


@pytest.mark.slow
def test_reflection_cases_are_misses_followed_by_the_next_training_round(ml1m, reflections):
    assert reflections, "SmolLM2's top pick should miss at least one of two users"
    for case in reflections:
        sequence = [int(i) for i in ml1m.sequences[case.user]]
        follow_up = case.follow_up
        assert follow_up.candidates[follow_up.target_index] == sequence[-3]  # t+1 is the last training item
        assert follow_up.history[-1] == sequence[-4]  # … and round t's real choice is now in the history
        assert ml1m.item_text(sequence[-4]) == case.target and case.target in case.chat[-1]["content"]
        assert case.summary and case.summary in case.chat[-1]["content"]


@pytest.mark.parametrize("text, error", [
    (REFLECTION, None), ("Reflection: because.", SUMMARY_HEAD), ("It is a classic.\n" + SUMMARY_HEAD + " x", "Start"),
    ("Reflection: why.\n" + SUMMARY_HEAD + " {old}", "repeats the old summary"),
    ("Reflection: why.\n" + SUMMARY_HEAD + " This user's preferences were:", "says too little")])
def test_screen_reflection_checks_format_and_change(text, error):
    case = ReflectionCase(1, "This user likes light comedies from the nineties.", "Casablanca (1942; Drama)", [],
                          None)
    found = screen_reflection(text.format(target=case.target, old=case.summary), case)
    assert (found is None) if error is None else (error in found)


def test_training_cases_never_show_held_out_items(ml1m, cases):
    for case in cases:
        sequence = ml1m.sequences[case.user]
        assert case.candidates[case.target_index] == sequence[-3]  # the last training item, not valid/test
        assert not {int(sequence[-1]), int(sequence[-2])} & set(case.candidates)


def test_training_evidence_leaves_out_the_users_own_transitions(ml1m):
    prompt = replace(SHORT, evidence=True)
    source = EvidenceSource(ml1m.train("full"), prompt)
    graph = source.graph
    for case in training_cases(ml1m, users=4, seed=3, prompt=prompt, source=source):
        everyone = graph.counts(case.history, case.candidates)
        target = case.target_index
        counts = case.evidence.counts
        assert everyone[target] >= counts[target] + 1  # the user's own step into the target is not shown
        assert all(n == counts[i] for i, n in enumerate(everyone) if i != target)  # negatives: never theirs
        shown = case.chat[-1]["content"].splitlines()[-2]  # the evidence line, just above the answer format
        assert shown.startswith("Co-liked") and shown.endswith(describe(counts))
        listed = target in most_co_liked(counts, 10)
        assert (f"[{target + 1}] {counts[target]} times" in shown) == listed


def test_popular_evidence_names_the_most_liked_candidates_without_the_users_own_interactions(cds):
    prompt = replace(SHORT, evidence=True, popular=5)
    source = EvidenceSource(cds.train("full"), prompt)
    graph = source.graph
    for case in training_cases(cds, users=6, seed=1, prompt=prompt, source=source):
        own = list(graph.sequences[case.user])  # holds the target: the case is the user's last training step
        liked = [graph.popularity[c] - own.count(c) for c in case.candidates]
        assert [liked[i] for i in case.evidence.popular] == sorted(liked, reverse=True)[:5]
        shown = case.chat[-1]["content"].splitlines()[-2]
        assert shown == f"Most popular with all users, most first: {case.evidence.popular_line()}"
        order, counts, popular = case.evidence.order(), case.evidence.counts, case.evidence.popular
        assert sorted(order) == list(range(len(case.candidates)))
        co_liked = sum(1 for n in counts if n)
        assert all(counts[i] for i in order[:co_liked])  # co-liked first, then the popular ones in their order
        named = [i for i in popular if not counts[i]]
        assert order[co_liked:co_liked + len(named)] == named


def test_ranking_by_the_evidence_order_is_ranking_by_the_counts_when_no_popular_are_named(ml1m):
    cases = ml1m.valid.subset(slice(0, 200))
    by_order = CoLikedPolicy().fit(ml1m.train("full")).score(cases)
    graph = CoLikedGraph(ml1m.train("full"))
    by_counts = np.array([graph.counts(h, c) for h, c in zip(cases.histories, cases.candidates)], dtype=float)
    assert (target_ranks(by_order, cases.target_index) == target_ranks(by_counts, cases.target_index)).all()
    with_popular = CoLikedPolicy(popular=10).fit(ml1m.train("full"))
    assert with_popular.name == "co-liked+pop10"
    assert (with_popular.score(cases) != by_order).any()


def test_the_co_liked_teacher_ranks_by_the_counts_in_the_prompt(smollm, cases):
    answer = co_liked_answer(Evidence([0, 5, 2, 5]))
    assert answer.endswith("[2, 4, 3, 1]") and "[2], [4], [3]." in answer
    assert "popular" not in answer
    answer = co_liked_answer(Evidence([0, 0, 2, 0, 0], popular=[4, 2, 0]))
    assert answer.endswith("[3, 5, 1, 2, 4]") and "items: [3]. Most popular: [5], [3], [1]." in answer
    assert screen(answer, 4, target_index=1, threshold=0.3)[0] is None
    with pytest.raises(ValueError, match="counts in the prompt"):
        CoLikedTeacher(smollm).write(cases[:1], [None], [""])  # built without a graph: nothing to rank by


def test_the_fused_teacher_ranks_in_the_weighted_order_of_the_prompts_lines(smollm, cases):
    from starec_env.policies.fusion import Fusion
    from starec_env.trainers.distill import FusedTeacher

    evidence = Evidence([0, 5, 2, 0], popular=[3], tool=[2, 0], tool_name="sasrec")
    # co-liked [2] 1 + [3] 1/2, popular [4] 1/2, tool [3] 2 + [1] 2/2: [3] 2.5, then [1] and [2] at 1 (listed order)
    answer = fused_answer(evidence, 4, Fusion(co_liked=1, popular=0.5, tool=2))
    assert answer.endswith("</think>\n[3, 1, 2, 4]") and "[3], [1], [2] first" in answer
    assert fused_answer(evidence, 4, Fusion(co_liked=0, popular=0, tool=1)).endswith("[3, 1, 2, 4]")
    assert fused_answer(evidence, 4, Fusion(co_liked=1)).endswith("[2, 3, 1, 4]")
    with pytest.raises(ValueError, match="evidence in the prompt"):
        FusedTeacher(Fusion(), smollm).write(cases[:1], [None], [""])  # built without evidence: nothing to fuse


def test_distilling_with_a_tool_teaches_the_fused_order_of_the_lines_each_prompt_shows(ml1m, smollm, tmp_path,
                                                                                     monkeypatch):
    import starec_env.trainers.distill as module
    from starec_env.policies.fusion import fuse_on

    monkeypatch.setattr(module, "load_llm", lambda spec=None: smollm)
    prompt = replace(SHORT, evidence=True, tool="pop")
    config = DistillConfig(users=4, reflection_users=0, seed=3, teacher="fused", ndcg_threshold=0.0)
    distill(ml1m, config, tmp_path, prompt)
    lines = [json.loads(line) for line in (tmp_path / "traces.jsonl").open()]
    source = EvidenceSource(ml1m.train("full"), prompt)
    fusion, _ = fuse_on(source, ml1m.valid)  # chosen on validation cases, never on the traces' own
    assert len(lines) == 4 and f"fused evidence lines ({fusion.describe()})" in lines[0]["teacher"]
    for line, case in zip(lines, training_cases(ml1m, 4, 3, prompt, source=source)):
        assert line["prompt"] == case.chat and "The pop recommender ranks first: [" in case.chat[-1]["content"]
        assert line["completion"] == fused_answer(case.evidence, 20, fusion)
    with pytest.raises(ValueError, match="needs evidence lines"):
        distill(ml1m, replace(config, users=1), tmp_path / "none", SHORT)


def test_rejected_traces_go_back_with_their_error(cases):
    teacher = ScriptedTeacher("no idea", GOOD.replace("[1, 2", "[2, 1"))
    results = _screened(teacher.write, ranking_check(0.0, True), cases[:2], max_attempts=3)
    assert [r[3] for r in results] == [2, 2] and all(r[1] is None for r in results)
    assert teacher.calls[0] == [None, None] and "rationale" in teacher.calls[1][0]
    stubborn = _screened(ScriptedTeacher("still no idea").write, ranking_check(0.3, True), cases[:1], max_attempts=3)
    assert stubborn[0][1] is not None and stubborn[0][3] == 3


def test_distill_appends_and_resumes(ml1m, tmp_path):
    config = DistillConfig(users=3, reflection_users=0, ndcg_threshold=0.0)
    distill(ml1m, config, tmp_path, replace(SHORT, evidence=True), teacher=ScriptedTeacher(GOOD), batch=2)
    lines = [json.loads(line) for line in (tmp_path / "traces.jsonl").open()]
    assert len(lines) == 3 and all(line["accepted"] and line["teacher"] == "scripted" for line in lines)
    counts = distill(ml1m, config, tmp_path, replace(SHORT, evidence=True), teacher=ScriptedTeacher(GOOD), batch=2)
    assert counts["traces"]["resumed_from"] == 3 and len((tmp_path / "traces.jsonl").read_text().splitlines()) == 3


@pytest.mark.slow
def test_distill_writes_screened_reflection_traces(ml1m, smollm, reflections, tmp_path):
    config = DistillConfig(users=1, reflection_users=2, seed=3, ndcg_threshold=0.0, max_attempts=2)
    teacher = ScriptedTeacher(GOOD, llm=smollm, reflection=REFLECTION)
    counts = distill(ml1m, config, tmp_path, replace(SHORT, evidence=True), teacher=teacher)
    lines = [json.loads(line) for line in (tmp_path / "reflections.jsonl").open()]
    assert counts["reflections"]["kept"] == len(lines) == len(reflections)
    assert all(line["accepted"] and line["prompt"][-1]["content"] for line in lines)
    refused = _screened(ScriptedTeacher(reflection="I do not know.").reflect, reflection_check, reflections[:1], 2)
    assert refused[0][1] is not None and refused[0][3] == 2


@pytest.fixture(scope="module")
def traces(cases, tmp_path_factory):
    path = tmp_path_factory.mktemp("traces") / "traces.jsonl"
    rng = np.random.default_rng(0)
    with path.open("w") as sink:
        for case in cases:  # varied teacher orders (top 5: short completions): the student learns the format
            order = ", ".join(str(i) for i in rng.permutation(20)[:5] + 1)
            sink.write(json.dumps({"prompt": case.chat, "completion": f"<think>They like dramas.</think>\n[{order}]",
                                   "accepted": True}) + "\n")
    return path


def _weights(folder):
    return load_file(str(next(folder.glob("*.safetensors"))))


@pytest.fixture(scope="module")
def anchored(traces, smollm, tmp_path_factory):
    """Two SFT steps, then a rerun to three that resumes: shared by the SFT and GRPO tests, as CPU steps are slow."""
    import starec_env.trainers.sft as module

    out, resumed_from = tmp_path_factory.mktemp("sft"), []
    before = {k: v.clone() for k, v in smollm.model.state_dict().items()}
    config = SFTRunConfig(steps=2, batch_size=2, save_every=2, learning_rate=5e-4)  # enough to learn the format
    after_two = _weights(sft(traces, out, config))
    with pytest.MonkeyPatch.context() as patch:
        original = module.last_checkpoint
        patch.setattr(module, "last_checkpoint", lambda folder: resumed_from.append(original(folder)) or
                      resumed_from[-1])
        final = sft(traces, out, replace(config, steps=3))
    return {"out": out, "before": before, "after_two": after_two, "resumed_from": resumed_from, "final": final}


def test_an_explicit_precision_overrides_the_hardware_default():
    assert hardware(False)["bf16"] is False and hardware(True)["bf16"] is True
    assert isinstance(hardware()["bf16"], bool)


@pytest.mark.slow
def test_sft_steps_change_weights_and_resume(anchored):
    before, after = anchored["before"], anchored["after_two"]
    assert any(not torch.equal(before[k], after[k]) for k in after if k in before)
    checkpoints = anchored["out"] / "checkpoints"
    losses = [row["loss"] for row in json.loads((checkpoints / "checkpoint-2" / "trainer_state.json").read_text())
              ["log_history"] if "loss" in row]
    assert len(losses) == 2 and np.isfinite(losses).all()
    state = json.loads((checkpoints / "checkpoint-3" / "trainer_state.json").read_text())
    assert anchored["resumed_from"][0].endswith("checkpoint-2") and state["global_step"] == 3


def test_a_checkpoint_cut_short_by_a_kill_is_skipped(tmp_path):
    from starec_env.trainers.sft import last_checkpoint

    for step, state in ((1, "{}"), (2, "{}"), (10, '{"log_his'), (11, None)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if state is not None:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert last_checkpoint(tmp_path).endswith("checkpoint-2") and last_checkpoint(tmp_path / "none") is None


def first_checkpoint(folder: Path) -> bool:
    return (folder / "checkpoints" / "checkpoint-1" / "trainer_state.json").is_file()


def run_killed_and_whole(run: list[str], tmp_path: Path, ready=first_checkpoint, done: str = "final"):
    """Run `run + [folder]` once through ("whole"), and once killed with SIGKILL as soon as `ready(folder)` (by
    default: its first checkpoint is complete), then rerun to the end on the same folder ("killed"); returns both
    folders."""
    import os
    import signal
    import subprocess
    import time

    whole = subprocess.run([*run, str(tmp_path / "whole")], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-2000:]
    folder = tmp_path / "killed"
    killed = subprocess.Popen([*run, str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not ready(folder) and killed.poll() is None:
        time.sleep(0.05)
    assert killed.poll() is None, "the run ended before it could be killed mid-way"
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert ready(folder) and not (folder / done).exists()
    resumed = subprocess.run([*run, str(folder)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    return tmp_path / "whole", folder


@pytest.mark.slow
def test_kill_9_during_sft_then_rerun_gives_the_weights_of_an_uninterrupted_run(traces, smollm, tmp_path):
    """A real SFT process is killed once its first checkpoint is written; the rerun resumes from it and ends with
    the weights of a run that was never interrupted."""
    import sys

    code = ("import sys; from pathlib import Path; from starec_env.trainers.sft import SFTRunConfig, sft; "
            "sft(Path(sys.argv[1]), Path(sys.argv[2]), SFTRunConfig(steps=3, batch_size=1, save_every=1, "
            "learning_rate=5e-4))")
    whole, killed = run_killed_and_whole([sys.executable, "-c", code, str(traces)], tmp_path)
    expected, got = _weights(whole / "final"), _weights(killed / "final")
    assert expected.keys() == got.keys()
    assert all(torch.allclose(expected[k], got[k], rtol=0, atol=1e-6) for k in expected)
    base = _weights(Path(model_path(None)))
    assert any(not torch.equal(expected[k], base[k]) for k in expected if k in base)  # it did train


@pytest.mark.slow
def test_kill_9_during_distillation_then_rerun_writes_the_traces_of_an_uninterrupted_run(tmp_path):
    """A real distillation (co-liked teacher, SmolLM2 reflections) is killed once its first reflection is on disk;
    the rerun keeps the written lines, writes the rest, and ends with the files of a run never interrupted."""
    import sys

    code = ("import sys; from pathlib import Path; from starec_env.agents.prompts import PromptConfig; "
            "from starec_env.protocol import build_protocol; "
            "from starec_env.trainers.distill import DistillConfig, distill; "
            "out = Path(sys.argv[1]); distill(build_protocol('ml-1m'), DistillConfig(users=1, reflection_users=2, "
            "seed=3, ndcg_threshold=0.0, max_attempts=1), out, PromptConfig(history=3, evidence=True), batch=1); "
            "(out / 'done').touch()")

    def first_reflection(folder: Path) -> bool:
        path = folder / "reflections.jsonl"
        return path.is_file() and b"\n" in path.read_bytes()

    whole, killed = run_killed_and_whole([sys.executable, "-c", code], tmp_path, first_reflection, "done")
    for name in ("traces.jsonl", "reflections.jsonl"):
        assert (killed / name).read_text().splitlines() == (whole / name).read_text().splitlines()
    assert len((whole / "reflections.jsonl").read_text().splitlines()) >= 2  # one was written after the restart


@pytest.mark.slow
def test_kill_9_during_grpo_then_rerun_gives_the_same_next_step(anchored, tmp_path):
    """A real GRPO process on env episodes (from the SFT-anchored model, whose short answers get a reward spread)
    is killed once its first checkpoint is written; the rerun resumes from it (RNG states, the sampler's place) and
    its second step, and so its weights, equal those of an uninterrupted run."""
    import sys

    code = ("import sys; from pathlib import Path; from starec_env.agents.prompts import PromptConfig; "
            "from starec_env.protocol import build_protocol; "
            "from starec_env.trainers.grpo import GRPORunConfig, grpo; "
            "grpo(sys.argv[1], build_protocol('ml-1m'), Path(sys.argv[2]), GRPORunConfig(steps=2, "
            "generations=2, prompts_per_step=1, micro_batch=2, max_completion_length=24, users=2, rounds=1, "
            "save_every=1, learning_rate=1e-4), PromptConfig(history=5, think=True))")
    whole, killed = run_killed_and_whole([sys.executable, "-c", code, str(anchored["final"])], tmp_path)
    logs = [pd.read_csv(folder / "grpo.csv") for folder in (whole, killed)]
    assert logs[0]["reward"].iloc[1] == logs[1]["reward"].iloc[-2]  # the second step saw the same rollouts
    assert {"kl", "rewards/episode_reward/mean", "rewards/reflection_reward/mean"} <= set(logs[0].columns)
    assert (logs[0]["reward_std"] > 0).any()  # the group's episodes differ: a learning signal
    expected, got = _weights(whole / "final"), _weights(killed / "final")
    assert all(torch.allclose(expected[k], got[k], rtol=0, atol=1e-6) for k in expected)
    start = _weights(anchored["final"])
    assert any(not torch.equal(expected[k], start[k]) for k in expected if k in start)  # the steps did move it


@pytest.mark.slow
def test_accelerate_launch_runs_grpo_on_two_round_env_episodes_in_two_processes(tmp_path):
    """Scale-out for real: `accelerate launch --cpu --num_processes 2 starec grpo`, each process playing the
    two-round episodes (rank → reflect on a miss → rank) of its share of the step's prompts."""
    import subprocess
    import sys

    tools = Path(sys.executable).parent
    run = [str(tools / "accelerate"), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(tools / "starec"), "grpo", "--out",
           str(tmp_path), "--history", "3", "--no-evidence", "--no-think", "--grpo-steps", "1",
           "--grpo-generations", "2", "--grpo-prompts-per-step", "2", "--grpo-micro-batch", "1",
           "--grpo-max-completion-length", "16", "--grpo-users", "4", "--grpo-rounds", "2"]
    done = subprocess.run(run, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    log = pd.read_csv(tmp_path / "grpo.csv")
    assert log["step"].iloc[0] == 1
    assert {"kl", "rewards/episode_reward/mean", "rewards/reflection_reward/mean"} <= set(log.columns)
    assert (tmp_path / "final" / "config.json").is_file()


def test_the_validation_table_is_written_whole_with_a_bar_per_stage(tmp_path):
    rows = [{"stage": "base", "ndcg@10": 0.27, "users": 40}, {"stage": "sft", "ndcg@10": 0.18, "users": 40}]
    frame = write_stage_bars(rows, tmp_path, "validation", "ndcg@10", chance=0.227)
    assert list(frame["stage"]) == ["base", "sft"]
    assert list(pd.read_csv(tmp_path / "validation.csv").columns) == ["stage", "ndcg@10", "users"]
    assert (tmp_path / "validation.png").read_bytes().startswith(b"\x89PNG")


def test_each_stage_is_compared_user_by_user_with_the_one_it_builds_on(tmp_path):
    base = {"stage": "base", "users": 8, "ranks": [20] * 7 + [1]}  # NDCG@10 0 for seven users, 1 for one
    sft = {"stage": "sft", "users": 8, "ranks": [1] * 8}
    row = {**sft, **_paired(base, sft)}
    assert (row["vs"], row["better"], row["worse"]) == ("base", 7, 0)
    assert row["delta_ndcg@10"] == pytest.approx(7 / 8) and row["delta_se"] == pytest.approx(0.125)
    assert row["p_wilcoxon"] == pytest.approx(2 / 2**7) and row["significant"]  # exact two-sided: 2 of 128 signs
    frame = write_stage_bars([{**base, "ndcg@10": 1 / 8}, {**row, "ndcg@10": 1.0}], tmp_path, "validation",
                             "ndcg@10", chance=0.227)
    table = (tmp_path / "validation.md").read_text().splitlines()
    assert table[2] == "| base | 8 | 12.50 |  |  |  |  |" and len(frame) == 2
    assert table[3] == "| sft | 8 | 100.00 | base | **+87.50 ± 12.50** | 0.0156 | 7 / 0 |"


def test_a_training_run_renders_under_its_run_record(ml1m, tmp_path):
    """`starec train` leaves run.json beside validation.json, so `starec report` renders its stage table (and keeps
    its records) like a bench run's."""
    from starec_env.benchmarks.render import render_runs, write_block

    run = tmp_path / "train-ml-1m"
    _record(run, PipelineConfig(), ml1m, {"distill": {"seconds": 2.0}})
    base = {"stage": "base", "users": 8, "ranks": [20] * 7 + [1], "ndcg@10": 1 / 8}
    sft = {"stage": "sft", "users": 8, "ranks": [1] * 8, "ndcg@10": 1.0}
    (run / "validation.json").write_text(json.dumps({"rows": [base, {**sft, **_paired(base, sft)}]}))
    record = json.loads((run / "run.json").read_text())
    assert record["config"]["dataset"] == "ml-1m" and record["timings"] == [{"stage": "distill", "seconds": 2.0}]
    text = render_runs([run])
    assert "rendered by starec report from train-ml-1m" in text and "| sft | 8 | 100.00 | base |" in text
    write_block(tmp_path / "docs" / "training.md", "ml1m", [run], records=tmp_path / "docs" / "runs")
    assert sorted(p.name for p in (tmp_path / "docs" / "runs" / run.name).iterdir()) == ["run.json",
                                                                                          "validation.json"]


def test_paired_difference_refuses_unpaired_values():
    with pytest.raises(ValueError, match="same users"):
        paired_difference([0.1, 0.2], [0.1, 0.2, 0.3])
    assert paired_difference([0.5, 0.2], [0.5, 0.2])["p_wilcoxon"] == 1.0  # no user changed


@pytest.mark.slow
def test_a_validation_row_keeps_every_users_rank_for_paired_comparisons(ml1m):
    row = _validate(ml1m, "base", model_path(None), reflect_steps=0, config=PipelineConfig(eval_users=2))
    assert row["users"] == 2 and all(1 <= rank <= 20 for rank in row["ranks"])
    assert row["ndcg@10"] == pytest.approx(summarize(np.asarray(row["ranks"]))["ndcg@10"])
