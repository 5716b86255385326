"""The dataset registry: one `DatasetSpec` per dataset, read by the loaders, the protocol, the env registration and
the CLI — and the same path for your own data.

A name resolves to its registered spec; anything else is taken as a path to your data: a RecBole atomic folder
(general layout `NAME.inter` + `NAME.item` under the paper protocol, or sequential splits `NAME.train/valid/test.inter`
under those splits), or an interactions table `user,item,rating,timestamp` (CSV or TSV) with `items.csv` beside it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from starec_env.data import (AtomicDataset, Dataset, amazon_cds_files, atomic_default, atomic_files, atomic_split_files,
                             load_amazon_cds, load_atomic, load_atomic_interactions, load_ml1m, load_table,
                             ml1m_files, table_files)
from starec_env.sources import DataError, Source


@dataclass(frozen=True)
class DatasetSpec:
    """Everything that names a dataset: where its files are, how they parse, how the protocol treats it."""

    name: str
    find_files: Callable[[str | os.PathLike | None], dict[str, Source]]  # locate + verify, given an explicit path
    parse: Callable[[dict[str, Source]], Dataset | AtomicDataset]
    protocol: Mapping[str, object] = field(default_factory=dict)  # `ProtocolConfig` fields that differ from the paper
    deviation: str = ""  # how and why `protocol` departs from the paper, recorded with every result
    env_id: str | None = None  # its Gymnasium id, `gym.make(f"starec_env:{env_id}")`
    own_splits: bool = False  # True: cases come from the data's own train/valid/test splits, not the paper's
    path: str | None = None  # where your own data lives (datasets given by path)

    def files(self, path: str | os.PathLike | None = None) -> dict[str, Source]:
        return self.find_files(path if path is not None else self.path)


DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec("ml-1m", ml1m_files, load_ml1m, env_id="STARec-ML1M-v0"),
    DatasetSpec("amazon-cds", amazon_cds_files, load_amazon_cds,
                protocol={"min_user_interactions": 5, "min_item_interactions": 1},
                deviation="users >= 5 positives, items >= 1 (paper: 10/10); the 10/10 filter leaves no user on this "
                          "subset", env_id="STARec-CDs-v0"),
    DatasetSpec("agentcf-cds", lambda path: atomic_split_files(path or atomic_default()), load_atomic,
                protocol={"min_user_interactions": 3, "min_item_interactions": 1, "n_test_users": 100,
                          "n_negatives": 9},
                deviation="AgentCF's protocol, not STARec's: their splits and the first 9 items of their candidate "
                          "lists", own_splits=True),
)}


def dataset_spec(name_or_path: str | os.PathLike) -> DatasetSpec:
    """The registered spec of a name, or a spec for your own data at a path (see the module docstring)."""
    if str(name_or_path) in DATASETS:
        return DATASETS[str(name_or_path)]
    path = Path(name_or_path)
    if path.is_dir() and list(path.glob("*.test.inter*")):
        return DatasetSpec(path.name, atomic_split_files, load_atomic, own_splits=True, path=str(path),
                           protocol={"min_user_interactions": 3, "min_item_interactions": 1},
                           deviation="the atomic folder's own train/valid/test splits")
    if path.is_dir():
        return DatasetSpec(path.name, atomic_files, load_atomic_interactions, path=str(path))
    if path.is_file():
        return DatasetSpec(path.name.split(".")[0], table_files, load_table, path=str(path))
    raise DataError(f"unknown dataset {str(name_or_path)!r}: use one of {sorted(DATASETS)}, a RecBole atomic folder, "
                    "or an interactions table (user,item,rating,timestamp) with items.csv beside it")


def load_dataset(name_or_path: str | os.PathLike, path: str | os.PathLike | None = None) -> Dataset | AtomicDataset:
    """Load a dataset from its original files; `path` overrides where a registered dataset's files are looked for."""
    spec = dataset_spec(name_or_path)
    return spec.parse(spec.files(path))
