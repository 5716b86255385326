"""Constrained decoding for rankings: the model may only write `[a,b,…]`, every label 1…n exactly once.

A 135M model names no candidate in ~40% of free-form answers; under this constraint every answer is a complete
ranking, and the model's preferences still decide the order. Works on any tokenizer with single-character tokens
for digits, brackets and the comma (Llama, SmolLM, Qwen and GPT-2 style vocabularies all have them).
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from starec_env.agents.llm.interface import LLMError

CHARS = "0123456789[],"


def allowed_next(text: str, n: int) -> list[str]:
    """Characters that may follow `text` in a list of the distinct labels 1…n; "" means the list is complete."""
    if not text:
        return ["["]
    if text.endswith("]"):
        return [""]
    parts = text[1:].split(",")
    used, partial = {int(p) for p in parts[:-1]}, parts[-1]
    unused = [str(label) for label in range(1, n + 1) if label not in used]
    options = sorted({label[len(partial)] for label in unused if label.startswith(partial) and label != partial})
    if partial in unused:
        options.append("]" if len(used) + 1 == n else ",")
    return options


class LabelListProcessor(LogitsProcessor):
    def __init__(self, tokenizer, n: int, prompt_width: int, eos_id: int):
        self.ids = {char: tokenizer.convert_tokens_to_ids(char) for char in CHARS}
        if any(i is None or i == tokenizer.unk_token_id for i in self.ids.values()):
            raise LLMError(f"this tokenizer has no single-character tokens for {CHARS!r}: no label-list constraint")
        self.chars = {i: char for char, i in self.ids.items()}
        self.n, self.prompt_width, self.eos_id = n, prompt_width, eos_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, float("-inf"))
        for row, tokens in enumerate(input_ids[:, self.prompt_width:].tolist()):
            text = "".join(self.chars.get(token, "") for token in tokens)
            mask[row, [self.ids[c] if c else self.eos_id for c in allowed_next(text, self.n)]] = 0
        return scores + mask
