"""The transformers backend: CPU or GPU, real batching with left padding and a KV cache; the one trainers tune.

Prompts are sorted by length before they are cut into micro-batches, so a batch pads little; results come back in
the caller's order. Scoring keeps the KV caches of the last `prefix_cache` prompts and continues the one sharing the
longest token prefix with the next prompt (at least `MIN_SHARED` tokens): one user's prompts share its description,
so a user's second and later questions cost only their own tokens. `trust_remote_code` stays off unless asked for.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from starec_env.agents.llm.interface import LLM, Chat, Completion, LLMError, Sampling, truncate_at_stop
from starec_env.agents.llm.constraints import LabelListProcessor

MIN_SHARED = 64  # shorter common prefixes (a system prompt) are recomputed: reuse would save little


class TransformersLLM(LLM):
    """`dtype` defaults to bfloat16 where its matrix products are native (`native_bf16`) and float32 elsewhere;
    `dtype="float32"` keeps full precision anywhere."""

    def __init__(self, model: str, device: str | None = None, dtype: torch.dtype | str | None = None,
                 batch_size: int = 16, threads: int | None = None, trust_remote_code: bool = False,
                 prefix_cache: int = 32):
        if Path(model).exists():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the hub
        self.spec = f"hf:{model}"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        self.prefix_cache = prefix_cache
        self.reused_tokens = 0  # prompt tokens whose KV came from the prefix cache instead of a forward pass
        self._prefills: OrderedDict[tuple[int, ...], object] = OrderedDict()  # token ids → their KV cache
        if threads:
            torch.set_num_threads(threads)
        if isinstance(dtype, str):
            dtype = _torch_dtype(dtype)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(
                model, dtype=dtype or (torch.bfloat16 if native_bf16(self.device) else torch.float32),
                trust_remote_code=trust_remote_code).to(self.device).eval()
        except OSError as error:
            raise LLMError(f"cannot load transformers model {model!r}: {error}") from error
        self.dtype = str(self.model.dtype).removeprefix("torch.")
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

    def tokenize(self, chat_or_text: Chat | str) -> list[int]:
        text = chat_or_text if isinstance(chat_or_text, str) else self.render(chat_or_text)
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def prompt_logprobs(self, prompts: Sequence[Sequence[int]]) -> list[list[float | None]]:
        """One forward pass per prompt, every position's logits kept."""
        with torch.inference_mode():
            return [self._prompt_logprobs(list(ids)) for ids in prompts]

    def _prompt_logprobs(self, ids: list[int]) -> list[float | None]:
        _, logits = self._prefill(ids, keep=len(ids))
        following = torch.tensor(ids[1:], device=self.device)[:, None]
        return [None, *logits[0, :-1].float().log_softmax(-1).gather(-1, following)[:, 0].tolist()]

    def score_continuations(self, chats: Sequence[Chat], options: Sequence[Sequence[str]]) -> list[list[float]]:
        """One forward pass over each prompt, then all of its options at once on the cached prefix."""
        with torch.inference_mode():
            return [self._score_options(self.tokenize(chat), list(texts)) for chat, texts in zip(chats, options)]

    def _score_options(self, prefix: list[int], texts: list[str]) -> list[float]:
        ids = [self.tokenize(text) or [self.tokenizer.eos_token_id] for text in texts]
        if len({len(option) for option in ids}) == 1 and len({tuple(option[:-1]) for option in ids}) == 1:
            return self._score_last_tokens(prefix, ids)
        cache, last = self._prefill(prefix)
        width = max(map(len, ids))
        tokens = torch.full((len(ids), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, option in enumerate(ids):
            tokens[row, : len(option)], mask[row, : len(option)] = torch.tensor(option), 1
        tokens, mask = tokens.to(self.device), mask.to(self.device)
        self.tokens["scored"] += int(mask.sum())
        cache.batch_repeat_interleave(len(ids))
        attention = torch.cat([torch.ones((len(ids), len(prefix)), dtype=torch.long, device=self.device), mask], 1)
        logits = self.model(tokens, past_key_values=cache, attention_mask=attention).logits
        # token t of an option is predicted by the prefix's last position (t = 0) or by option token t - 1
        predicted = torch.cat([last.expand(len(ids), 1, -1), logits[:, :-1]], 1).float()
        logprobs = predicted.log_softmax(-1).gather(-1, tokens[..., None])[..., 0] * mask
        return (logprobs.sum(1) / mask.sum(1)).tolist()

    def _score_last_tokens(self, prefix: list[int], ids: list[list[int]]) -> list[float]:
        """Options that differ only in their last token (" 1" … " 5"): one pass over the prompt and their shared
        tokens scores them all, with the same values as the general path."""
        shared = ids[0][:-1]
        _, logits = self._prefill(prefix + shared, keep=len(shared) + 1)
        self.tokens["scored"] += len(ids)  # each option's own last token
        logprobs = logits[0].float().log_softmax(-1)
        common = sum(float(logprobs[i, token]) for i, token in enumerate(shared))
        return [(common + float(logprobs[-1, option[-1]])) / len(option) for option in ids]

    def _prefill(self, ids: list[int], keep: int = 1):
        """(a KV cache of `ids` the caller may extend, the logits at their last `keep` positions), continuing the
        kept prompt that shares the longest token prefix with them."""
        key, shared, source = tuple(ids), 0, None
        for kept in self._prefills:
            common = next((i for i, (a, b) in enumerate(zip(kept, key)) if a != b), min(len(kept), len(key)))
            if common > shared:
                shared, source = min(common, len(key) - keep), kept  # the last `keep` tokens are run: they predict
        if shared < MIN_SHARED:
            shared, source = 0, None
        cache = None
        if source is not None:
            cache = copy.deepcopy(self._prefills[source])
            cache.crop(shared - len(source))  # a negative count: the tokens to drop, in every transformers version
            self._prefills.move_to_end(source)
        new = torch.tensor([ids[shared:]], device=self.device)
        output = self.model(new, past_key_values=cache, use_cache=True, logits_to_keep=keep)
        self.tokens["scored"] += len(ids)  # tokens read, cached or not: a step's cost record does not depend on
        self.reused_tokens += shared  # what earlier calls left in the cache; the saving is counted apart
        if self.prefix_cache:
            self._prefills[key] = copy.deepcopy(output.past_key_values)
            while len(self._prefills) > self.prefix_cache:
                self._prefills.popitem(last=False)
        return output.past_key_values, output.logits[:, -keep:]


def native_bf16(device: str = "cpu") -> bool:
    """Whether bfloat16 matrix products are native here — a GPU that supports them, or a CPU with AVX512-BF16 or AMX
    tiles — so that bfloat16 is the faster default; elsewhere they are emulated and float32 is faster."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported",
                                                                        "_is_amx_tile_supported"))


def _torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise LLMError(f"dtype must name a torch floating-point type such as 'float32' or 'bfloat16', got {name!r}")
    return dtype
