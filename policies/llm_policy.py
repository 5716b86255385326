"""What every LLM policy shares: one LLM from a spec, one `PromptConfig`, batched scoring with a progress bar, usage
and traces.

`usage` counts answers by parse status ("ok", "partial", "failed"), the LLM's tokens (read, written and scored,
including slow thinking) and seconds, so the benchmark can report
parse-failure rates and cost per user; `traces` keeps, per user, what the model saw and said, for the HTML report.
Both are the policy's `state()`, which the benchmark saves between chunks of users so a killed row resumes.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

import numpy as np
from tqdm.auto import tqdm

from starec_env.agents.llm import LLM, load_llm
from starec_env.agents.prompts import PromptConfig
from starec_env.policies.base import Policy
from starec_env.protocol import Cases, TrainView


class LLMPolicy(Policy):
    """`prompt` (or its fields as keywords, e.g. `history=5`, as `starec bench --option` passes them) sets what
    every prompt shows; `dtype="bfloat16"` loads the model in bfloat16, faster on CPUs with native bf16 products."""

    learns = False  # zero-shot by default: the benchmark evaluates it once, not per training view
    defaults = PromptConfig()  # the keyword options beyond the constructor's own (see policies.registry)

    def __init__(self, model: str | LLM | None = None, seed: int = 0, batch_users: int = 16, progress: bool = True,
                 dtype: str | None = None, prompt: PromptConfig | None = None, **prompt_fields):
        if isinstance(model, LLM):
            if dtype:
                raise ValueError(f"dtype={dtype!r} applies to a model loaded from a spec, not to an LLM already loaded")
            self.llm = model
        else:
            self.llm = load_llm(model, **({"dtype": dtype} if dtype else {}))
        if prompt is not None and not isinstance(prompt, PromptConfig):
            raise TypeError(f"prompt must be a PromptConfig, got {type(prompt).__name__}")
        self.prompt = replace(prompt or self.defaults, **prompt_fields)
        self.seed, self.batch_users, self.progress = seed, batch_users, progress
        self.usage: Counter = Counter()
        self.traces: list[dict] = []
        self.train: TrainView | None = None

    def fit(self, train: TrainView) -> LLMPolicy:
        self.train = train  # the catalogue text and user profiles the prompts are written from
        return self

    def score(self, cases: Cases) -> np.ndarray:
        if self.train is None:
            raise RuntimeError(f"{type(self).__name__}.score called before fit (it needs the catalogue text)")
        started, before = time.perf_counter(), sum(self.llm.tokens.values())
        blocks = [self.score_batch(cases.subset(slice(start, start + self.batch_users)))
                  for start in tqdm(range(0, len(cases), self.batch_users), desc=self.name, unit="batch",
                                    disable=not self.progress, leave=False)]
        self.usage["users"] += len(cases)
        self.usage["seconds"] += time.perf_counter() - started
        self.usage["tokens"] += sum(self.llm.tokens.values()) - before
        return np.concatenate(blocks)

    def score_batch(self, cases: Cases) -> np.ndarray:
        raise NotImplementedError

    def state(self) -> dict:
        """What scoring has accumulated, as plain JSON: a long benchmark row saves it to resume after a kill."""
        return {"usage": dict(self.usage), "traces": self.traces}

    def load_state(self, state: dict) -> None:
        self.usage, self.traces = Counter(state["usage"]), list(state["traces"])

    # ------------------------------------------------------------------------------------------------ helpers
    def profile(self, user: int) -> str:
        return self.train.profiles[int(user)] if self.train.profiles else ""

    def count(self, status: str) -> None:
        self.usage["answers"] += 1
        self.usage[f"parse_{status}"] += 1

    def trace(self, user: int, candidates, scores, **details) -> None:
        order = np.lexsort((np.arange(len(scores)), -np.asarray(scores)))
        self.traces.append({"user": int(user), "profile": self.profile(user),
                            "ranking": [int(candidates[i]) for i in order], **details})
