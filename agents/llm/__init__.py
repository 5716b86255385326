"""The one LLM interface every package uses: batched chat generation behind a backend chosen by one string.

    load_llm()                                  the embedded SmolLM2-135M-Instruct (fetched + converted once)
    load_llm("hf:HuggingFaceTB/SmolLM2-360M-Instruct")   any transformers checkpoint, id or local path
    load_llm("gguf:/models/qwen2.5-7b-q4.gguf")          llama.cpp (extra: llamacpp)
    load_llm("openai:http://127.0.0.1:8000/v1#my-model") any OpenAI-compatible server; key from $OPENAI_API_KEY
    load_llm("vllm:Qwen/Qwen2.5-7B-Instruct")            in-process vLLM engine (extra: vllm, GPU)
"""

from __future__ import annotations

from starec_env.agents.llm.interface import LLM, Chat, Completion, LLMError, Sampling

__all__ = ["LLM", "Chat", "Completion", "LLMError", "Sampling", "load_llm"]


def load_llm(spec: str | None = None, **options) -> LLM:
    """Backend by spec string (see the module docstring); None → the embedded default model."""
    if spec is None or spec in ("default", "embedded"):
        from starec_env.agents.llm.embedded import default_model_dir

        spec = f"hf:{default_model_dir()}"
    kind, _, target = spec.partition(":")
    if kind == "hf":
        from starec_env.agents.llm.transformers_backend import TransformersLLM

        return TransformersLLM(target, **options)
    if kind == "gguf":
        from starec_env.agents.llm.llamacpp_backend import LlamaCppLLM

        return LlamaCppLLM(target, **options)
    if kind == "openai":
        from starec_env.agents.llm.openai_backend import OpenAILLM

        return OpenAILLM(target, **options)
    if kind == "vllm":
        from starec_env.agents.llm.vllm_backend import VLLMBackend

        return VLLMBackend(target, **options)
    raise LLMError(f"unknown LLM spec {spec!r}: expected hf:PATH_OR_ID, gguf:FILE, openai:URL#MODEL or vllm:MODEL")
