"""The STARec evaluation protocol (arXiv 2508.18812, §5.1), fixed per seed so every policy sees the same cases.

Ratings above a threshold are positive; repeated (user, item) positives keep their first occurrence; users and items
with too few positives are dropped iteratively (a k-core); each history is cut to its last 40 items; leave-one-out by
time: the last item is the test target, the one before it the validation target. 1,000 test users are sampled, each
case holds the target and 19 negatives drawn uniformly from items the user never rated at any rating, with the target
at a random position. `_sample` trains on the sampled users only, `_full` on every user's history before their
held-out items.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from starec_env.cache import cache_dir, config_key
from starec_env.data import AtomicDataset, Dataset, checksums
from starec_env.datasets import dataset_spec
from starec_env.files import atomic_path, read_json, write_json, write_text
from starec_env.sources import DataError

PROTOCOL_VERSION = 2  # bump when the construction or the catalogue text changes, so cached protocols are rebuilt


@dataclass(frozen=True)
class ProtocolConfig:
    positive_above: float = 3.0
    min_user_interactions: int = 10
    min_item_interactions: int = 10
    max_history: int = 40
    n_test_users: int = 1000
    n_negatives: int = 19
    seed: int = 0

    def __post_init__(self):
        if self.min_user_interactions < 3:
            raise ValueError("min_user_interactions must be >= 3: "
                             "each user needs a train, a validation and a test item")
        if self.max_history < 3 or self.n_negatives < 1 or self.n_test_users < 1:
            raise ValueError(f"invalid protocol config {self}")


def default_config(dataset: str, **overrides) -> ProtocolConfig:
    """The paper's protocol with the dataset's recorded deviations (`starec_env.datasets`), then `overrides`."""
    return ProtocolConfig(**{**dataset_spec(dataset).protocol, **overrides})


@dataclass
class Cases:
    """Ranking cases: each row asks a policy to order `candidates[b]` for `users[b]` given `histories[b]`."""

    users: np.ndarray  # (B,) protocol user ids
    histories: list[np.ndarray]  # items before the target, oldest first
    candidates: np.ndarray  # (B, C) item ids in presentation order
    target_index: np.ndarray  # (B,) where the target sits in each row

    def __len__(self) -> int:
        return len(self.users)

    @property
    def targets(self) -> np.ndarray:
        return self.candidates[np.arange(len(self)), self.target_index]

    def subset(self, index) -> Cases:
        index = np.arange(len(self))[index]
        return Cases(self.users[index], [self.histories[i] for i in index], self.candidates[index],
                     self.target_index[index])

    def history_matrix(self, length: int, pad: int = -1) -> np.ndarray:
        """(B, length) most recent items, right-aligned (the last column is the newest), `pad` on the left."""
        out = np.full((len(self), length), pad, dtype=np.int64)
        for row, history in enumerate(self.histories):
            recent = history[-length:]
            if len(recent):
                out[row, length - len(recent):] = recent
        return out


class Catalogue:
    """Item text for anything holding the catalogue as `items`: prompts name items, ids stay ids everywhere else."""

    items: pd.DataFrame

    @cached_property
    def texts(self) -> list[str]:
        return item_texts(self.items)  # built once: environments name items on every step

    def item_text(self, item_id: int) -> str:
        return self.texts[int(item_id)]

    def titles(self, item_ids) -> list[str]:
        return [self.texts[int(i)] for i in item_ids]


@dataclass
class TrainView(Catalogue):
    """What a policy may learn from: training sequences (held-out items removed) and validation cases."""

    name: str  # "full" or "sample"
    users: np.ndarray
    sequences: list[np.ndarray]  # per entry of `users`, oldest first
    n_items: int
    valid: Cases
    items: pd.DataFrame  # the catalogue, for policies that read text
    profiles: list[str] = field(default_factory=list)  # per protocol user id: demographics as text, or ""
    dataset: str = ""

    @property
    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def training_sequences(self) -> tuple[np.ndarray, list[np.ndarray]]:
        return self.users, self.sequences


@dataclass
class Protocol(Catalogue):
    dataset: str
    config: ProtocolConfig
    items: pd.DataFrame  # catalogue, item_id = protocol id, raw_id = original id
    users: pd.DataFrame  # profiles, user_id = protocol id, raw_id = original id
    sequences: list[np.ndarray]  # per protocol user: truncated positives, oldest first (train + valid + test)
    test: Cases
    valid: Cases
    stats: list[dict] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the loader saw, e.g. that ML-1M here is a user subset
    deviation: str = ""  # how this protocol departs from the paper's (the dataset spec's), recorded with results

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return len(self.users)

    def train(self, view: str = "full") -> TrainView:
        """`full`: every user's items before validation/test; `sample`: the sampled test users' only (the paper)."""
        if view == "full":
            users = np.arange(self.n_users)
        elif view == "sample":
            users = self.test.users
        else:
            raise ValueError(f"unknown training view {view!r}; expected 'full' or 'sample'")
        return TrainView(view, users, [self.sequences[u][:-2] for u in users], self.n_items, self.valid, self.items,
                         self.profiles, self.dataset)

    def training_sequences(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """Every user's items before their validation and test items (the `full` view): what agents may read."""
        train = self.train("full")
        return train.users, train.sequences

    @cached_property
    def profiles(self) -> list[str]:
        """Per protocol user id: demographics as text (ML-1M), or "" where the data has none."""
        if "profile" not in self.users:
            return [""] * self.n_users
        return self.users["profile"].fillna("").astype(str).tolist()

    def cold_test(self) -> np.ndarray:
        """Positions of the test cases whose target never occurs in the `full` training view: cold-start cases,
        which a collaborative model cannot score from interactions and only the item's text can."""
        seen = np.zeros(self.n_items, dtype=bool)
        for sequence in self.train("full").sequences:
            seen[sequence] = True
        return np.flatnonzero(~seen[self.test.targets])

    def record(self) -> dict:
        """What a result must carry to be reproducible: effective config, deviations, counts, data checksums, and
        which test cases are cold-start (`cold_test`), so tables can report them apart."""
        return {"dataset": self.dataset, "protocol_version": PROTOCOL_VERSION, "config": asdict(self.config),
                "deviation_from_paper": self.deviation, "stats": self.stats,
                "sources_sha256": self.sources, "notes": self.notes, "cold_test_cases": self.cold_test().tolist()}

    # ------------------------------------------------------------------------------------------ candidate files
    def save_candidates(self, path: str | os.PathLike) -> Path:
        """Write the cases as TSV of original ids: `split, user, target, candidates` (space-separated, in order)."""
        path = Path(path)
        item_raw = self.items["raw_id"].astype(str).to_numpy()
        user_raw = self.users["raw_id"].astype(str).to_numpy()
        lines = [f"# STARec protocol candidates; dataset={self.dataset}; "
                 f"config={json.dumps(asdict(self.config), sort_keys=True)}",
                 "# ids are the dataset's original ids; candidates are listed in presentation order",
                 "split\tuser\ttarget\tcandidates"]
        for split, cases in (("test", self.test), ("valid", self.valid)):
            for user, target, row in zip(cases.users, cases.targets, cases.candidates):
                lines.append(f"{split}\t{user_raw[user]}\t{item_raw[target]}\t{' '.join(item_raw[row])}")
        return write_text(path, "\n".join(lines) + "\n")

    def with_candidates(self, path: str | os.PathLike) -> Protocol:
        """This protocol with its test/valid cases read from a candidate file (e.g. one someone else published)."""
        item_ids = {raw: i for i, raw in enumerate(self.items["raw_id"].astype(str))}
        user_ids = {raw: u for u, raw in enumerate(self.users["raw_id"].astype(str))}
        rows: dict[str, list] = {"test": [], "valid": []}
        for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
            if not line or line.startswith("#") or line.startswith("split\t"):
                continue
            parts = line.split("\t")
            try:
                split, user, target, candidates = parts[0], user_ids[parts[1]], item_ids[parts[2]], \
                    [item_ids[c] for c in parts[3].split()]
                position = candidates.index(target)
            except (IndexError, KeyError, ValueError) as error:
                raise ValueError(f"{path}, line {number}: expected 'split<TAB>user<TAB>target<TAB>candidates' with "
                                 f"ids of this protocol and the target among the candidates ({error!r})") from error
            offset = {"test": 1, "valid": 2}.get(split)
            if offset is None or self.sequences[user][-offset] != target:
                raise ValueError(f"{path}, line {number}: target {parts[2]} is not user {parts[1]}'s held-out "
                                 f"{split} item in this protocol (built from other data or config?)")
            rows[split].append((user, candidates, position))
        return replace(self, test=_cases_from_rows(self.sequences, rows["test"], 1),
                       valid=_cases_from_rows(self.sequences, rows["valid"], 2))


def sample_round(rng: np.random.Generator, n_items: int, exclude, target: int, n_candidates: int) -> np.ndarray:
    """The candidates of a round outside the fixed cases: `target` and `n_candidates - 1` items drawn uniformly from
    those not in `exclude`, in a random order. The env's extra rounds and the STARec policy's replayed rounds both
    come from here."""
    candidates = np.append(sample_unseen(rng, n_items, exclude, n_candidates - 1), target)
    return candidates[rng.permutation(n_candidates)]


def sample_unseen(rng: np.random.Generator, n_items: int, exclude, count: int) -> np.ndarray:
    """`count` distinct items drawn uniformly from those not in `exclude` (a session's candidates, a round's
    negatives)."""
    return rng.choice(np.setdiff1d(np.arange(n_items), exclude), count, replace=False)


def item_texts(items: pd.DataFrame) -> list[str]:
    """How prompts and reports name each item: its title, with year and genres where the catalogue has them."""
    return [f"{title} ({attributes})" if attributes else str(title)
            for title, attributes in zip(items["title"], items["attributes"])]


def _cases_from_rows(sequences, rows, offset) -> Cases:
    users = np.array([r[0] for r in rows], dtype=np.int64)
    return _make_cases(sequences, users, np.array([r[1] for r in rows], dtype=np.int64),
                       np.array([r[2] for r in rows], dtype=np.int64), offset)


def _make_cases(sequences, users, candidates, target_index, offset) -> Cases:
    """`offset` 1: test (history = all but the last item); 2: validation (all but the last two)."""
    histories = [sequences[u][:-offset] for u in users]
    return Cases(users, histories, candidates, target_index)


# ---------------------------------------------------------------------------------------------- construction
def build_protocol(dataset: str, config: ProtocolConfig | None = None, path: str | os.PathLike | None = None,
                   use_cache: bool = True) -> Protocol:
    """Build (or load from the user cache, keyed by data SHA-256s + config) the protocol for a dataset: a registered
    name or a path to your own data (`starec_env.datasets`)."""
    spec = dataset_spec(dataset)
    config = config or default_config(dataset)
    files = spec.files(path)
    if spec.own_splits:
        return replace(protocol_from_atomic(spec.parse(files), config, spec.name), deviation=spec.deviation)
    sources = checksums(files)
    folder = cache_dir("protocol", f"{spec.name}-{config_key(PROTOCOL_VERSION, asdict(config), sources)}")
    if use_cache and (folder / "protocol.json").is_file():
        try:
            return replace(_load(folder), deviation=spec.deviation)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, pa.ArrowException) as error:
            warnings.warn(f"{folder}: unreadable protocol cache ({type(error).__name__}: {error}); rebuilding it")
    protocol = replace(protocol_from_dataset(spec.parse(files), config), deviation=spec.deviation)
    if use_cache:
        _save(protocol, folder)
    return protocol


def protocol_from_dataset(data: Dataset, config: ProtocolConfig) -> Protocol:
    stats = [_stage("raw", data.interactions)]
    positives = data.interactions[data.interactions["rating"] > config.positive_above]
    stats.append(_stage("positive", positives))
    positives = positives.drop_duplicates(["user_id", "item_id"], keep="first")
    stats.append(_stage("deduplicated", positives))
    kept = k_core(positives, config.min_user_interactions, config.min_item_interactions)
    stats.append(_stage("filtered", kept))
    kept = kept.groupby("user_id", sort=False).tail(config.max_history)
    stats.append(_stage("truncated", kept))

    item_ids = np.unique(kept["item_id"].to_numpy())  # dataset id → protocol id by rank
    user_ids = np.unique(kept["user_id"].to_numpy())
    items = data.items.iloc[item_ids].reset_index(drop=True).assign(item_id=np.arange(len(item_ids)))
    users = data.users.iloc[user_ids].reset_index(drop=True).assign(user_id=np.arange(len(user_ids)))
    sequences = _sequences(np.searchsorted(user_ids, kept["user_id"].to_numpy()),
                           np.searchsorted(item_ids, kept["item_id"].to_numpy()), len(user_ids))
    rated = _rated_items(data.interactions, user_ids, item_ids)

    rng = np.random.default_rng(config.seed)
    n_test = min(config.n_test_users, len(user_ids))
    test_users = np.sort(rng.choice(len(user_ids), size=n_test, replace=False))
    test = _sample_cases(sequences, rated, test_users, len(item_ids), config.n_negatives, rng, offset=1)
    valid = _sample_cases(sequences, rated, test_users, len(item_ids), config.n_negatives,
                          np.random.default_rng([config.seed, 1]), offset=2)

    protocol = Protocol(data.name, config, items, users, sequences, test, valid, stats, data.sources, data.notes)
    for view in ("full", "sample"):
        train = protocol.train(view)
        stats.append({"stage": f"train_{view}", "users": len(train.users),
                      "items": len(np.unique(np.concatenate(train.sequences))), "interactions": train.n_interactions})
    stats.append({"stage": "test", "users": n_test, "items": len(item_ids), "interactions": n_test})
    return protocol


def protocol_from_atomic(atomic: AtomicDataset, config: ProtocolConfig, name: str = "agentcf-cds") -> Protocol:
    """A sequential atomic folder (AgentCF's subset) as a Protocol: each user's test history + target is the
    sequence; candidates come from `.random` (the target plus its first `n_negatives` other items) or, without one,
    are drawn uniformly from the items the user never interacted with; target position shuffled with the seed."""
    test = atomic.splits["test"]
    tokens = sorted({t for row in test.itertuples() for t in (*row.item_id_list, row.item_id)}
                    | {t for user in test.user_id for t in atomic.candidates.get(user, [])})
    index = {token: i for i, token in enumerate(tokens)}
    catalogue = atomic.items.set_index("item_id")
    items = pd.DataFrame({"item_id": np.arange(len(tokens)), "raw_id": tokens,
                          "title": [str(catalogue.title.get(t, f"CD {t}")) for t in tokens],
                          "attributes": [str(catalogue.get("category", pd.Series()).get(t, "")) for t in tokens],
                          "title_flag": ""})
    users = pd.DataFrame({"user_id": np.arange(len(test)), "raw_id": test.user_id.to_numpy(), "profile": ""})
    sequences = [np.array([index[t] for t in (*row.item_id_list, row.item_id)]) for row in test.itertuples()]
    rng = np.random.default_rng(config.seed)
    splits = []
    for offset in (1, 2):
        rows = []
        for user, sequence in enumerate(sequences):
            target = sequence[-offset]
            listed = atomic.candidates.get(users.raw_id[user]) if atomic.candidates else \
                [tokens[i] for i in _negatives(np.unique(sequence), len(tokens), config.n_negatives, rng)]
            others = [index[t] for t in listed or [] if index[t] != target]
            if len(others) < config.n_negatives:
                raise DataError(f"{atomic.name}.random: user {users.raw_id[user]} has {len(others)} candidates "
                                f"besides the target; expected at least {config.n_negatives}")
            row = np.append(others[: config.n_negatives], target)[rng.permutation(config.n_negatives + 1)]
            rows.append((user, row, int(np.flatnonzero(row == target)[0])))
        splits.append(_cases_from_rows(sequences, rows, offset))
    stats = [{"stage": "agentcf", "users": len(users), "items": len(items),
              "interactions": int(sum(len(s) for s in sequences))}]
    return Protocol(name, config, items, users, sequences, splits[0], splits[1], stats, atomic.sources,
                    [f"RecBole atomic folder {atomic.name}" + ("" if atomic.candidates else
                                                               ", negatives drawn uniformly (no .random file)")])


def k_core(frame: pd.DataFrame, min_user: int, min_item: int) -> pd.DataFrame:
    """Drop users/items with too few interactions until every remaining one has enough (iterative filtering)."""
    while True:
        before = len(frame)
        frame = frame[frame.groupby("item_id")["user_id"].transform("size") >= min_item]
        frame = frame[frame.groupby("user_id")["item_id"].transform("size") >= min_user]
        if len(frame) == before:
            return frame


def _stage(name: str, frame: pd.DataFrame) -> dict:
    users, items = frame["user_id"].nunique(), frame["item_id"].nunique()
    return {"stage": name, "users": int(users), "items": int(items), "interactions": len(frame),
            "sparsity": round(1 - len(frame) / max(users * items, 1), 6)}


def _sequences(users: np.ndarray, items: np.ndarray, n_users: int) -> list[np.ndarray]:
    """Split the (user-sorted, time-ordered) item column into one array per user."""
    bounds = np.searchsorted(users, np.arange(n_users + 1))
    return [items[bounds[u]:bounds[u + 1]].copy() for u in range(n_users)]


def _rated_items(interactions: pd.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray) -> list[np.ndarray]:
    """Per protocol user, every protocol item they rated at any rating: never offered as a negative."""
    frame = interactions[interactions["user_id"].isin(user_ids) & interactions["item_id"].isin(item_ids)]
    users = np.searchsorted(user_ids, frame["user_id"].to_numpy())
    items = np.searchsorted(item_ids, frame["item_id"].to_numpy())
    order = np.argsort(users, kind="stable")
    return [np.unique(part) for part in _sequences(users[order], items[order], len(user_ids))]


def _sample_cases(sequences, rated, users, n_items, n_negatives, rng, offset) -> Cases:
    candidates = np.empty((len(users), n_negatives + 1), dtype=np.int64)
    target_index = rng.integers(0, n_negatives + 1, size=len(users))
    for row, user in enumerate(users):
        negatives = _negatives(rated[user], n_items, n_negatives, rng)
        candidates[row] = np.insert(negatives, target_index[row], sequences[user][-offset])
    return _make_cases(sequences, users, candidates, target_index, offset)


def _negatives(excluded: np.ndarray, n_items: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct items drawn uniformly from those not in `excluded` (sorted)."""
    if n_items - len(excluded) < count:
        raise ValueError(f"only {n_items - len(excluded)} unrated items left for a user; {count} negatives needed")
    chosen: list[int] = []
    while len(chosen) < count:
        for item in rng.integers(0, n_items, size=2 * count):
            position = np.searchsorted(excluded, item)
            if (position == len(excluded) or excluded[position] != item) and item not in chosen:
                chosen.append(int(item))
                if len(chosen) == count:
                    break
    return np.array(chosen, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------- cache I/O
def _save(protocol: Protocol, folder: Path) -> None:
    lengths = np.array([len(s) for s in protocol.sequences])
    with atomic_path(folder / "arrays.npz") as scratch:
        np.savez(scratch, sequence_items=np.concatenate(protocol.sequences), sequence_lengths=lengths,
                 **{f"{split}_{name}": getattr(getattr(protocol, split), name)
                    for split in ("test", "valid") for name in ("users", "candidates", "target_index")})
    for name, frame in (("items", protocol.items), ("users", protocol.users)):
        with atomic_path(folder / f"{name}.parquet") as scratch:
            frame.to_parquet(scratch)
    protocol.save_candidates(folder / "candidates.tsv")
    meta = {"dataset": protocol.dataset, "config": asdict(protocol.config), "stats": protocol.stats,
            "sources": protocol.sources, "notes": protocol.notes}
    write_json(folder / "protocol.json", meta, indent=1)  # written last: marks the entry complete


def _load(folder: Path) -> Protocol:
    meta = read_json(folder / "protocol.json", "protocol cache entry")
    arrays = np.load(folder / "arrays.npz", allow_pickle=False)
    sequences = np.split(arrays["sequence_items"], np.cumsum(arrays["sequence_lengths"])[:-1])
    cases = {split: _make_cases(sequences, arrays[f"{split}_users"], arrays[f"{split}_candidates"],
                                arrays[f"{split}_target_index"], offset)
             for split, offset in (("test", 1), ("valid", 2))}
    return Protocol(meta["dataset"], ProtocolConfig(**meta["config"]), pd.read_parquet(folder / "items.parquet"),
                    pd.read_parquet(folder / "users.parquet"), sequences, cases["test"], cases["valid"],
                    meta["stats"], meta["sources"], meta["notes"])
