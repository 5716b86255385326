"""Any OpenAI-compatible `/v1/chat/completions` server (vLLM serve, SGLang, Ollama, `starec serve`, hosted APIs).

Chats are sent concurrently; connection failures, timeouts, cut-off answers, 429 and 5xx are retried with exponential
backoff, and `timeout` bounds each whole request (a server that drips its answer is cut off at it). The API key comes
only from the environment, is sent only to the configured URL (redirects are refused, never followed with it) and
appears in no message, log or repr: text a server sends back is shown with the key blanked out.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from starec_env.agents.llm.interface import LLM, Chat, Completion, LLMError, Sampling, refuse_labels

RETRYABLE = {408, 429, 500, 502, 503, 504}


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise LLMError(f"{req.full_url} answered HTTP {code} redirecting to {newurl!r}; redirects are not followed, "
                       "so the API key goes nowhere but the configured URL: configure the final URL instead")


_OPENER = urllib.request.build_opener(_RefuseRedirects)


class OpenAILLM(LLM):
    def __init__(self, target: str, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 8,
                 timeout: float = 120.0, retries: int = 3, backoff: float = 0.5):
        base, _, self.model = target.partition("#")
        if not base.startswith(("http://", "https://")) or not self.model:
            raise LLMError(f"openai spec must look like openai:http://HOST:PORT/v1#MODEL, got openai:{target}")
        self.spec = f"openai:{target}"
        self.url = base.rstrip("/") + "/chat/completions"
        self._api_key = os.environ.get(api_key_env)
        self.concurrency, self.timeout, self.retries, self.backoff = concurrency, timeout, retries, backoff

    def _generate(self, chats: Sequence[Chat], sampling: Sampling) -> list[list[Completion]]:
        refuse_labels(self, sampling)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda chat: self._complete(chat, sampling), chats))

    def _complete(self, chat: Chat, sampling: Sampling) -> list[Completion]:
        body = {"model": self.model, "messages": chat, "max_tokens": sampling.max_tokens,
                "temperature": sampling.temperature, "top_p": sampling.top_p, "n": sampling.n,
                "seed": sampling.seed, "stop": list(sampling.stop) or None, "logprobs": sampling.logprobs}
        if chat and chat[-1]["role"] == "assistant":  # a prefill: vLLM's and `starec serve`'s way to continue it
            body.update(continue_final_message=True, add_generation_prompt=False)
        return self._parse(self._post(body))

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        for attempt in range(self.retries + 1):
            try:
                raw = self._fetch(request)
                break
            except urllib.error.HTTPError as error:
                if error.code not in RETRYABLE or attempt == self.retries:
                    detail = self._redact(error.read()[:8192].decode(errors="replace"))[:300]  # blank, then cut
                    raise LLMError(f"{self.url} answered HTTP {error.code}: {detail}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
                if attempt == self.retries:
                    reason = self._redact(str(getattr(error, "reason", None) or type(error).__name__))
                    raise LLMError(f"cannot reach {self.url} after {self.retries + 1} attempts: {reason}") from None
            time.sleep(self.backoff * 2**attempt)
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            shown = self._redact(raw[:8192].decode(errors="replace"))[:200]
            raise LLMError(f"{self.url} answered with something that is not JSON: {shown!r}") from None

    def _fetch(self, request: urllib.request.Request) -> bytes:
        """The whole answer within `timeout` seconds of asking, however slowly the server sends it."""
        deadline = time.monotonic() + self.timeout
        with _OPENER.open(request, timeout=self.timeout) as response:
            blocks = []
            while block := response.read1(1 << 16):
                blocks.append(block)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"answer not complete after {self.timeout:g} s")
            if response.length:  # the connection closed before the announced Content-Length arrived
                raise http.client.IncompleteRead(b"".join(blocks), response.length)
        return b"".join(blocks)

    def _redact(self, text: str) -> str:
        """Server text with the API key blanked out (a server that echoes request headers must not leak it)."""
        return text.replace(self._api_key, "***") if self._api_key else text

    def _parse(self, payload: dict) -> list[Completion]:
        try:
            usage = payload.get("usage") or {}
            choices = payload["choices"]
            share = max(len(choices), 1)
            return [Completion(text=(choice["message"]["content"] or "").strip(),
                               prompt_tokens=int(usage.get("prompt_tokens", 0)),
                               completion_tokens=int(usage.get("completion_tokens", 0)) // share,
                               finish_reason=choice.get("finish_reason") or "stop",
                               token_logprobs=_logprobs(choice))
                    for choice in choices]
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise LLMError(f"{self.url} answered JSON that is not an OpenAI chat completion "
                           f"({type(error).__name__}: {error}): {self._redact(json.dumps(payload))[:200]}") from None


def _logprobs(choice: dict) -> list[float] | None:
    content = (choice.get("logprobs") or {}).get("content")
    return [float(token["logprob"]) for token in content] if content else None
