"""What GRU4Rec and SASRec share: next-item training with full-softmax cross-entropy (or the original SASRec's
binary cross-entropy against one sampled negative), and last-state scoring.

Sequences are left-aligned (item k at position k, padding 0 after the end) so a causal encoder never sees padding
before a real item; the representation of a history is the encoder state at its last real position. Full softmax
over all items is cheap at this catalogue size and trains far better than one sampled negative (docs/findings.md),
except on the sparse CDs `_sample` view.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from starec_env.policies.torch_policy import TorchPolicy
from starec_env.protocol import Cases, TrainView


def left_aligned(sequences: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, length) item ids + 1 (0 = padding) holding each sequence's last `length` items, and their lengths."""
    out = np.zeros((len(sequences), length), dtype=np.int64)
    lengths = np.zeros(len(sequences), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        recent = np.asarray(sequence[-length:], dtype=np.int64)
        out[row, : len(recent)] = recent + 1
        lengths[row] = len(recent)
    return out, lengths


def item_embedding(n_items: int, dim: int) -> torch.nn.Embedding:
    """Item table shared by input and output; std 1/sqrt(dim) keeps initial logits ~N(0, 1), not ~N(0, dim)."""
    table = torch.nn.Embedding(n_items + 1, dim, padding_idx=0)
    torch.nn.init.normal_(table.weight, std=dim**-0.5)
    with torch.no_grad():
        table.weight[0].zero_()
    return table


class SequencePolicy(TorchPolicy):
    """Subclasses build a module with `encode(ids) -> (B, L, D)` for training, `encode_last(ids, last) -> (B, D)`
    (the state at each row's position `last`) for scoring, and an `items` embedding (n_items + 1, D)."""

    max_len = 40
    scoring_bucket = 128  # histories per encoder call when scoring: small calls keep the attention matrices in cache

    def batches(self, train: TrainView, rng: np.random.Generator):
        if not hasattr(self, "_train_arrays") or self._train_arrays[0] is not train:
            usable = [s for s in train.sequences if len(s) >= 2]
            ids, _ = left_aligned(usable, self.max_len + 1)
            self._train_arrays = (train, torch.from_numpy(ids[:, :-1]), torch.from_numpy(ids[:, 1:]))
        _, inputs, targets = self._train_arrays
        order = torch.from_numpy(rng.permutation(len(inputs)))
        for start in range(0, len(order), self.config.batch_size):
            index = order[start : start + self.config.batch_size]
            yield inputs[index], targets[index]

    def loss(self, batch) -> torch.Tensor:
        inputs, targets = batch
        mask = targets > 0
        hidden, positives = self.model.encode(inputs)[mask], targets[mask]
        if self.config.objective == "bce":
            return self._one_negative_bce(hidden, positives)
        logits = F.linear(hidden, self.model.items.weight[1:])  # real items only: padding is never a next item
        return F.cross_entropy(logits, positives - 1)

    def _one_negative_bce(self, hidden: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """The original SASRec objective: each next item against one uniformly drawn item. Items that never occur
        in training are pushed down only when drawn, so they keep a middling score — on the sparse CDs `_sample`
        view, where a third of the test targets are such items, it beats the default softmax by 1.1 points (README)."""
        negatives = torch.randint(1, self.model.items.num_embeddings, positives.shape)
        items = self.model.items(torch.cat([positives, negatives]))
        logits = (hidden.repeat(2, 1) * items).sum(-1)
        labels = torch.cat([torch.ones(len(positives)), torch.zeros(len(negatives))])
        return F.binary_cross_entropy_with_logits(logits, labels)

    def score_tensor(self, cases: Cases) -> torch.Tensor:
        """Histories go through the encoder in buckets of similar length, each cut to its longest: trailing padding
        never reaches a causal state, and most CDs histories are far shorter than the longest one."""
        ids, lengths = left_aligned(cases.histories, self.max_len)
        ids, last = torch.from_numpy(ids), torch.from_numpy(np.maximum(lengths, 1) - 1)
        states = torch.empty(len(ids), self.config.dim)
        for rows in torch.argsort(last).split(self.scoring_bucket):
            states[rows] = self.model.encode_last(ids[rows, : int(last[rows].max()) + 1], last[rows])
        candidates = self.model.items(torch.from_numpy(cases.candidates + 1))
        return torch.einsum("bd,bcd->bc", states, candidates)
