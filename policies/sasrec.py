"""SASRec (Kang & McAuley, ICDM 2018): a causal self-attention encoder over the item sequence.

The block is written out (pre-norm attention + point-wise feed-forward of width `dim`, as in the paper) rather than
taken from `nn.TransformerEncoderLayer`: on CPU, dropout's random numbers dominate the step time, and the stock layer
draws four dropout masks per block over a 4×-wide feed-forward; this one draws two, over `dim`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from starec_env.policies.sequence import SequencePolicy, item_embedding
from starec_env.policies.torch_policy import TrainConfig


class SASRecBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.attention_norm, self.feedforward_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.feedforward = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self._qkv(x)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(batch, length, dim)))
        return x + self.dropout(self.feedforward(self.feedforward_norm(x)))

    def forward_last(self, x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """The output at position `last` of each row only: keys and values for every position, the query, the
        projection and the feed-forward for one — a third of the block's work when scoring."""
        batch, length, dim = x.shape
        q, k, v = self._qkv(x)
        rows = torch.arange(batch)
        visible = (torch.arange(length) <= last[:, None])[:, None, None, :]
        attended = F.scaled_dot_product_attention(q[rows, :, last].unsqueeze(2), k, v, attn_mask=visible)
        x = x[rows, last] + self.out(attended.reshape(batch, dim))
        return x + self.feedforward(self.feedforward_norm(x))

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch, length, _ = x.shape
        return self.qkv(self.attention_norm(x)).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)


class SASRecModule(nn.Module):
    def __init__(self, n_items: int, max_len: int, dim: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.items = item_embedding(n_items, dim)
        self.positions = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*(SASRecBlock(dim, heads, dropout) for _ in range(layers)))
        self.norm = nn.LayerNorm(dim)

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(self._embed(ids)))

    def encode_last(self, ids: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """`encode(ids)[range(B), last]`, skipping the positions the last block does not need."""
        return self.norm(self.blocks[-1].forward_last(self.blocks[:-1](self._embed(ids)), last))

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.items(ids) * self.items.embedding_dim**0.5 + self.positions.weight[: ids.shape[1]])


class SASRecPolicy(SequencePolicy):
    name = "sasrec"
    # A full softmax over every item overfits in a few epochs: strong dropout and weight decay hold it back, and a
    # patience of 10 evaluations outlasts the noisy validation of the sparse CDs views (docs/findings.md).
    defaults = TrainConfig(epochs=200, lr=2e-3, dim=64, dropout=0.5, weight_decay=1e-4, batch_size=64, patience=10,
                           eval_every=2)
    layers, heads = 2, 2

    def build(self, train) -> SASRecModule:
        return SASRecModule(train.n_items, self.max_len, self.config.dim, self.layers, self.heads, self.config.dropout)
