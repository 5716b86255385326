"""llama.cpp through llama-cpp-python (extra `llamacpp`, built from source): fast CPU inference of GGUF files.

`gguf:default` is the embedded SmolLM2 GGUF kept in the model cache by `starec model fetch`.
"""

from __future__ import annotations

import os
from typing import Sequence

from starec_env.agents.llm.interface import LLM, Chat, Completion, LLMError, Sampling, refuse_labels


class LlamaCppLLM(LLM):
    def __init__(self, path: str, n_ctx: int = 4096, threads: int | None = None, logprobs: bool = False):
        """`logprobs=True` keeps every position's logits (llama.cpp's `logits_all`), which per-token log-probs need."""
        try:
            from llama_cpp import Llama
        except ImportError:
            raise LLMError("the gguf: backend needs llama-cpp-python: pip install 'starec-env[llamacpp]' "
                           "(it compiles llama.cpp, several minutes on 2 cores)") from None
        if path == "default":
            from starec_env.agents.llm.embedded import default_gguf

            path = str(default_gguf())
        if not os.path.isfile(path):
            raise LLMError(f"GGUF file not found: {path}")
        self.spec = f"gguf:{path}"
        self.engine = Llama(model_path=path, n_ctx=n_ctx, n_threads=threads or os.cpu_count(), logits_all=logprobs,
                            verbose=False)
        self.logprobs = logprobs

    def _generate(self, chats: Sequence[Chat], sampling: Sampling) -> list[list[Completion]]:
        refuse_labels(self, sampling)
        if sampling.logprobs and not self.logprobs:
            raise LLMError("this gguf: model was loaded without log-probs; load_llm(spec, logprobs=True)")
        return [[self._one(chat, sampling, k) for k in range(sampling.n)] for chat in chats]

    def _one(self, chat: Chat, sampling: Sampling, k: int) -> Completion:
        answer = self.engine.create_chat_completion(
            messages=chat, max_tokens=sampling.max_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
            stop=list(sampling.stop) or None, seed=None if sampling.seed is None else sampling.seed + k,
            logprobs=sampling.logprobs, top_logprobs=0 if sampling.logprobs else None)
        choice, usage = answer["choices"][0], answer["usage"]
        content = (choice.get("logprobs") or {}).get("content")
        return Completion(text=(choice["message"]["content"] or "").strip(), prompt_tokens=usage["prompt_tokens"],
                          completion_tokens=usage["completion_tokens"], finish_reason=choice["finish_reason"] or "stop",
                          token_logprobs=[t["logprob"] for t in content] if content else None)
