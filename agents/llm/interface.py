"""The LLM interface: chats in, completions out, and the types both sides share (backends implement `LLM`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
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
    """

    spec: str = ""

    @property
    def tokens(self) -> Counter:
        if "_tokens" not in self.__dict__:
            self._tokens = Counter()
        return self._tokens

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
        """Per chat, the mean token log-likelihood of each option as the assistant's next words (likelihood ranking)."""
        raise LLMError(f"{type(self).__name__} cannot score continuations; use an hf: (transformers) model")

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
