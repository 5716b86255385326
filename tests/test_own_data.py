"""Your own data by path, through the same registry, protocol, CLI and env as the built-in datasets."""

import csv
import gzip

import gymnasium as gym
import numpy as np
import pytest

from starec_env.benchmarks.cli import main
from starec_env.datasets import DATASETS, dataset_spec
from starec_env.protocol import build_protocol, default_config
from starec_env.sources import DataError

USERS = 300  # the first 300 ML-1M users: enough for the paper's 10/10 filter to keep most of them


@pytest.fixture(scope="module")
def exported(data_dir, tmp_path_factory):
    """A slice of the real ML-1M written as a CSV table and as a RecBole atomic folder (never kept in the repo)."""
    folder = tmp_path_factory.mktemp("own")
    with gzip.open(data_dir / "ml-1m" / "ratings.dat.gz", "rt") as handle:
        ratings = [line.strip().split("::") for line in handle]
    ratings = [r for r in ratings if int(r[0]) <= USERS]
    with gzip.open(data_dir / "ml-1m" / "movies.dat.gz", "rt", encoding="latin-1") as handle:
        movies = [line.strip().split("::")[:2] for line in handle]
    (folder / "ratings.csv").write_text("user,item,rating,timestamp\n" + "".join(f"{','.join(r)}\n" for r in ratings))
    with (folder / "items.csv").open("w", newline="") as handle:  # CSV quoting: many titles hold commas
        csv.writer(handle).writerows([("item", "title"), *movies])
    atomic = folder / "ml300"
    atomic.mkdir()
    (atomic / "ml300.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                        + "".join("\t".join(r) + "\n" for r in ratings))
    (atomic / "ml300.item").write_text("item_id:token\tmovie_title:token_seq\n"
                                       + "".join(f"{m}\t{t}\n" for m, t in movies))
    return folder, len(ratings)


def test_a_table_and_an_atomic_folder_of_the_same_data_give_the_same_protocol(exported):
    folder, n_ratings = exported
    table, atomic = build_protocol(str(folder / "ratings.csv")), build_protocol(str(folder / "ml300"))
    assert table.stats[0]["interactions"] == atomic.stats[0]["interactions"] == n_ratings
    assert table.stats == atomic.stats and 0 < table.n_users <= USERS
    assert np.array_equal(table.test.candidates, atomic.test.candidates)
    assert table.item_text(table.test.targets[0]) == atomic.item_text(atomic.test.targets[0])
    assert "American President, The (1995)" in table.titles(range(table.n_items))


def test_the_cli_and_the_env_take_a_path(exported, capsys, tmp_path):
    folder, _ = exported
    assert main(["data", "info", str(folder / "ratings.csv")]) == 0
    assert "truncated" in capsys.readouterr().out
    env = gym.make("starec_env:STARec-v0", dataset=str(folder / "ml300"))
    observation, _ = env.reset(seed=0)
    _, reward, terminated, _, info = env.step(np.zeros(20))
    assert terminated and info["choice"] in observation["candidates"] and reward in {1.0, 0.5, 0.0, -0.5}
    assert main(["bench", "--dataset", str(folder / "ml300"), "--policies", "pop", "--train", "full",
                 "--out", str(tmp_path)]) == 0
    assert "Pop_full" in next(tmp_path.glob("ml300-*/table.md")).read_text()


def test_an_atomic_folder_with_its_own_splits_loads_like_the_registered_one(data_dir):
    by_path = build_protocol(str(data_dir / "amazon-cds" / "agentcf"), default_config("agentcf-cds"))
    registered = build_protocol("agentcf-cds")
    assert dataset_spec(str(data_dir / "amazon-cds" / "agentcf")).own_splits
    assert np.array_equal(by_path.test.candidates, registered.test.candidates)


def test_the_registry_feeds_the_env_ids_and_the_protocol_defaults():
    assert {spec.env_id for spec in DATASETS.values() if spec.env_id} <= set(gym.registry)
    assert default_config("amazon-cds").min_user_interactions == 5 and DATASETS["amazon-cds"].deviation
    assert default_config("ml-1m") == default_config("ml-1m", seed=0)


def test_bad_own_data_names_the_file_and_line(tmp_path):
    (tmp_path / "ratings.csv").write_text("user,item,rating,timestamp\n1,10,5,978300760\n1,11,five,978300761\n")
    (tmp_path / "items.csv").write_text("item,title\n10,A\n11,B\n")
    with pytest.raises(DataError, match=r"ratings.csv, line 3: field 'rating' must be a number, got 'five'"):
        build_protocol(str(tmp_path / "ratings.csv"))
    (tmp_path / "items.csv").unlink()
    with pytest.raises(DataError, match="no item table beside it"):
        build_protocol(str(tmp_path / "ratings.csv"))
    with pytest.raises(DataError, match="unknown dataset 'nowhere'"):
        build_protocol("nowhere")
