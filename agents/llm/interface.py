"""The LLM interface: chats in, completions out, and the types both sides share (backends implement `LLM`)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Sequence

Chat = list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": "..."}]
# A chat that ends with an assistant message is a prefill: the model continues that message, and the completion
# holds only the continuation (how agents pin an answer format on a small model).


class LLMError(Exception):
    """A backend could not produce completions: unreachable endpoint, garbage answer, missing extra, bad spec."""


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 128
    temperature: float = 0.0  # 0 → greedy
    top_p: float = 1.0
    n: int = 1  # completions per chat (GRPO uses groups of 8)
    stop: tuple[str, ...] = ()
    seed: int | None = 0
    logprobs: bool = False
    labels: int = 0  # > 0: only `[a,b,…]` with each label 1…labels once (hf: backend; see agents.llm.constraints)


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn or a stop string) or "length"
    token_logprobs: list[float] | None = field(default=None, repr=False)


class LLM(ABC):
    """Many chats in, `n` completions per chat out; backends batch however suits them.

    `tokens` counts every token the model read or wrote ("prompt", "completion", "scored"), whoever asked, so a
    policy's cost is the difference of two readings — nothing has to thread counts through its call chain.
    `profile` adds up, per phase an agent names with `phase(...)`, the calls' seconds and tokens.
    """

    spec: str = ""
    dtype: str = ""  # the weights' precision where they live in this process ("bfloat16"); "" for served models

    @property
    def tokens(self) -> Counter:
        if "_tokens" not in self.__dict__:
            self._tokens = Counter()
        return self._tokens

    @property
    def profile(self) -> dict[str, Counter]:
        if "_profile" not in self.__dict__:
            self._profile = {}
        return self._profile

    @contextmanager
    def phase(self, name: str):
        """Counts the calls made inside under `profile[name]`: seconds, tokens and calls (phases do not nest)."""
        tokens, started = sum(self.tokens.values()), time.perf_counter()
        try:
            yield
        finally:
            entry = self.profile.setdefault(name, Counter())
            entry["seconds"] += time.perf_counter() - started
            entry["tokens"] += sum(self.tokens.values()) - tokens
            entry["calls"] += 1

    def generate(self, chats: Sequence[Chat], sampling: Sampling = Sampling()) -> list[list[Completion]]:
        """For each chat, `sampling.n` completions."""
        results = self._generate(chats, sampling)
        for completions in results:
            for completion in completions:
                self.tokens["prompt"] += completion.prompt_tokens
                self.tokens["completion"] += completion.completion_tokens
        return results

    @abstractmethod
    def _generate(self, chats: Sequence[Chat], sampling: Sampling) -> list[list[Completion]]:
        """The backend's batched generation."""

    def score_continuations(self, chats: Sequence[Chat], options: Sequence[Sequence[str]]) -> list[list[float]]:
        """Per chat, the mean token log-likelihood of each option as the assistant's next words (likelihood ranking):
        the chat's tokens (`tokenize`) followed by the option's own."""
        raise LLMError(f"{type(self).__name__} cannot score continuations; use an hf: model or an openai: server "
                       "with prompt log-probs")

    def tokenize(self, chat_or_text: Chat | str) -> list[int]:
        """Token ids of a chat in the model's template, ending where the assistant writes or continues its prefill,
        or of plain text (no special tokens): what `starec serve` answers at /tokenize."""
        raise LLMError(f"{type(self).__name__} cannot tokenize; use an hf: model")

    def prompt_logprobs(self, prompts: Sequence[Sequence[int]]) -> list[list[float | None]]:
        """Per prompt of token ids, each token's log-probability after the ones before it (None for the first):
        what `starec serve` answers to an `echo` completion request."""
        raise LLMError(f"{type(self).__name__} cannot score prompts; use an hf: model")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


def refuse_labels(llm: LLM, sampling: Sampling) -> None:
    """Backends without the label-list constraint say so instead of silently generating free text."""
    if sampling.labels:
        raise LLMError(f"{type(llm).__name__} has no label-constrained decoding; use an hf: model, or labels=0 "
                       "and let agents.parsing read the free-text answer")


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` at the first stop string; (text, whether one was found). Shared by backends without native stops."""
    cuts = [text.find(s) for s in stop if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)
