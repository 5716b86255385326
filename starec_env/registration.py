"""Gymnasium registration, in one flat list read from the dataset registry: `STARec-ML1M-v0`, `STARec-CDs-v0`, and
`STARec-v0`, which takes any dataset by name or path (`gym.make("starec_env:STARec-v0", dataset="path/to/data")`).

Entry points are strings, so registering imports neither the environments nor the agents behind them.
"""

from __future__ import annotations

import gymnasium as gym

from starec_env.datasets import DATASETS

ENTRY_POINT = "starec_env.envs:UserEnv"
VECTOR_ENTRY_POINT = "starec_env.vector:UserVectorEnv"


def env_ids() -> dict[str, dict]:
    """Every id this package registers, with its default keyword arguments."""
    ids = {spec.env_id: {"dataset": spec.name} for spec in DATASETS.values() if spec.env_id}
    return {**ids, "STARec-v0": {}}


def register_envs() -> None:
    for env_id, kwargs in env_ids().items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=ENTRY_POINT, vector_entry_point=VECTOR_ENTRY_POINT, kwargs=kwargs)
