"""What the agents read about the world, and nothing more: item text, user profiles and training sequences.

`starec_env.protocol.Protocol` and its `TrainView` both have this shape, but the agents depend only on the shape,
so they sit below the protocol's users (envs, policies, trainers) and can be driven by any catalogue a user builds.
"""

from __future__ import annotations

from typing import Iterable, Protocol, Sequence

import numpy as np


class Catalogue(Protocol):
    dataset: str  # the name memories are saved under
    n_items: int
    profiles: Sequence[str]  # per user id: demographics as text, or ""

    def item_text(self, item_id: int) -> str:
        """The line a prompt shows for an item."""

    def titles(self, item_ids: Iterable[int]) -> list[str]:
        """`item_text` of each id."""

    def training_sequences(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """(users, their item sequences, oldest first) with every held-out item removed."""
