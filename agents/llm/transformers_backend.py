"""The transformers backend: CPU or GPU, real batching with left padding and a KV cache; the one trainers tune.

Prompts are sorted by length before they are cut into micro-batches, so a batch pads little; results come back in
the caller's order. `trust_remote_code` stays off unless asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from starec_env.agents.llm.interface import LLM, Chat, Completion, LLMError, Sampling, truncate_at_stop
from starec_env.agents.llm.constraints import LabelListProcessor


class TransformersLLM(LLM):
    def __init__(self, model: str, device: str | None = None, dtype: torch.dtype | str | None = None,
                 batch_size: int = 16, threads: int | None = None, trust_remote_code: bool = False):
        if Path(model).exists():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the hub
        self.spec = f"hf:{model}"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        if threads:
            torch.set_num_threads(threads)
        if isinstance(dtype, str):
            dtype = _torch_dtype(dtype)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(
                model, dtype=dtype or (torch.bfloat16 if self.device == "cuda" else torch.float32),
                trust_remote_code=trust_remote_code).to(self.device).eval()
        except OSError as error:
            raise LLMError(f"cannot load transformers model {model!r}: {error}") from error
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos if eos is not None else self.tokenizer.eos_token_id])

    def render(self, chat: Chat) -> str:
        """The chat in the model's own template, ending where the assistant writes (or continues its prefill)."""
        if chat and chat[-1]["role"] == "assistant":
            return self.tokenizer.apply_chat_template(chat, tokenize=False, continue_final_message=True)
        return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    def _generate(self, chats: Sequence[Chat], sampling: Sampling) -> list[list[Completion]]:
        prompts = [self.render(chat) for chat in chats for _ in range(sampling.n)]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Completion | None] = [None] * len(prompts)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            for index, completion in zip(chunk, self._generate_batch([prompts[i] for i in chunk], sampling)):
                results[index] = completion
        return [results[i * sampling.n : (i + 1) * sampling.n] for i in range(len(chats))]

    def _generate_batch(self, prompts: list[str], sampling: Sampling) -> list[Completion]:
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        config = GenerationConfig(
            max_new_tokens=sampling.max_tokens, do_sample=sampling.temperature > 0,
            temperature=sampling.temperature if sampling.temperature > 0 else None,
            top_p=sampling.top_p if sampling.temperature > 0 else None, pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self.eos_ids), return_dict_in_generate=True, output_scores=sampling.logprobs,
            stop_strings=list(sampling.stop) or None)
        processors = None
        if sampling.labels:
            processors = [LabelListProcessor(self.tokenizer, sampling.labels, encoded["input_ids"].shape[1],
                                             min(self.eos_ids))]
        with torch.inference_mode():
            output = self.model.generate(**encoded, generation_config=config, tokenizer=self.tokenizer,
                                         logits_processor=processors)
        new_tokens = output.sequences[:, encoded["input_ids"].shape[1]:].cpu()
        logprobs = None
        if sampling.logprobs:
            logprobs = self.model.compute_transition_scores(output.sequences, output.scores, normalize_logits=True)
        prompt_lengths = encoded["attention_mask"].sum(1).tolist()
        return [self._completion(new_tokens[row], prompt_lengths[row], sampling,
                                 None if logprobs is None else logprobs[row].tolist())
                for row in range(len(prompts))]

    def _completion(self, tokens: torch.Tensor, prompt_tokens: int, sampling: Sampling, logprobs) -> Completion:
        ids = tokens.tolist()
        end = next((i for i, token in enumerate(ids) if token in self.eos_ids), None)
        kept = ids if end is None else ids[:end]
        text, stopped = truncate_at_stop(self.tokenizer.decode(kept, skip_special_tokens=True), sampling.stop)
        count = len(kept) + (end is not None)
        return Completion(text=text.strip(), prompt_tokens=prompt_tokens, completion_tokens=count,
                          finish_reason="stop" if end is not None or stopped else "length",
                          token_logprobs=None if logprobs is None else logprobs[:count])

    def score_continuations(self, chats: Sequence[Chat], options: Sequence[Sequence[str]]) -> list[list[float]]:
        """One forward pass over each prompt, then all of its options at once on the cached prefix."""
        with torch.inference_mode():
            return [self._score_options(self.render(chat), list(texts)) for chat, texts in zip(chats, options)]

    def _score_options(self, prompt: str, texts: list[str]) -> list[float]:
        prefix = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids.to(self.device)
        first = self.model(prefix, use_cache=True, logits_to_keep=1)  # only the last position predicts an option
        ids = [self.tokenizer(text, add_special_tokens=False).input_ids or [self.tokenizer.eos_token_id]
               for text in texts]
        width = max(map(len, ids))
        tokens = torch.full((len(ids), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, option in enumerate(ids):
            tokens[row, : len(option)], mask[row, : len(option)] = torch.tensor(option), 1
        tokens, mask = tokens.to(self.device), mask.to(self.device)
        self.tokens["scored"] += prefix.shape[1] + int(mask.sum())
        cache = first.past_key_values
        cache.batch_repeat_interleave(len(ids))
        attention = torch.cat([torch.ones((len(ids), prefix.shape[1]), dtype=torch.long, device=self.device), mask], 1)
        logits = self.model(tokens, past_key_values=cache, attention_mask=attention).logits
        # token t of an option is predicted by the prefix's last position (t = 0) or by option token t - 1
        predicted = torch.cat([first.logits[:, -1:].expand(len(ids), 1, -1), logits[:, :-1]], 1).float()
        logprobs = predicted.log_softmax(-1).gather(-1, tokens[..., None])[..., 0] * mask
        return (logprobs.sum(1) / mask.sum(1)).tolist()


def _torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise LLMError(f"dtype must name a torch floating-point type such as 'float32' or 'bfloat16', got {name!r}")
    return dtype
