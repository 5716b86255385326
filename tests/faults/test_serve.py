"""`starec serve` under malformed and stalled requests from a bounded client loop on 127.0.0.1: it keeps answering."""

import http.client
import json
import socket
import threading

import pytest

from starec_env.agents.llm import LLM, Completion
from starec_env.agents.llm.server import MAX_BODY, make_server

VALID = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
MALFORMED = [
    {"messages": [{"role": "user", "content": "hi"}], "stop": [["a"]]},  # once killed the batching thread
    {"messages": ["rolecontent"]}, {"messages": []}, {"messages": [{"role": "robot", "content": "hi"}]},
    {"messages": [{"role": "user", "content": 3}]}, {**VALID, "n": 10**6}, {**VALID, "max_tokens": -1},
    {**VALID, "max_tokens": 10**9}, {**VALID, "temperature": "hot"}, {**VALID, "seed": "x"}, {**VALID, "n": True},
    {**VALID, "stop": ["x"] * 100}, [1, 2, 3], "just a string",
]


class Echo(LLM):
    """Answers with the last message (a stand-in backend: the server around it is under test)."""

    spec = "echo"

    def _generate(self, chats, sampling):
        return [[Completion(chat[-1]["content"], 1, 1, "stop")] * sampling.n for chat in chats]


@pytest.fixture(scope="module")
def port():
    server = make_server(Echo(), port=0, read_timeout=0.5)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def post(port, body: bytes, headers=None, path="/v1/chat/completions"):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", path, body, headers or {"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_malformed_requests_get_a_400_and_the_server_keeps_answering(port):
    for round_ in range(3):  # bounded: 3 × the malformed set, each followed by a valid request
        for body in MALFORMED:
            status, answer = post(port, json.dumps(body).encode())
            assert status == 400 and "bad request" in answer["error"]["message"], body
            status, answer = post(port, json.dumps(VALID).encode())
            assert status == 200 and answer["choices"][0]["message"]["content"] == "hi"
    assert post(port, b"{not json")[0] == 400


SCORING_MALFORMED = [
    ("/tokenize", {}), ("/tokenize", {"prompt": 3}), ("/tokenize", {"messages": ["rolecontent"]}),
    ("/v1/completions", {"prompt": "hi"}), ("/v1/completions", {"prompt": "hi", "echo": True, "max_tokens": 9}),
    ("/v1/completions", {"prompt": [], "echo": True}), ("/v1/completions", {"prompt": [[-1, 2]], "echo": True}),
    ("/v1/completions", {"prompt": [[1, True]], "echo": True}), ("/v1/completions", {"prompt": [[]], "echo": True}),
    ("/v1/completions", {"prompt": [[1]] * 65, "echo": True}),
    ("/v1/completions", {"prompt": "hi", "echo": True, "logprobs": 99}),
]


def test_malformed_scoring_requests_get_a_400_and_the_server_keeps_answering(port):
    for route, body in SCORING_MALFORMED:
        status, answer = post(port, json.dumps(body).encode(), path=route)
        assert status == 400 and "bad request" in answer["error"]["message"], (route, body)
        assert post(port, json.dumps(VALID).encode())[0] == 200
    status, answer = post(port, json.dumps({"prompt": "hi", "echo": True}).encode(), path="/v1/completions")
    assert status == 500 and "cannot" in answer["error"]["message"]  # a backend that cannot score says so


def test_size_limits_and_stalled_clients_do_not_hold_the_server(port):
    status, _ = post(port, b"{}", {"Content-Length": str(MAX_BODY + 1)})
    assert status == 413
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")  # 99 bytes short
    assert post(port, json.dumps(VALID).encode())[0] == 200  # answered while the stalled client waits
    stalled.settimeout(10)
    assert stalled.recv(100).startswith(b"HTTP/1.0 408")  # and the stalled one is cut off, its thread freed
    stalled.close()
