"""BPR-MF (Rendle et al., UAI 2009): user and item factors trained on pairwise (positive > sampled negative)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from starec_env.policies.torch_policy import TorchPolicy, TrainConfig
from starec_env.protocol import Cases, TrainView


class MatrixFactorization(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.users = nn.Embedding(n_users, dim)
        self.items = nn.Embedding(n_items, dim)
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)


class BPRPolicy(TorchPolicy):
    name = "bpr"
    defaults = TrainConfig(epochs=300, lr=2e-3, dim=64, batch_size=1024, patience=10, eval_every=5)

    def __init__(self, seed: int = 0, l2: float = 0.01, **overrides):
        """`l2`: penalty on the factors a batch touches; strong regularisation matters on ~100K interactions."""
        super().__init__(seed, **overrides)
        self.l2 = l2

    def build(self, train: TrainView) -> MatrixFactorization:
        self.user_rows = {int(u): row for row, u in enumerate(train.users)}
        lengths = [len(s) for s in train.sequences]
        self._pairs = (torch.from_numpy(np.repeat(np.arange(len(train.users)), lengths)),
                       torch.from_numpy(np.concatenate(train.sequences).astype(np.int64)))
        return MatrixFactorization(len(train.users), train.n_items, self.config.dim)

    def batches(self, train: TrainView, rng: np.random.Generator):
        users, items = self._pairs
        order = torch.from_numpy(rng.permutation(len(users)))
        negatives = torch.from_numpy(rng.integers(0, train.n_items, size=len(users)))
        for start in range(0, len(order), self.config.batch_size):
            index = order[start : start + self.config.batch_size]
            yield users[index], items[index], negatives[index]

    def loss(self, batch) -> torch.Tensor:
        users, positives, negatives = batch
        u, p, n = self.model.users(users), self.model.items(positives), self.model.items(negatives)
        margin = (u * p).sum(-1) - (u * n).sum(-1)
        return -F.logsigmoid(margin).mean() + self.l2 * (u.pow(2) + p.pow(2) + n.pow(2)).sum(-1).mean()

    def score_tensor(self, cases: Cases) -> torch.Tensor:
        try:
            rows = torch.tensor([self.user_rows[int(u)] for u in cases.users])
        except KeyError as error:
            raise ValueError(f"BPR has no factors for user {error.args[0]}: it was not in the training view") from None
        return torch.einsum("bd,bcd->bc", self.model.users(rows), self.model.items(torch.from_numpy(cases.candidates)))
