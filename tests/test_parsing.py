import numpy as np
import pytest

from starec_env.agents.parsing import candidate_label, match_title, parse_ranking

TITLES = ["The Matrix (1999; Action, Sci-Fi)", "Toy Story (1995; Animation)", "Fargo (1996; Crime)",
          "Heat (1995; Action)"]


@pytest.mark.parametrize("text, order, status, method", [
    ("[3, 1, 2, 4]", [2, 0, 1, 3], "ok", "index"),
    ("<think>user likes crime</think>\n[3, 1]", [2, 0, 1, 3], "partial", "index"),
    ("1. [3] Fargo\n2. [1] The Matrix\n3. [4] Heat\n4. [2] Toy Story", [2, 0, 3, 1], "ok", "index"),
    ("1. Fargo\n2. the matrix\n3. Heat (1995)", [2, 0, 3, 1], "partial", "title"),
    ("1. Farg0\n2. Toy Stroy", [2, 1, 0, 3], "partial", "title"),
    ("I would watch Heat first, then Toy Story.", [3, 1, 0, 2], "partial", "title"),
    ("[3, 3, 1, 1, 9]", [2, 0, 1, 3], "partial", "index"),
    ("As an AI I cannot recommend movies.", [0, 1, 2, 3], "failed", "none"),
    ("", [0, 1, 2, 3], "failed", "none"),
])
def test_parser_cases(text, order, status, method):
    parsed = parse_ranking(text, TITLES)
    assert (parsed.order, parsed.status, parsed.method) == (order, status, method)


def test_letter_labels():
    parsed = parse_ranking("[C]\n[A]\n[D]\n[B]", TITLES, style="letter")
    assert parsed.order == [2, 0, 3, 1] and parsed.method == "letter"
    assert parse_ranking("C. Fargo\nA. The Matrix", TITLES, style="letter").order[:2] == [2, 0]
    assert candidate_label(2, "letter") == "[C]" and candidate_label(2) == "[3]"


def test_scores_follow_the_order():
    scores = parse_ranking("[2, 4]", TITLES).scores()
    assert np.argsort(-scores).tolist() == [1, 3, 0, 2]


def test_match_title_refuses_far_strings():
    assert match_title("Jurassic Park", TITLES) is None
    assert match_title("Matrix", TITLES) == 0


def test_a_list_cut_off_by_the_length_limit_still_parses():
    parsed = parse_ranking("<think>ok</think>\n[3, 1, 2,", ["a", "b", "c", "d"])
    assert parsed.order == [2, 0, 1, 3] and parsed.status == "partial"
