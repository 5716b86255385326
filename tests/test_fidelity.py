"""`starec fidelity`: its measures on hand-made cases (exact values), its held-out cases on the real data, the
grounded user's validation-only fit, determinism, and the LLM user on the real SmolLM2."""

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from starec_env.agents.grounded import GroundedChoice, standardise
from starec_env.benchmarks.render import RENDERED, write_block
from starec_env.benchmarks import fidelity
from starec_env.benchmarks.fidelity import (Answers, FidelityCases, FidelityConfig, fidelity_cases, held_out,
                                            measure, protocol_ratings, quantile_ratings)
from starec_env.metrics import agreement_at_ratio, js_divergence, rating_errors, rating_histogram
from starec_env.protocol import Cases


def test_agreement_at_a_class_ratio_is_the_expected_subsample():
    got = agreement_at_ratio(0.8, 0.2, 3)
    assert got["accuracy"] == pytest.approx(0.8)  # (0.8 + 3 · 0.8) / 4
    assert got["precision"] == pytest.approx(0.8 / 1.4)
    assert got["recall"] == pytest.approx(0.8)
    assert got["f1"] == pytest.approx(2 * (0.8 / 1.4) * 0.8 / (0.8 / 1.4 + 0.8))
    assert agreement_at_ratio(0.0, 0.0, 1) == {"accuracy": 0.5, "precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_rating_errors_and_histogram_divergence():
    got = rating_errors([1, 2, 3], [1, 3, 5])
    assert got["mae"] == pytest.approx(1.0) and got["rmse"] == pytest.approx(np.sqrt(5 / 3))
    assert got["spearman"] == pytest.approx(1.0)
    assert np.isnan(rating_errors([3, 3], [1, 5])["spearman"])  # a constant answer has no rank correlation
    assert rating_histogram([1, 1, 5, 4]).tolist() == [0.5, 0, 0, 0.25, 0.25]
    assert js_divergence([1, 0, 0, 0, 0], [1, 0, 0, 0, 0]) == pytest.approx(0.0)
    assert js_divergence([1, 0, 0, 0, 0], [0, 0, 0, 0, 1]) == pytest.approx(1.0)


def test_quantile_ratings_follow_the_histogram_in_score_order():
    assert quantile_ratings(np.array([0.4, 0.1, 0.3, 0.2]), np.array([0.25, 0.25, 0.25, 0.25, 0])).tolist() \
        == [4, 1, 3, 2]
    assert set(quantile_ratings(np.arange(10.0), np.array([0, 0, 0, 0, 1.0]))) == {5}


def test_held_out_keeps_ratings_from_the_validation_time_that_the_history_lacks():
    frame = pd.DataFrame({"item": [1, 2, 3, 4, 5, 5, 6], "rating": [5, 4, 2, 5, 1, 3, 3],
                          "timestamp": [10, 20, 30, 30, 40, 50, 5]})
    got = held_out(frame, valid_item=3, history=np.array([1, 2, 4]))
    assert got["item"].tolist() == [3, 5] and got["rating"].tolist() == [2, 1]  # 6 is older, 5 counted once


def _tiny_cases():
    ranking = Cases(np.array([0, 1]), [np.array([7]), np.array([8])], np.array([[1, 2, 3], [4, 5, 6]]),
                    np.array([2, 0]))
    return FidelityCases(ranking, np.array([[3, 1], [5, 4]]), np.array([0, 1]),
                         [np.array([3, 9, 1]), np.array([4, 2])], [np.array([5, 1, 0]), np.array([4, 0])])


def test_a_user_that_answers_like_the_real_one_scores_perfectly():
    cases = _tiny_cases()
    perfect = Answers(np.array([[0, 0, 1.0], [1.0, 0, 0]]), np.array([[1.0, 0], [0, 1.0]]),
                      [np.array([5, 1, 1]), np.array([4, 2])])
    got = measure(cases, perfect, resamples=20)
    assert got["pick"] == 1 and got["pick_unlisted"] == 1 and got["ndcg@1"] == 1 and got["mae"] == 0
    assert got["rmse"] == 0
    assert got["accuracy_unrated_1:1"] == 1 and got["accuracy_disliked_1:9"] == 1 and got["f1_unrated_1:3"] == 1
    assert (got["liked"], got["disliked"], got["unrated"], got["rated"]) == (2, 1, 2, 3)
    wrong = Answers(-perfect.ranking, -perfect.shown, [np.array([1, 5, 5]), np.array([1, 5])])
    got = measure(cases, wrong, resamples=20)
    assert got["pick"] == 0 and got["pick_unlisted"] == 0 and got["ndcg@1"] == 0 and got["accuracy_unrated_1:1"] == 0
    assert got["mae"] == pytest.approx((4 + 4 + 3) / 3)


def test_grounded_fit_recovers_which_signal_the_choices_follow():
    rng = np.random.default_rng(0)
    llm, prior = rng.normal(size=(400, 5)), rng.normal(size=(400, 5))
    truth = GroundedChoice(llm_weight=0.0, prior_weight=2.0)
    chosen = truth.sample(llm, prior, np.random.default_rng(1))
    fitted = GroundedChoice.fit(llm, prior, chosen)
    assert abs(fitted.llm_weight) < 0.3 and fitted.prior_weight == pytest.approx(2.0, abs=0.4)
    again = truth.sample(llm, prior, np.random.default_rng(1))
    assert (again == chosen).all()  # seeded sampling: the same seed, the same episode
    assert np.allclose(standardise([[1.0, 1.0], [0.0, 2.0]]), [[0, 0], [-1, 1]])


def test_grounded_weights_come_from_validation_cases_only(ml1m, monkeypatch):
    """Changing every test case leaves the fitted weights unchanged: the fit reads validation cases only."""
    monkeypatch.setattr(fidelity.fast, "choice_scores",
                        lambda llm, chats, shown: [[-float(len(title)) for title in titles] for titles in shown])
    memory = SimpleNamespace(history=[], profile="", summary="")
    population = SimpleNamespace(llm=None, loop=SimpleNamespace(recent=lambda history: []),
                                 start=lambda users, histories: [memory] * len(users))
    prior = SimpleNamespace(score=lambda cases: cases.candidates.astype(float))
    users = ml1m.test.subset(slice(0, 30))
    cases = SimpleNamespace(ranking=users)
    first = fidelity.fit_grounded(population, ml1m, prior, cases)
    shuffled = Cases(users.users, users.histories, users.candidates[:, ::-1].copy(), users.target_index)
    moved = replace(ml1m, test=shuffled)
    assert fidelity.fit_grounded(population, moved, prior, SimpleNamespace(ranking=shuffled)) == first


def test_fidelity_cases_on_ml1m_hold_out_by_time(ml1m):
    ratings = protocol_ratings(ml1m)
    cases = fidelity_cases(ml1m, ratings, shown=5, unrated=3).subset(100)
    by_user = dict(tuple(ratings.groupby("user")))
    for b, user in enumerate(cases.ranking.users):
        history, frame = set(cases.ranking.histories[b].tolist()), by_user[int(user)]
        assert cases.shown[b][cases.shown_target[b]] == cases.ranking.targets[b]
        assert set(cases.shown[b]) <= set(cases.ranking.candidates[b])
        valid_item = ml1m.valid.targets[ml1m.valid.users == user][0]
        cut = frame.loc[frame["item"] == valid_item, "timestamp"].min()
        for item, real in zip(cases.items[b], cases.real[b]):
            assert int(item) not in history
            rated = frame[frame["item"] == item]
            if real:  # a held-out rating: given at or after the validation interaction
                assert rated["timestamp"].min() >= cut and real == rated["rating"].iloc[0]
            else:  # never rated by this user
                assert rated.empty
    assert sum(((r >= 1) & (r <= 2)).sum() for r in cases.real) > 20  # real dislikes to measure against


def test_cheap_rows_repeat_under_a_seed(tmp_path, data_dir):
    config = FidelityConfig(rows=("random", "pop", "collaborative"), n_users=30, cheap_users=60, resamples=20,
                            out=str(tmp_path))
    first, out = fidelity.run_fidelity(config)
    second, _ = fidelity.run_fidelity(config)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in first]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in second]
    assert {row["row"] for row in first} == {"chance", "random", "pop", "collaborative"}
    assert (out / "table.md").read_text().count("| collaborative |") == 3 * 2  # 3 tables × (30 and 60 users)
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["n_users"] == 30 and record["protocols"][0]["sources_sha256"]
    assert (out / "ratings.png").stat().st_size > 0
    page = tmp_path / "page.md"
    page.write_text("# Intro\n\n<!-- starec report: begin fidelity: x -->\nold numbers\n"
                    "<!-- starec report: end fidelity -->\n\nOutro\n")
    for _ in range(2):  # rendering again replaces the block, nothing else
        write_block(page, "fidelity", [out])
    text = page.read_text()
    assert text.startswith("# Intro") and text.endswith("Outro\n") and "old numbers" not in text
    assert text.count(RENDERED) == 1 and "starec " in text and "| collaborative | 60 |" in text


@pytest.mark.slow
def test_llm_users_answer_with_the_real_smollm(tmp_path, smollm, monkeypatch):
    monkeypatch.setattr(fidelity, "load_llm", lambda model, **options: smollm)
    config = FidelityConfig(rows=("llm", "llm-slow"), n_users=2, cheap_users=2, resamples=10, fit=True,
                            out=str(tmp_path))
    rows, out = fidelity.run_fidelity(config)
    by_row = {row["row"]: row for row in rows}
    assert set(by_row) == {"chance", "llm", "llm-slow", "grounded"}
    for name in ("llm", "llm-slow"):
        assert 0 <= by_row[name]["pick"] <= 1 and 0 <= by_row[name]["mae"] <= 4
        assert by_row[name]["tokens_per_user"] > 100
    weights = json.loads((out / "grounded.json").read_text())
    assert weights["fitted_on"] == "validation" and np.isfinite(weights["llm_weight"])


def test_grounding_draws_each_pick_with_its_own_seed():
    from starec_env.agents.grounded import Grounding

    prior = lambda cases: np.where(cases.candidates == 30, 9.0, 0.0)
    grounding = Grounding(GroundedChoice(llm_weight=0.0, prior_weight=20.0), prior)
    picks = grounding.pick([[0.0, 0.0, 0.0]] * 2, [0, 1], [[1, 2], [3]], [[10, 30, 20], [30, 10, 20]], [5, 6])
    assert picks == [1, 0]  # the prior's item wherever it is shown
    uniform = Grounding(GroundedChoice(llm_weight=0.0, prior_weight=0.0), prior)
    draws = [uniform.pick([[0.0] * 5], [0], [[1]], [[1, 2, 3, 4, 5]], [seed])[0] for seed in range(40)]
    assert draws == [uniform.pick([[0.0] * 5], [0], [[1]], [[1, 2, 3, 4, 5]], [seed])[0] for seed in range(40)]
    assert len(set(draws)) == 5  # no prior, no LLM signal: every shown item is drawn


@pytest.mark.slow
def test_a_killed_llm_row_resumes_from_its_saved_chunk(tmp_path, smollm, monkeypatch):
    monkeypatch.setattr(fidelity, "load_llm", lambda model, **options: smollm)
    killed = FidelityConfig(rows=("llm-slow",), n_users=2, cheap_users=2, resamples=10, chunk=1,
                            out=str(tmp_path / "killed"))
    answer, calls = fidelity.LLMUser._answer, []

    def killed_after_one_chunk(self, cases):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt  # what a kill leaves: the first chunk saved, nothing after it
        return answer(self, cases)

    with monkeypatch.context() as patch:
        patch.setattr(fidelity.LLMUser, "_answer", killed_after_one_chunk)
        with pytest.raises(KeyboardInterrupt):
            fidelity.run_fidelity(killed)
    (folder,) = (tmp_path / "killed").iterdir()
    assert len(json.loads((folder / "partial" / "llm-slow.json").read_text())["users"]) == 1
    with pytest.raises(ValueError, match="n_users"):
        fidelity.run_fidelity(replace(killed, n_users=3), resume=folder)
    saved = json.loads((folder / "partial" / "llm-slow.json").read_text())
    resumed, _ = fidelity.run_fidelity(killed, resume=folder)
    finished = json.loads((folder / "answers" / "llm-slow.json").read_text())
    assert finished["users"][:1] == saved["users"] and finished["ranking"][:1] == saved["ranking"]  # kept, not redone
    assert len(finished["users"]) == 2 and [r["row"] for r in resumed] == ["chance", "llm-slow"]
    assert not (folder / "partial" / "llm-slow.json").exists()

