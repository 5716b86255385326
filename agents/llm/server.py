"""`starec serve`: an OpenAI-compatible HTTP server in front of any backend, on 127.0.0.1 by default.

Requests that arrive together are answered with one batched `generate` call (grouped by identical sampling
settings), so several processes sharing one local model get the batching speed-up too.
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


class MicroBatcher:
    """Collects requests for up to `wait` seconds (or `max_batch` chats), then runs them as one call."""

    def __init__(self, llm: LLM, max_batch: int = 32, wait: float = 0.02):
        self.llm, self.max_batch, self.wait = llm, max_batch, wait
        self.pending: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, daemon=True).start()

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
                    results = self.llm.generate([chat for chat, _, _ in items], sampling)
                    for (_, _, future), completions in zip(items, results):
                        future.set_result(completions)
                except Exception as error:  # noqa: BLE001 - every waiting request must hear about it
                    for _, _, future in items:
                        future.set_exception(error)


def make_server(llm: LLM, host: str = "127.0.0.1", port: int = 8000, model_name: str = "starec") -> ThreadingHTTPServer:
    batcher = MicroBatcher(llm)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet: request lines would be noise in benchmarks
            pass

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                return self._send(200, {"object": "list", "data": [{"id": model_name, "object": "model"}]})
            self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                messages, sampling = body["messages"], _sampling(body)
                if not isinstance(messages, list) or not all("role" in m and "content" in m for m in messages):
                    raise ValueError("messages must be a list of {role, content} objects")
            except (KeyError, ValueError, TypeError) as error:
                return self._send(400, {"error": {"message": f"bad request: {error}"}})
            try:
                completions = batcher.submit(messages, sampling).result()
            except Exception as error:  # noqa: BLE001 - reported to the client, not swallowed
                return self._send(500, {"error": {"message": f"{type(error).__name__}: {error}"}})
            self._send(200, _response(completions, model_name, sampling))

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return ThreadingHTTPServer((host, port), Handler)


def _sampling(body: dict) -> Sampling:
    stop = body.get("stop") or ()
    return Sampling(max_tokens=int(body.get("max_tokens") or 128), temperature=float(body.get("temperature", 0.0)),
                    top_p=float(body.get("top_p", 1.0)), n=int(body.get("n", 1)),
                    stop=(stop,) if isinstance(stop, str) else tuple(stop), seed=body.get("seed"),
                    logprobs=bool(body.get("logprobs", False)))


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


