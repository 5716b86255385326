import numpy as np
import pytest

from starec_env.datasets import load_dataset
from starec_env.protocol import build_protocol, default_config


def _stage(protocol, name):
    return next(row for row in protocol.stats if row["stage"] == name)


def test_ml1m_counts_match_reference_implementations(ml1m):
    """ANCHORS.md: 279,124 → 274,545 (2,964 users, 2,363 items) → 99,522 → 93,594 in _full."""
    assert _stage(ml1m, "positive")["interactions"] == 279_124
    assert (_stage(ml1m, "filtered")["interactions"], ml1m.n_users, ml1m.n_items) == (274_545, 2_964, 2_363)
    assert _stage(ml1m, "truncated")["interactions"] == 99_522
    assert ml1m.train("full").n_interactions == 93_594
    assert len(ml1m.train("sample").users) == 1_000


def test_cds_counts_match_reference_implementations(cds):
    """ANCHORS.md: 23,669 positives → 22,506 after users >= 5 (2,655 users, 5,470 items) → 17,145 in _full."""
    assert _stage(cds, "positive")["interactions"] == 23_669
    assert (_stage(cds, "filtered")["interactions"], _stage(cds, "filtered")["users"]) == (22_506, 2_655)
    assert cds.train("full").n_interactions == 17_145
    assert cds.record()["deviation_from_paper"]


def test_cold_start_test_cases_are_those_whose_target_full_training_never_shows(cds):
    cold = cds.cold_test()
    seen = set(np.concatenate(cds.train("full").sequences).tolist())
    targets = cds.test.targets
    assert all(targets[i] not in seen for i in cold)
    assert all(targets[i] in seen for i in sorted(set(range(len(targets))) - set(cold.tolist())))
    assert 0.05 < len(cold) / len(targets) < 0.2  # about one CDs test target in ten
    assert cds.record()["cold_test_cases"] == cold.tolist()


def test_candidates_are_target_plus_unrated_negatives(ml1m, data_dir):
    cases = ml1m.test
    assert cases.candidates.shape == (1_000, 20)
    assert all(len(set(row)) == 20 for row in cases.candidates)
    assert (cases.targets == np.array([ml1m.sequences[u][-1] for u in cases.users])).all()
    data = load_dataset("ml-1m")
    raw = data.interactions
    raw_item = dict(zip(ml1m.items["raw_id"], ml1m.items["item_id"]))
    raw_user = dict(zip(ml1m.users["raw_id"], ml1m.users["user_id"]))
    rated = raw.assign(user=data.users["raw_id"].to_numpy()[raw["user_id"]],
                       item=data.items["raw_id"].to_numpy()[raw["item_id"]])
    rated = rated[rated["item"].isin(raw_item) & rated["user"].isin(raw_user)]
    seen = set(zip(rated["user"].map(raw_user), rated["item"].map(raw_item)))
    for user, row, target in zip(cases.users[:200], cases.candidates[:200], cases.target_index[:200]):
        negatives = np.delete(row, target)
        assert not any((user, item) in seen for item in negatives)


def test_target_position_is_shuffled(ml1m):
    counts = np.bincount(ml1m.test.target_index, minlength=20)
    assert counts.min() > 20 and counts.max() < 90  # ~50 each for 1,000 uniform draws


@pytest.mark.slow
def test_seeds_fix_the_cases(ml1m):
    again = build_protocol("ml-1m", use_cache=False)
    other = build_protocol("ml-1m", default_config("ml-1m", seed=1))
    assert (again.test.candidates == ml1m.test.candidates).all()
    assert not (other.test.candidates == ml1m.test.candidates).all()


def test_no_leakage_into_training(ml1m):
    train = ml1m.train("full")
    by_user = dict(zip(train.users, train.sequences))
    for cases in (ml1m.test, ml1m.valid):
        for user, target in zip(cases.users, cases.targets):
            assert target not in by_user[user]
    for user, history in zip(ml1m.test.users[:50], ml1m.test.histories[:50]):
        assert history[-1] == ml1m.sequences[user][-2]  # the test history ends with the validation item


def test_candidate_file_round_trip(ml1m, tmp_path):
    path = ml1m.save_candidates(tmp_path / "c.tsv")
    loaded = ml1m.with_candidates(path)
    assert (loaded.test.candidates == ml1m.test.candidates).all()
    assert (loaded.valid.target_index == ml1m.valid.target_index).all()


def test_candidate_file_from_other_protocol_is_rejected(ml1m, tmp_path):
    path = ml1m.save_candidates(tmp_path / "c.tsv")
    lines = path.read_text().splitlines()
    split, user, target, candidates = lines[3].split("\t")
    wrong = candidates.split()[(candidates.split().index(target) + 1) % 20]
    lines[3] = "\t".join([split, user, wrong, candidates])
    path.write_text("\n".join(lines))
    with pytest.raises(ValueError, match="line 4: target .* held-out test item"):
        ml1m.with_candidates(path)


def test_history_matrix_is_right_aligned(ml1m):
    matrix = ml1m.test.history_matrix(50)
    first = ml1m.test.histories[0]
    assert (matrix[0, -len(first):] == first).all() and (matrix[0, :-len(first)] == -1).all()


def test_agentcf_protocol_uses_their_splits_and_candidate_lists(data_dir):
    protocol = build_protocol("agentcf-cds")
    atomic = load_dataset("agentcf-cds")
    assert (protocol.n_users, protocol.test.candidates.shape) == (100, (100, 10))
    first = atomic.splits["test"].iloc[0]
    raw = protocol.items["raw_id"].to_numpy()
    assert raw[protocol.test.targets[0]] == first.item_id
    assert list(raw[protocol.test.histories[0]]) == list(first.item_id_list)
    negatives = set(raw[protocol.test.candidates[0]]) - {first.item_id}
    assert negatives <= set(atomic.candidates[first.user_id][:10])
    logged_valid = atomic.splits["valid"].set_index("user_id").item_id
    assert raw[protocol.valid.targets[0]] == logged_valid[first.user_id]  # their validation item, one step earlier
