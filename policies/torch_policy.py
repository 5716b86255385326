"""The training loop shared by the neural policies: seeds, threads, early stopping, safetensors checkpoints.

A subclass supplies `build` (the module), `batches` (one epoch of tensors), `loss` and `score_tensor`; this class
trains with Adam, evaluates validation NDCG@10 after every `eval_every` epochs, keeps the best weights and stops
after `patience` evaluations without improvement, or at the first evaluation past a `max_seconds` budget.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from starec_env.policies.base import Policy
from starec_env.metrics import summarize, target_ranks
from starec_env.protocol import Cases, TrainView


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    dim: int = 64
    dropout: float = 0.2
    patience: int = 10
    eval_every: int = 2
    max_seconds: float | None = None  # a training-time budget: stop at the first evaluation past it, keep the best
    objective: str = "softmax"  # sequence policies: "softmax" over every item, or "bce" against one sampled negative
    threads: int = 2
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        if self.objective not in ("softmax", "bce"):
            raise ValueError(f"unknown training objective {self.objective!r}; expected 'softmax' or 'bce'")


class TorchPolicy(Policy):
    defaults = TrainConfig()

    def __init__(self, seed: int = 0, **overrides):
        self.config = replace(self.defaults, seed=seed, **overrides)
        self.model: torch.nn.Module | None = None
        self.history: list[dict] = []  # per evaluation: epoch, seconds, loss, valid ndcg@10

    # ------------------------------------------------------------------------------------------ subclass hooks
    def build(self, train: TrainView) -> torch.nn.Module:
        raise NotImplementedError

    def batches(self, train: TrainView, rng: np.random.Generator) -> Iterable[tuple[torch.Tensor, ...]]:
        raise NotImplementedError

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        raise NotImplementedError

    def score_tensor(self, cases: Cases) -> torch.Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------ training
    def fit(self, train: TrainView) -> "TorchPolicy":
        config = self.config
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        self.model = self.build(train)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        best, best_state, stale, started, self.history = -1.0, None, 0, time.perf_counter(), []
        budget = float("inf") if config.max_seconds is None else config.max_seconds
        bar = tqdm(range(1, config.epochs + 1), desc=f"{self.name}_{train.name}", disable=not config.progress,
                   leave=False)
        for epoch in bar:
            self.model.train()
            losses = []
            for batch in self.batches(train, rng):
                optimizer.zero_grad(set_to_none=True)
                loss = self.loss(batch)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            if epoch % config.eval_every and epoch != config.epochs:
                continue
            valid = self.validate(train.valid)
            self.history.append({"epoch": epoch, "seconds": time.perf_counter() - started,
                                 "loss": float(np.mean(losses)), "valid_ndcg@10": valid})
            bar.set_postfix(loss=f"{np.mean(losses):.4f}", valid=f"{valid:.4f}", best=f"{max(best, valid):.4f}")
            if valid > best:
                best, best_state, stale = valid, copy.deepcopy(self.model.state_dict()), 0
            else:
                stale += 1
            if stale >= config.patience or time.perf_counter() - started >= budget:
                break
        self.model.load_state_dict(best_state)
        self.model.eval()
        return self

    def validate(self, cases: Cases) -> float:
        return summarize(target_ranks(self.score(cases), cases.target_index))["ndcg@10"]

    def score(self, cases: Cases) -> np.ndarray:
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__}.score called before fit or load")
        self.model.eval()
        with torch.inference_mode():
            parts = [self.score_tensor(cases.subset(slice(start, start + 4096)))
                     for start in range(0, len(cases), 4096)]
        return torch.cat(parts).double().numpy()

    # ---------------------------------------------------------------------------------------------- checkpoints
    def save(self, path: str | Path) -> Path:
        """Weights as safetensors; the config and training history ride along as metadata (no pickle)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"policy": type(self).__name__, "config": json.dumps(asdict(self.config)),
                    "history": json.dumps(self.history), **self.checkpoint_metadata()}
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(path), metadata=metadata)
        return path

    def checkpoint_metadata(self) -> dict[str, str]:
        """Whatever `build` needs to rebuild the module shape when loading (e.g. the number of items)."""
        return {}

    def load(self, path: str | Path, train: TrainView) -> "TorchPolicy":
        self.model = self.build(train)
        self.model.load_state_dict(load_file(str(path)))
        self.model.eval()
        return self
