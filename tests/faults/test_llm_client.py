"""The `openai:` client against hostile servers on 127.0.0.1: the API key goes nowhere else and into no message."""

import http.server
import json
import socket
import threading
import time

import pytest

from starec_env.agents.llm import LLMError, Sampling, load_llm

KEY = "sk-test-0123456789abcdef"
CHAT = [{"role": "user", "content": "hi"}]


def serve(handler_class):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


class Recorder(http.server.BaseHTTPRequestHandler):
    """Remembers the headers of every request it gets."""

    seen: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        Recorder.seen.append(dict(self.headers))
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"choices": [{"message": {"content": "stolen"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def test_a_redirect_is_refused_and_the_key_never_reaches_its_target(key):
    elsewhere, target = serve(Recorder)

    class Redirecting(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.send_response(307)
            self.send_header("Location", f"{target}/chat/completions")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server, url = serve(Redirecting)
    Recorder.seen.clear()
    with pytest.raises(LLMError, match="redirects are not followed") as error:
        load_llm(f"openai:{url}#m", retries=0).generate([CHAT])
    assert Recorder.seen == [] and KEY not in str(error.value)
    server.shutdown(), elsewhere.shutdown()


def test_a_server_that_echoes_the_headers_gets_the_key_blanked_in_the_error(key):
    class Echo(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.dumps({"error": "bad", "headers": dict(self.headers)}).encode()
            self.send_response(400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server, url = serve(Echo)
    with pytest.raises(LLMError, match="HTTP 400") as error:
        load_llm(f"openai:{url}#m", retries=0).generate([CHAT])
    assert KEY not in str(error.value) and "Bearer ***" in str(error.value)
    server.shutdown()


@pytest.mark.parametrize("behaviour", ["drip", "hang", "cut"])
def test_slow_hanging_and_cut_off_servers_are_llm_errors_within_the_timeout(key, behaviour):
    class Bad(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            if behaviour == "hang":
                time.sleep(3)
                return
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(30 if behaviour == "drip" else 1):
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1 if behaviour == "drip" else 0)
            self.connection.shutdown(socket.SHUT_RDWR)

    server, url = serve(Bad)
    started = time.monotonic()
    with pytest.raises(LLMError, match="cannot reach") as error:
        load_llm(f"openai:{url}#m", retries=1, timeout=1.0, backoff=0.01).generate([CHAT], Sampling(max_tokens=4))
    assert time.monotonic() - started < 6 and KEY not in str(error.value)
    server.shutdown()
