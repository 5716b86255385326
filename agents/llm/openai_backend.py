"""Any OpenAI-compatible server (vLLM serve, SGLang, Ollama, `starec serve`, hosted APIs): chats go to
`/v1/chat/completions`; likelihood scoring asks the server's `/tokenize` for a chat's tokens (as vLLM and `starec
serve` offer it) and `/v1/completions` for their log-probabilities (`echo` + `logprobs`), so a served model scores
options exactly as the `hf:` backend does in process.

Chats are sent concurrently; connection failures, timeouts, cut-off answers, 429 and 5xx are retried with exponential
backoff, and `timeout` bounds each whole request (a server that drips its answer is cut off at it). The API key comes
only from the environment, is sent only to the configured server (redirects are refused, never followed with it) and
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
        base = base.rstrip("/")
        self.url = base + "/chat/completions"
        self.completions_url = base + "/completions"
        self.tokenize_url = base.removesuffix("/v1") + "/tokenize"  # vLLM serves it beside /v1, not under it
        self._api_key = os.environ.get(api_key_env)
        self._option_ids: dict[str, list[int]] = {}  # option text → its tokens: catalogue titles recur
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
        return self._parse(self._post(self.url, body))

    def score_continuations(self, chats: Sequence[Chat], options: Sequence[Sequence[str]]) -> list[list[float]]:
        """The chat's tokens from the server, each option's tokens after them, their log-probabilities echoed back
        by one completions request per chat; the mean over the option's tokens, as the hf: backend computes it."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            scored = list(pool.map(lambda pair: self._score(*pair), zip(chats, options)))
        self.tokens["scored"] += sum(tokens for _, tokens in scored)
        return [scores for scores, _ in scored]

    def tokenize(self, chat_or_text: Chat | str) -> list[int]:
        if isinstance(chat_or_text, str):
            body = {"model": self.model, "prompt": chat_or_text, "add_special_tokens": False}
        else:
            prefill = bool(chat_or_text) and chat_or_text[-1]["role"] == "assistant"
            body = {"model": self.model, "messages": chat_or_text, "add_special_tokens": False,
                    "continue_final_message": prefill, "add_generation_prompt": not prefill}
        try:
            tokens = self._post(self.tokenize_url, body)["tokens"]
        except (LLMError, KeyError, TypeError) as error:
            raise LLMError(f"{self.tokenize_url} gave no tokens ({error}): scoring through a server needs its "
                           "/tokenize (vLLM and `starec serve` have one)") from None
        return [int(token) for token in tokens]

    def _score(self, chat: Chat, texts: Sequence[str]) -> tuple[list[float], int]:
        prefix = self.tokenize(chat)
        ids = [self._option_tokens(text) for text in texts]
        payload = self._post(self.completions_url, {
            "model": self.model, "prompt": [prefix + option for option in ids], "echo": True, "logprobs": 1,
            "max_tokens": 1, "temperature": 0.0})
        try:
            choices = sorted(payload["choices"], key=lambda choice: choice["index"])
            echoed = [choice["logprobs"]["token_logprobs"][len(prefix): len(prefix) + len(option)]
                      for choice, option in zip(choices, ids)]
            scores = [sum(map(float, logprobs)) / len(option) for logprobs, option in zip(echoed, ids)]
        except (KeyError, TypeError, ValueError) as error:
            raise LLMError(f"{self.completions_url} did not echo prompt log-probs ({type(error).__name__}: "
                           f"{error}); scoring needs `echo` + `logprobs` on /v1/completions (vLLM and `starec "
                           "serve` have them)") from None
        if len(scores) != len(ids) or any(len(lp) != len(o) for lp, o in zip(echoed, ids)):
            raise LLMError(f"{self.completions_url} echoed {len(scores)} prompts' log-probs for {len(ids)} asked, "
                           "or fewer tokens than sent")
        return scores, len(prefix) + sum(map(len, ids))

    def _option_tokens(self, text: str) -> list[int]:
        if text not in self._option_ids:
            tokens = self.tokenize(text)
            if not tokens:
                raise LLMError(f"option {text!r} has no tokens to score")
            self._option_ids[text] = tokens
        return self._option_ids[text]

    def _post(self, url: str, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
        for attempt in range(self.retries + 1):
            try:
                raw = self._fetch(request)
                break
            except urllib.error.HTTPError as error:
                if error.code not in RETRYABLE or attempt == self.retries:
                    detail = self._redact(error.read()[:8192].decode(errors="replace"))[:300]  # blank, then cut
                    raise LLMError(f"{url} answered HTTP {error.code}: {detail}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
                if attempt == self.retries:
                    reason = self._redact(str(getattr(error, "reason", None) or type(error).__name__))
                    raise LLMError(f"cannot reach {url} after {self.retries + 1} attempts: {reason}") from None
            time.sleep(self.backoff * 2**attempt)
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            shown = self._redact(raw[:8192].decode(errors="replace"))[:200]
            raise LLMError(f"{url} answered with something that is not JSON: {shown!r}") from None

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
