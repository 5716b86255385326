"""`starec serve`: an OpenAI-compatible HTTP server in front of any backend, on 127.0.0.1 by default.

Routes: `/v1/chat/completions` (generation), `/v1/models`, and, for likelihood scoring as vLLM offers it,
`/tokenize` (a chat or text → token ids) and `/v1/completions` with `echo` (prompt log-probabilities; nothing is
generated: `max_tokens` 0 or 1 is accepted and the answer holds the prompt only). Chat requests that arrive together
are answered with one batched `generate` call (grouped by identical sampling settings), so several processes sharing
one local model get the batching speed-up too; the model runs one call at a time. Every request passes a validator
(`parse_request`, `parse_tokenize`, `parse_echo`) before it reaches the model, with bounds on its size and settings,
and a client that stalls mid-request is cut off after `READ_TIMEOUT` seconds: no request can stop the server.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from starec_env.agents.llm.interface import LLM, Sampling

MAX_BODY = 8 << 20  # bytes of one request
MAX_N = 64  # completions per request
MAX_TOKENS = 8192  # tokens per completion, and per prompt scored
MAX_PROMPTS = 64  # prompts per echo request
READ_TIMEOUT = 15.0  # seconds a client may take to send its request
ROLES = ("system", "user", "assistant")


class BadRequest(ValueError):
    """A request that passed its validator but cannot be answered as asked (too long once tokenized)."""


class MicroBatcher:
    """Collects requests for up to `wait` seconds (or `max_batch` chats), then runs them as one call."""

    def __init__(self, llm: LLM, max_batch: int = 32, wait: float = 0.02):
        self.llm, self.max_batch, self.wait = llm, max_batch, wait
        self.pending: queue.Queue = queue.Queue()
        self.model_lock = threading.Lock()  # one model call at a time: generation, tokenizing or scoring
        threading.Thread(target=self._loop, daemon=True).start()

    def run(self, call, *args):
        """A direct model call (tokenize, prompt log-probs) between batches."""
        with self.model_lock:
            return call(*args)

    def submit(self, chat, sampling: Sampling) -> Future:
        future: Future = Future()
        self.pending.put((chat, sampling, future))
        return future

    def _loop(self) -> None:
        while True:
            batch = [self.pending.get()]
            deadline = time.monotonic() + self.wait
            while len(batch) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                try:
                    batch.append(self.pending.get(timeout=left))
                except queue.Empty:
                    break
            groups: dict[Sampling, list] = {}
            for item in batch:
                groups.setdefault(item[1], []).append(item)
            for sampling, items in groups.items():
                try:
                    results = self.run(self.llm.generate, [chat for chat, _, _ in items], sampling)
                    for (_, _, future), completions in zip(items, results):
                        future.set_result(completions)
                except Exception as error:  # noqa: BLE001 - every waiting request must hear about it, and the
                    for _, _, future in items:  # loop lives on for the next batch
                        if not future.done():
                            future.set_exception(error)


def make_server(llm: LLM, host: str = "127.0.0.1", port: int = 8000, model_name: str = "starec",
                read_timeout: float = READ_TIMEOUT) -> ThreadingHTTPServer:
    batcher = MicroBatcher(llm)

    def chat(request) -> dict:
        messages, sampling = request
        return _response(batcher.submit(messages, sampling).result(), model_name, sampling)

    def tokenize(chat_or_text) -> dict:
        tokens = batcher.run(llm.tokenize, chat_or_text)
        return {"count": len(tokens), "tokens": tokens}

    def echo(prompts) -> dict:
        ids = [batcher.run(llm.tokenize, p) if isinstance(p, str) else p for p in prompts]
        if max(map(len, ids)) > MAX_TOKENS:
            raise BadRequest(f"a prompt holds at most {MAX_TOKENS} tokens")
        return _echo_response(prompts, ids, batcher.run(llm.prompt_logprobs, ids), model_name)

    routes = {"/v1/chat/completions": (parse_request, chat), "/v1/completions": (parse_echo, echo),
              "/tokenize": (parse_tokenize, tokenize)}

    class Handler(BaseHTTPRequestHandler):
        timeout = read_timeout  # per socket operation: a stalled client is dropped, its thread freed

        def log_message(self, *args):  # quiet: request lines would be noise in benchmarks
            pass

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                return self._send(200, {"object": "list", "data": [{"id": model_name, "object": "model"}]})
            self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            route = self.path.rstrip("/")
            if route not in routes:
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                return self._send(411, {"error": {"message": "a request needs a numeric Content-Length"}})
            if not 0 < length <= MAX_BODY:
                return self._send(413, {"error": {"message": f"a request body holds 1 to {MAX_BODY} bytes"}})
            try:
                raw = self.rfile.read(length)
            except TimeoutError:
                return self._send(408, {"error": {"message": f"request not received within {read_timeout:g} s"}})
            parse, answer = routes[route]
            try:
                request = parse(raw)
            except ValueError as error:
                return self._send(400, {"error": {"message": f"bad request: {error}"}})
            try:
                payload = answer(request)
            except BadRequest as error:
                return self._send(400, {"error": {"message": f"bad request: {error}"}})
            except Exception as error:  # noqa: BLE001 - reported to the client, not swallowed
                return self._send(500, {"error": {"message": f"{type(error).__name__}: {error}"}})
            self._send(200, payload)

        def handle_one_request(self):
            try:
                super().handle_one_request()
            except (TimeoutError, ConnectionError):  # a stalled or vanished client: drop it, keep serving
                self.close_connection = True

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return ThreadingHTTPServer((host, port), Handler)


def parse_request(raw: bytes) -> tuple[list[dict], Sampling]:
    """(messages, sampling) of a chat-completion request, or a ValueError that says what is wrong with it."""
    body = _object(raw)
    messages = _messages(body)
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or len(stop) > 8 or not all(isinstance(s, str) and s for s in stop):
        raise ValueError("stop must be a string or a list of at most 8 non-empty strings")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError("seed must be an integer or null")
    sampling = Sampling(max_tokens=_number(body, "max_tokens", int, 128, 1, MAX_TOKENS),
                        temperature=_number(body, "temperature", float, 0.0, 0.0, 2.0),
                        top_p=_number(body, "top_p", float, 1.0, 0.0, 1.0), n=_number(body, "n", int, 1, 1, MAX_N),
                        stop=tuple(stop), seed=seed, logprobs=body.get("logprobs") is True)
    return messages, sampling


def _messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in messages):
        raise ValueError(f"messages must be a non-empty list of {{role, content}} objects, role one of {ROLES} and "
                         "content a string")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _object(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"the body is not JSON ({error})") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def parse_tokenize(raw: bytes) -> list[dict] | str:
    """The chat (`messages`, rendered as the model's template ends it: generation prompt, or the continued final
    assistant message) or the text (`prompt`, no special tokens) of a /tokenize request."""
    body = _object(raw)
    if isinstance(body.get("prompt"), str) and "messages" not in body:
        return body["prompt"]
    if "messages" in body:
        return _messages(body)
    raise ValueError("a /tokenize request holds `messages` (a chat) or `prompt` (a string)")


def parse_echo(raw: bytes) -> list[str | list[int]]:
    """The prompts of a /v1/completions request for prompt log-probs: `echo` true, `max_tokens` 0 or 1, `prompt` a
    string, token ids, or a list of either."""
    body = _object(raw)
    if body.get("echo") is not True or _number(body, "max_tokens", int, 0, 0, MAX_TOKENS) > 1:
        raise ValueError("starec serve answers /v1/completions for prompt log-probs only: `echo`: true and "
                         "`max_tokens` 0 or 1; generate with /v1/chat/completions")
    _number(body, "logprobs", int, 0, 0, 5)
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) or _is_ids(prompt) else prompt
    if not isinstance(prompts, list) or not 0 < len(prompts) <= MAX_PROMPTS or not all(
            (isinstance(p, str) and p) or (_is_ids(p) and p) for p in prompts):
        raise ValueError(f"prompt must be a non-empty string, a list of token ids, or a list of 1 to {MAX_PROMPTS} "
                         "of either")
    return prompts


def _is_ids(value) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)


def _number(body: dict, key: str, kind: type, default, low, high):
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)) \
            or not low <= value <= high:
        raise ValueError(f"{key} must be {'an integer' if kind is int else 'a number'} in [{low}, {high}], "
                         f"got {value!r}")
    return kind(value)


def _response(completions, model_name: str, sampling: Sampling) -> dict:
    choices = []
    for index, completion in enumerate(completions):
        choice = {"index": index, "message": {"role": "assistant", "content": completion.text},
                  "finish_reason": completion.finish_reason}
        if sampling.logprobs and completion.token_logprobs is not None:
            choice["logprobs"] = {"content": [{"logprob": lp} for lp in completion.token_logprobs]}
        choices.append(choice)
    usage = {"prompt_tokens": completions[0].prompt_tokens if completions else 0,
             "completion_tokens": sum(c.completion_tokens for c in completions)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": model_name, "choices": choices, "usage": usage}




def _echo_response(prompts, ids, logprobs, model_name: str) -> dict:
    choices = [{"index": index, "text": prompt if isinstance(prompt, str) else "", "finish_reason": "length",
                "logprobs": {"tokens": None, "token_logprobs": scores, "text_offset": None, "top_logprobs": None}}
               for index, (prompt, scores) in enumerate(zip(prompts, logprobs))]
    tokens = sum(map(len, ids))
    return {"id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "text_completion", "created": int(time.time()),
            "model": model_name, "choices": choices,
            "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}}
