import numpy as np
import pytest
import torch

from starec_env.benchmarks.replay import evaluate
from starec_env.policies import tools
from starec_env.policies.registry import check_options, make_policy
from starec_env.policies.sequence import left_aligned

QUICK = {"bpr": {"epochs": 10, "eval_every": 5}, "gru4rec": {"epochs": 2, "eval_every": 1},
         "sasrec": {"epochs": 2, "eval_every": 1}}


@pytest.fixture(scope="module")
def sample_view(ml1m):
    return ml1m.train("sample")


@pytest.mark.parametrize("name", ["pop", "co-liked", "bpr", "gru4rec", "sasrec"])
def test_policy_trains_and_beats_random(name, ml1m, sample_view):
    random = evaluate(make_policy("random"), ml1m).metrics["ndcg@10"]
    policy = make_policy(name, seed=0, progress=False, **QUICK.get(name, {})).fit(sample_view)
    result = evaluate(policy, ml1m)
    assert result.metrics["ndcg@10"] > random + 0.1, (name, result.metrics, random)


def test_sasrec_trains_with_one_sampled_negative_too(ml1m, sample_view):
    random = evaluate(make_policy("random"), ml1m).metrics["ndcg@10"]
    policy = make_policy("sasrec", seed=0, progress=False, objective="bce", epochs=4, eval_every=2).fit(sample_view)
    assert evaluate(policy, ml1m).metrics["ndcg@10"] > random + 0.1
    with pytest.raises(ValueError, match="unknown training objective 'bpr'"):
        make_policy("sasrec", objective="bpr")


def test_options_reach_only_the_policies_that_take_them():
    bpr = make_policy("bpr", epochs=3, batch_users=4, model="hf:elsewhere")  # LLM options in a mixed run
    assert bpr.config.epochs == 3
    check_options(["pop", "bpr", "agentcf"], {"epochs": 3, "batch_users": 4, "model": "hf:elsewhere"})
    with pytest.raises(ValueError, match=r"\['reflect_step'\] are taken by none"):
        check_options(["bpr", "starec"], {"reflect_step": 0})


def test_same_seed_same_results(ml1m, sample_view):
    first = make_policy("sasrec", seed=3, progress=False, epochs=1).fit(sample_view).score(ml1m.test)
    second = make_policy("sasrec", seed=3, progress=False, epochs=1).fit(sample_view).score(ml1m.test)
    other = make_policy("sasrec", seed=4, progress=False, epochs=1).fit(sample_view).score(ml1m.test)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("name", ["gru4rec", "sasrec"])
def test_scoring_shortcut_equals_the_full_encoder(name, ml1m, sample_view):
    """Scoring reads one state per history (`encode_last`, in length buckets); it must equal the training-time
    `encode` there."""
    policy = make_policy(name, seed=0)
    policy.model = policy.build(sample_view).eval()
    ids, lengths = left_aligned(ml1m.test.histories, policy.max_len)
    with torch.inference_mode():
        states = policy.model.encode(torch.from_numpy(ids))[np.arange(len(ids)), np.maximum(lengths, 1) - 1]
        expected = torch.einsum("bd,bcd->bc", states, policy.model.items(torch.from_numpy(ml1m.test.candidates + 1)))
    assert np.allclose(policy.score(ml1m.test), expected.numpy(), atol=1e-4)


def test_checkpoint_round_trip(ml1m, sample_view, tmp_path):
    policy = make_policy("bpr", seed=0, progress=False, epochs=2, eval_every=1).fit(sample_view)
    path = policy.save(tmp_path / "bpr.safetensors")
    restored = make_policy("bpr", seed=0).load(path, sample_view)
    assert np.allclose(policy.score(ml1m.test), restored.score(ml1m.test))


@pytest.mark.slow
def test_early_stopping_keeps_the_best_validation_state(ml1m, sample_view):
    policy = make_policy("bpr", seed=0, progress=False, epochs=40, eval_every=2, patience=2).fit(sample_view)
    best = max(entry["valid_ndcg@10"] for entry in policy.history)
    assert policy.validate(ml1m.valid) == pytest.approx(best)


def test_a_time_budget_stops_training_at_the_first_evaluation_past_it(sample_view):
    policy = make_policy("bpr", seed=0, progress=False, epochs=40, eval_every=2, max_seconds=0).fit(sample_view)
    assert [entry["epoch"] for entry in policy.history] == [2]


def test_bpr_refuses_users_it_never_saw(ml1m):
    policy = make_policy("bpr", progress=False, epochs=1, eval_every=1).fit(ml1m.train("sample"))
    unseen = np.setdiff1d(np.arange(ml1m.n_users), ml1m.test.users)[:3]
    cases = ml1m.test.subset(slice(0, 3))
    cases.users = unseen
    with pytest.raises(ValueError, match="not in the training view"):
        policy.score(cases)


@pytest.mark.parametrize("bad, message", [
    (lambda c: np.zeros((len(c), 19)), "shape"),
    (lambda c: np.full(c.candidates.shape, np.nan), "finite"),
])
def test_invalid_policy_output_is_a_clear_error(bad, message, ml1m):
    class Broken:
        name = "broken"

        def score(self, cases):
            return bad(cases)

    with pytest.raises(ValueError, match=f"policy 'broken' returned invalid scores: .*{message}"):
        evaluate(Broken(), ml1m)


def test_fusion_weights_are_chosen_on_the_cases_each_line_alone_among_them():
    from starec_env.policies.evidence import Evidence
    from starec_env.policies.fusion import choose_fusion

    # the tool always names the target (position 2) first; the co-liked line names it last of two
    evidence = [Evidence([0, 5, 3, 0], tool=[2, 1]) for _ in range(4)]
    fusion, tried = choose_fusion(evidence, np.full(4, 2), 4)
    assert (fusion.co_liked, fusion.popular, fusion.tool) == (0.0, 0.0, 1.0) and fusion.describe() == "tool 1"
    assert {(row["co_liked"], row["tool"]) for row in tried} >= {(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)}
    fusion, _ = choose_fusion(evidence, np.full(4, 1), 4)  # the target at position 1: co-liked alone is best
    assert (fusion.co_liked, fusion.tool) == (1.0, 0.0)
    with pytest.raises(ValueError, match="nothing to fuse"):
        choose_fusion([Evidence([0, 0])], np.zeros(1, dtype=int), 2)


def test_a_fused_rows_tool_is_fitted_with_the_rows_threads(ml1m, monkeypatch):
    made = []

    def recording(spec, seed=0, **options):  # a cheap stand-in for the SASRec fit, recording what it was given
        made.append((spec, options))
        return make_policy("pop", seed)

    monkeypatch.setattr(tools, "make_policy", recording)
    monkeypatch.setattr(tools, "_FITTED", {})
    make_policy("fused", tool="sasrec", threads=1).fit(ml1m.train("full"))
    assert ("sasrec", {"threads": 1}) in made and ("sasrec", {"threads": 2}) not in made


def test_the_fused_row_ranks_at_least_as_well_as_each_of_its_lines_on_validation(ml1m):
    policy = make_policy("fused", tool="pop").fit(ml1m.train("full"))
    assert policy.name == "fused(co-liked+pop)"
    tried = policy.chosen["validation"]
    alone = {(row["co_liked"] > 0, row["tool"] > 0): row["ndcg@10"] for row in tried
             if (row["co_liked"] > 0) != (row["tool"] > 0)}
    assert set(alone) == {(True, False), (False, True)}
    best = max(tried, key=lambda row: row["ndcg@10"])
    assert {name: best[name] for name in ("co_liked", "popular", "tool")} == policy.chosen["weights"]
    assert best["ndcg@10"] >= max(alone.values())
    cases = ml1m.test.subset(slice(0, 50))
    scores = policy.score(cases)
    assert scores.shape == (50, 20) and evaluate(policy, ml1m).metrics["ndcg@10"] > 0.3
