"""The cognitive user agent: fast choice, slow reflection, memories, and the population graph."""

import json

import networkx as nx
import pytest

from starec_env.agents.fast import choose, parse_choice
from starec_env.agents.llm import LLM, Completion
from starec_env.agents.loop import Decision, FeedbackLoop, Round
from starec_env.agents.memory import Memory, load_memories, save_memories
from starec_env.agents.slow import MAX_SUMMARY_CHARS, continued, read_reflection
from starec_env.agents.prompts import PromptConfig
from starec_env.agents.society import AgentConfig, FeedbackRequest, Population, similarity_graph

TITLES = ["Toy Story (1995; Animation)", "Heat (1995; Action, Crime)", "Casino (1995; Drama)"]


class ScriptedLLM(LLM):
    """Answers every chat with a fixed text, likes option `favourite` best when scoring, and records the chats (for
    tests of the code around the LLM)."""

    spec = "scripted"

    def __init__(self, text, favourite=3):
        self.text, self.chats, self.favourite = text, [], favourite

    def _generate(self, chats, sampling=None):
        self.chats.extend(chats)
        return [[Completion(self.text, 10, 3, "stop")] for _ in chats]

    def score_continuations(self, chats, options):
        return [[-abs(i - self.favourite) for i in range(len(row))] for row in options]


@pytest.mark.parametrize("text, position", [
    ("[2] like - I enjoy crime films", 1), ("3] dislike - too long", 2), ("Casino, because it is long", 2),
    ("[9] like", None), ("no idea", None), ("", None)])
def test_parse_choice(text, position):
    assert parse_choice(text, TITLES)[0] == position


def test_unparsed_generated_choice_falls_back_and_is_counted():
    chat = [{"role": "user", "content": "pick"}]
    (choice,) = choose(ScriptedLLM("I would rather read a book"), [chat], [TITLES], mode="generate")
    assert (choice.position, choice.parsed) == (0, False)
    (choice,) = choose(ScriptedLLM("2] dislike - not my genre", favourite=1), [chat], [TITLES], mode="generate")
    assert (choice.position, choice.parsed, choice.rating, choice.liked) == (1, True, 2, False)


def test_each_phase_of_a_step_is_timed_and_counted_apart():
    """`LLM.profile` splits a step's calls by the phase that made them (what `starec speed env` reports)."""
    llm = ScriptedLLM("I love it")
    chat = [{"role": "user", "content": "pick"}]
    choose(llm, [chat, chat], [TITLES, TITLES], rationale=True)
    assert set(llm.profile) == {"choice", "rating", "rationale"}
    assert llm.profile["rationale"]["tokens"] == 2 * (10 + 3) and llm.profile["choice"]["calls"] == 1
    with pytest.raises(KeyError), llm.phase("failed"):  # a call that raises is still counted
        raise KeyError
    assert llm.profile["failed"]["calls"] == 1 and llm.profile["failed"]["seconds"] >= 0


@pytest.mark.parametrize("favourite, liked", [(0, False), (2, False), (3, True), (4, True)])
def test_the_rating_is_the_likeliest_digit_and_decides_the_like(favourite, liked):
    """Like and rating come from the model's likelihoods, never from words in a rationale; none is written unasked."""
    llm = ScriptedLLM("I love it, it is wonderful", favourite=favourite)
    chat = [{"role": "user", "content": "pick"}]
    (choice,) = choose(llm, [chat], [TITLES])
    assert (choice.rating, choice.liked, choice.rationale, llm.chats) == (favourite + 1, liked, "", [])
    (choice,) = choose(llm, [chat], [TITLES], rationale=True)
    assert choice.rationale == "because I love it, it is wonderful" and choice.rating == favourite + 1


@pytest.mark.parametrize("text, status", [
    ("it is tense. Updated preferences: Likes crime thrillers.", "ok"),
    ("it is a tense crime film. They like heists.", "unstructured"), ("  ", "failed")])
def test_read_reflection(text, status):
    reflection = read_reflection(text, "Likes comedies. Dislikes horror.", "the user chose Heat because")
    assert reflection.status == status
    assert reflection.summary == {"ok": "Likes crime thrillers.",
                                  "unstructured": "Likes comedies. Recently the user chose Heat because it is a "
                                                  "tense crime film.",
                                  "failed": "Likes comedies. Dislikes horror."}[status]
    assert len(read_reflection("word " * 500, "", "").summary) <= MAX_SUMMARY_CHARS + 1


@pytest.mark.parametrize("text, joined", [("'s taste is dark.", "This user's taste is dark."),
                                          (" likes noir ", "This user likes noir")])
def test_a_continuation_joins_its_prefill(text, joined):
    assert continued("This user", text) == joined


def test_memories_round_trip_and_reject_other_files(tmp_path):
    memories = [Memory(3, "female; 25-34", [1, 2], "Likes drama.", [{"before": "", "after": "Likes drama."}])]
    path = save_memories(memories, tmp_path / "m.json", dataset="ml-1m")
    loaded, metadata = load_memories(path)
    assert loaded == memories and metadata == {"dataset": "ml-1m"}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not a memory file .*line 1"):
        load_memories(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="expected a STARec memory file"):
        load_memories(tmp_path / "other.json")


def test_similarity_graph_links_similar_users_only_through_training_items(ml1m):
    graph = similarity_graph(*ml1m.training_sequences(), ml1m.n_items, degree=5)
    assert graph.number_of_nodes() == ml1m.n_users and nx.number_of_selfloops(graph) == 0
    user = int(ml1m.test.users[0])
    neighbour, edge = max(graph[user].items(), key=lambda e: e[1]["weight"])
    shared = set(ml1m.sequences[user][:-2]) & set(ml1m.sequences[neighbour][:-2])
    assert 0 < edge["weight"] <= 1 and shared


def test_neighbours_reach_the_prompt(ml1m):
    llm = ScriptedLLM("[1] like - fine")
    population = Population(ml1m, llm, AgentConfig(choice="generate", neighbours=3, reflect="never"))
    user = int(ml1m.test.users[0])
    closest = sorted(population.graph[user].items(), key=lambda edge: -edge[1]["weight"])[0][0]
    population.start([user, closest], [ml1m.sequences[u][:-1] for u in (user, closest)])
    request = FeedbackRequest(user, [int(i) for i in ml1m.test.candidates[0]], int(ml1m.test.targets[0]), seed=0)
    population.respond([request])
    prompt = llm.chats[-1][1]["content"]
    assert f"Similar users recently chose: {ml1m.item_text(ml1m.sequences[closest][-2])}" in prompt
    alone = Population(ml1m, ScriptedLLM("[1] like - fine"), AgentConfig(choice="generate", reflect="never"))
    alone.start([user], [ml1m.sequences[user][:-1]])
    alone.respond([request])
    assert "Similar users" not in alone.llm.chats[-1][1]["content"]


@pytest.fixture(scope="module")
def population(ml1m, smollm):
    return Population(ml1m, smollm, AgentConfig(prompt=PromptConfig(history=10, summary_tokens=24, choice_tokens=12,
                                                                  reflection_tokens=24)))


@pytest.mark.slow
def test_reflection_after_a_mismatch_rewrites_the_summary(population, ml1m, cds, tmp_path):
    user, target = int(ml1m.test.users[2]), int(ml1m.test.targets[2])
    (memory,) = population.start([user], [ml1m.test.histories[2]])
    before = memory.summary
    assert before.startswith("This user") and len(before) > 20
    shown = [int(i) for i in ml1m.test.candidates[2] if i != target]  # the real choice is not on offer: a mismatch
    (feedback,) = population.respond([FeedbackRequest(user, shown, target, seed=0)])
    assert not feedback.matched and feedback.item in shown and feedback.reflection is not None
    after = population.memories[user]
    assert after.summary != before and after.reflections[-1]["before"] == before
    assert after.history[-1] == target and feedback.memory["summary"] == after.summary
    assert population.counts["reflections"] == 1 and population.counts["tokens"] > 0

    reloaded = Population(ml1m, population.llm, population.config).load(population.save(tmp_path / "pop.json"))
    assert reloaded.memories[user] == after and reloaded.first_summaries == population.first_summaries
    with pytest.raises(ValueError, match="memories of dataset 'ml-1m'"):
        Population(cds, population.llm).load(tmp_path / "pop.json")


@pytest.mark.parametrize("reflect, reflected", [("mismatch", [False, True]), ("always", [True, True]),
                                                ("never", [False, False])])
def test_the_loop_reflects_on_misses_and_logs_each_reflection(ml1m, reflect, reflected):
    """Two rounds, a hit and a miss: slow thinking runs where asked and rewrites only those memories."""
    llm = ScriptedLLM("it is a thriller.\nUpdated preferences: This user now likes thrillers above all.")
    loop = FeedbackLoop(llm, ml1m, PromptConfig(history=3))
    memories = [Memory(u, ml1m.profiles[u], list(ml1m.test.histories[i]), summary="Likes comedies.")
                for i, u in enumerate(ml1m.test.users[:2])]
    rounds = [Round(m.history, ml1m.test.candidates[i], int(ml1m.test.targets[i])) for i, m in enumerate(memories)]
    predicted = [rounds[0].target, int(ml1m.test.candidates[1][ml1m.test.target_index[1] - 1])]
    steps = loop.step(memories, rounds, lambda ms, rs: [Decision(p, f"chose {p}") for p in predicted], reflect)
    assert [reflection is not None for _, reflection in steps] == reflected
    for memory, round_, pick, did in zip(memories, rounds, predicted, reflected):
        assert memory.summary == ("This user now likes thrillers above all." if did else "Likes comedies.")
        assert memory.reflections == ([{"step": len(round_.history), "target": round_.target, "predicted": pick,
                                        "before": "Likes comedies.",
                                        "reflection": f"the user chose {ml1m.item_text(round_.target)} because it "
                                                      "is a thriller.",
                                        "after": memory.summary, "status": "ok"}] if did else [])
    if any(reflected):
        prompt = llm.chats[-1][1]["content"]  # the reflection prompt shows the last 3 items and the prediction
        assert f"Target item: {ml1m.item_text(rounds[-1].target)}" in prompt and f"chose {predicted[-1]}" in prompt
        assert prompt.count("\n- ") == 3


@pytest.mark.slow
def test_the_real_user_picks_and_rates_without_decoding_a_token(ml1m, smollm):
    population = Population(ml1m, smollm, AgentConfig(reflect="never", prompt=PromptConfig(history=5,
                                                                                             summary_tokens=8)))
    users = [int(u) for u in ml1m.test.users[:2]]
    population.start(users, [ml1m.test.histories[i] for i in range(2)])
    written = smollm.tokens["completion"]
    requests = [FeedbackRequest(user, [int(i) for i in ml1m.test.candidates[row][:5]], int(ml1m.test.targets[row]),
                                seed=row) for row, user in enumerate(users)]
    feedback = population.respond(requests)
    assert smollm.tokens["completion"] == written  # pick and rating by likelihood: nothing was generated
    assert all(f.rating in range(1, 6) and f.liked == (f.rating >= 4) and f.rationale == "" for f in feedback)
