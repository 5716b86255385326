"""GRU4Rec (Hidasi et al., ICLR 2016): a recurrent encoder over the item sequence."""

from __future__ import annotations

import torch
from torch import nn

from starec_env.policies.sequence import SequencePolicy, item_embedding
from starec_env.policies.torch_policy import TrainConfig


class GRU4RecModule(nn.Module):
    def __init__(self, n_items: int, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.items = item_embedding(n_items, dim)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(dim, hidden, batch_first=True)
        self.project = nn.Linear(hidden, dim)

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(self.dropout(self.items(ids)))
        return self.project(self.dropout(states))

    def encode_last(self, ids: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """`encode(ids)[range(B), last]`, projecting one state per row."""
        states, _ = self.gru(self.dropout(self.items(ids)))
        return self.project(self.dropout(states[torch.arange(len(ids)), last]))


class GRU4RecPolicy(SequencePolicy):
    name = "gru4rec"
    defaults = TrainConfig(epochs=200, lr=2e-3, dim=64, dropout=0.3, batch_size=64, patience=5, eval_every=2)
    hidden = 128

    def build(self, train) -> GRU4RecModule:
        return GRU4RecModule(train.n_items, self.config.dim, self.hidden, self.config.dropout)
