"""Malformed and hostile requests: each gets a 4xx with a JSON reason, streaming or not.

Never a 500, a hang or a crash: after the whole battery the server still answers /health and
serves a normal request. Every case is sent twice, as a plain request and as a streaming one
(`"stream": true` in the body where it has one, and `Accept: text/event-stream`). The rules
themselves are listed in agent_server/runtime/request_guard.py.
"""

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.agent_process import (
    BODY_TIMEOUT_SECONDS,
    AgentProcess,
    DeployedApp,
    reached_the_agent,
    stream_reached_the_agent,
)
from tests.support import read_sse, user_request

MAX_BODY_BYTES = 4 * 1024 * 1024
JSON = {"content-type": "application/json"}
HELLO = {"role": "user", "content": "hello"}


@pytest.fixture
def guarded(reliability_server: AgentProcess) -> AgentProcess:
    """The server, with a body timeout of BODY_TIMEOUT_SECONDS."""
    return reliability_server


def body(fields: dict, stream: bool) -> bytes:
    """A JSON object body; the streaming variant asks for a stream."""
    return json.dumps({**fields, "stream": True} if stream else fields).encode()


def raw(text: str) -> Callable[[bool], bytes]:
    """A body given as text; `{stream}` is replaced by `"stream": true, ` in the streaming one."""
    return lambda stream: text.replace("{stream}", '"stream": true, ' if stream else "").encode()


def fields(**values: object) -> Callable[[bool], bytes]:
    return lambda stream: body(values, stream)


@dataclass(frozen=True)
class Case:
    id: str
    make_body: Callable[[bool], bytes]
    status: int
    reason: str  # a piece of the "detail" that says what is wrong
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))


def _nested(depth: int) -> Callable[[bool], bytes]:
    return raw(
        '{{stream}"input": [{"role": "user", "content": "hi"}], "custom_inputs": {"a": '
        + "[" * depth
        + "]" * depth
        + "}}"
    )


CASES = [
    Case(
        "truncated-json",
        raw('{{stream}"input": [{"role": "user", "content": "hi"'),
        400,
        "Invalid JSON",
    ),
    Case("json-array", raw('[{{stream}"input": []}]'), 400, "not an array"),
    Case("json-string", raw('"hello"'), 400, "not a string"),
    Case("json-number", raw("42"), 400, "not a number"),
    Case("json-null", raw("null"), 400, "not null"),
    Case("empty-body", raw(""), 400, "empty"),
    Case("whitespace-body", raw("  \n "), 400, "empty"),
    Case("missing-input", fields(custom_inputs={}), 400, "no 'input'"),
    Case("empty-input", fields(input=[]), 400, "'input' is empty"),
    Case("input-string", fields(input="hello"), 400, "'input' must be a list"),
    Case("input-number", fields(input=5), 400, "'input' must be a list"),
    Case("input-item-string", fields(input=["hello"]), 400, "'input[0]' must be a message"),
    Case("unknown-role", fields(input=[{"role": "robot", "content": "hi"}]), 400, "robot"),
    Case("missing-content", fields(input=[{"role": "user"}]), 400, "Invalid parameters"),
    Case("unknown-item-type", fields(input=[{"type": "bogus"}]), 400, "Invalid parameters"),
    Case(
        "unknown-content-part",
        fields(input=[{"role": "user", "content": [{"type": "bogus", "text": "x"}]}]),
        400,
        "bogus",
    ),
    Case(
        "chat-style-unknown-role",
        fields(messages=[{"role": "robot", "content": "hi"}]),
        400,
        "robot",
    ),
    Case(
        "stream-string",
        raw('{"stream": "yes", "input": [{"role": "user", "content": "x"}]}'),
        400,
        "'stream' must be true or false",
    ),
    Case(
        "stream-number",
        raw('{"stream": 1, "input": [{"role": "user", "content": "x"}]}'),
        400,
        "'stream' must be true or false",
    ),
    Case(
        "custom-inputs-list",
        fields(input=[HELLO], custom_inputs=[]),
        400,
        "'custom_inputs' must be an object",
    ),
    Case("context-string", fields(input=[HELLO], context="me"), 400, "'context' must be an object"),
    Case("temperature-string", fields(input=[HELLO], temperature="hot"), 400, "Invalid parameters"),
    Case(
        "nan-literal",
        raw('{{stream}"input": [], "temperature": NaN}'),
        400,
        "NaN is not a JSON number",
    ),
    Case(
        "infinity-literal",
        raw('{{stream}"input": [], "temperature": -Infinity}'),
        400,
        "-Infinity is not a JSON number",
    ),
    Case("float-overflow", raw('{{stream}"input": [], "temperature": 1e999}'), 400, "too large"),
    Case(
        "huge-integer",
        raw('{{stream}"input": [], "temperature": 1' + "0" * 5000 + "}"),
        400,
        "Invalid JSON",
    ),
    Case(
        "duplicate-key",
        raw('{{stream}"input": [{"role": "user", "content": "a"}], "input": []}'),
        400,
        "appears twice",
    ),
    Case(
        "escaped-nul", fields(input=[{"role": "user", "content": "a\u0000b"}]), 400, "NUL character"
    ),
    Case(
        "raw-nul-byte",
        raw('{{stream}"input": [{"role": "user", "content": "a\0b"}]}'),
        400,
        "Invalid JSON",
    ),
    Case(
        "lone-surrogate",
        raw('{{stream}"input": [{"role": "user", "content": "\\ud800"}]}'),
        400,
        "unpaired UTF-16 surrogate",
    ),
    Case(
        "invalid-utf8",
        lambda stream: (
            raw('{{stream}"input": [{"role": "user", "content": "')(stream) + b"\xff\xfe" + b'"}]}'
        ),
        400,
        "not UTF-8",
    ),
    Case(
        "utf8-bom",
        lambda stream: b"\xef\xbb\xbf" + body({"input": [HELLO]}, stream),
        400,
        "Invalid JSON",
    ),
    Case("nested-100000", raw("[" * 100_000 + "]" * 100_000), 400, "nested too deeply"),
    Case("nested-40-in-custom-inputs", _nested(40), 400, "nested too deeply"),
    Case(
        "huge-body",
        fields(input=[HELLO], padding="x" * (MAX_BODY_BYTES + 1)),
        413,
        "AGENT_MAX_BODY_BYTES",
    ),
    Case(
        "huge-string-field",
        fields(input=[{"role": "user", "content": "y" * (MAX_BODY_BYTES + 10)}]),
        413,
        "AGENT_MAX_BODY_BYTES",
    ),
    Case(
        "text-plain", fields(input=[HELLO]), 415, "application/json", {"content-type": "text/plain"}
    ),
    Case(
        "form-encoded",
        raw("input=hello"),
        415,
        "application/json",
        {"content-type": "application/x-www-form-urlencoded"},
    ),
    Case(
        "gzip-encoded",
        fields(input=[HELLO]),
        415,
        "Content-Encoding",
        {**JSON, "content-encoding": "gzip"},
    ),
]


def _send(server: AgentProcess, case: Case, stream: bool, path: str) -> httpx.Response:
    headers = {**case.headers, **({"accept": "text/event-stream"} if stream else {})}
    with httpx.Client(timeout=30) as http:
        return http.post(f"{server.url}{path}", content=case.make_body(stream), headers=headers)


def test_there_are_at_least_twenty_cases() -> None:
    assert len({case.id for case in CASES}) == len(CASES) >= 20


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streaming"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_hostile_request_gets_a_4xx_with_a_reason(
    guarded: AgentProcess, case: Case, stream: bool
) -> None:
    response = _send(guarded, case, stream, "/invocations")
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, str) and case.reason in detail, detail


@pytest.mark.parametrize("case", [c for c in CASES if c.id in ("json-array", "nan-literal")])
def test_the_responses_route_is_guarded_too(guarded: AgentProcess, case: Case) -> None:
    response = _send(guarded, case, True, "/responses")
    assert response.status_code == case.status
    assert case.reason in response.json()["detail"]


def test_chunked_body_over_the_limit_is_413(guarded: AgentProcess) -> None:
    """No Content-Length to go by: the guard counts the bytes as they arrive."""

    def chunks() -> Iterator[bytes]:
        yield b'{"input": [{"role": "user", "content": "'
        for _ in range(5):
            yield b"z" * (1024 * 1024)
        yield b'"}]}'

    with httpx.Client(timeout=30) as http:
        response = http.post(f"{guarded.url}/invocations", content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert "AGENT_MAX_BODY_BYTES" in response.json()["detail"]


def _raw_http(url: str, data: bytes) -> bytes:
    """Send `data` on a plain socket and read until the server closes the connection (a
    socket timeout, far longer than the server's body timeout, fails the test instead)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=BODY_TIMEOUT_SECONDS * 10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streaming"])
@pytest.mark.parametrize("sent", [0, 10], ids=["headers-only", "part-of-the-body"])
def test_a_body_that_never_arrives_is_408(guarded: AgentProcess, stream: bool, sent: int) -> None:
    """Headers announce 200 bytes, then nothing (or 10 bytes) comes: 408 after the timeout,
    and the server closes the connection (the socket read ends instead of hanging)."""
    content = body({"input": [HELLO]}, stream)
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(content) + 200).encode() + b"\r\n\r\n"
    )
    started = time.monotonic()
    answer = _raw_http(guarded.url, head + content[:sent])  # returns once the server closes
    waited = time.monotonic() - started
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout", answer[:200]
    assert b"AGENT_BODY_TIMEOUT_SECONDS" in rest
    assert waited >= BODY_TIMEOUT_SECONDS  # answered because of the timeout, not before


def test_an_idle_keep_alive_connection_outlives_uvicorns_default(guarded: AgentProcess) -> None:
    """Clients reuse idle connections. uvicorn closes them after 5 s by default, and a request
    sent just then fails with a read error (the reference app lost 3-9 of 384 requests so under
    load). Here a connection idle for longer still serves the next request."""
    host, port = guarded.url.removeprefix("http://").split(":")
    request = f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        for attempt in range(2):
            if attempt:
                time.sleep(6)  # idle, longer than uvicorn's default keep-alive of 5 s
            sock.sendall(request)
            answer = b""
            while not answer.endswith(b'{"status":"healthy"}'):
                chunk = sock.recv(65536)
                assert chunk, "the server closed the idle connection"
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 OK")


def test_unknown_keys_are_accepted_on_purpose(guarded: AgentProcess) -> None:
    """Unknown top-level keys are ignored (as by mlflow); custom_inputs belongs to the agent,
    which alone knows what it reads there, so any keys in it are accepted too."""
    request = user_request(
        "hello there", custom_inputs={"anything": {"nested": [1, 2]}, "x-y": None}, extra=1
    )
    with httpx.Client(timeout=60) as http:
        response = http.post(f"{guarded.url}/invocations", json=request)
        assert reached_the_agent(response), response.text
        streaming = {**request, "stream": True}
        with http.stream("POST", f"{guarded.url}/invocations", json=streaming) as answer:
            assert answer.status_code == 200
            events = read_sse(answer)
    assert stream_reached_the_agent(events), events


def test_long_string_under_the_limit_is_served(guarded: AgentProcess) -> None:
    text = "word " * 50_000  # 250 kB of text, far under the 4 MiB limit
    with httpx.Client(timeout=120) as http:
        response = http.post(f"{guarded.url}/invocations", json=user_request(text))
    assert reached_the_agent(response), response.text[:500]


def test_get_on_the_agent_route_is_405_with_json(guarded: AgentProcess) -> None:
    response = httpx.get(f"{guarded.url}/invocations", timeout=30)
    assert response.status_code == 405
    assert response.json()["detail"]


@pytest.mark.parametrize("streaming", [False, True], ids=["invoke", "stream"])
def test_deployed_a_user_id_that_is_not_the_signed_in_user_is_refused(
    deployed_app: DeployedApp, streaming: bool
) -> None:
    """On Databricks Apps (DATABRICKS_APP_NAME set) the proxy's headers say who the user is."""
    ada = {
        "X-Forwarded-Email": "ada@example.com",
        "X-Forwarded-User": "4242",
        "X-Forwarded-Access-Token": "user-token-of-ada",
    }
    server = deployed_app.server
    with httpx.Client(timeout=60) as http:
        url = f"{server.url}/invocations"
        spoofed = [
            {"custom_inputs": {"user_id": "bob@example.com"}},
            {"context": {"conversation_id": "c1", "user_id": "bob@example.com"}},
        ]
        for extra in spoofed:
            body = {**user_request("hello"), **extra, "stream": streaming}
            response = http.post(url, json=body, headers=ada)
            assert response.status_code == 403, response.text
            assert "is not the signed-in user" in response.json()["detail"]
        # No user in the proxy's headers: a user_id cannot be checked, so it is refused; without
        # one the request is served (as nobody).
        nobody = {"X-Forwarded-Access-Token": ada["X-Forwarded-Access-Token"]}
        for extra in spoofed:
            body = {**user_request("hello"), **extra, "stream": streaming}
            unchecked = http.post(url, json=body, headers=nobody)
            assert unchecked.status_code == 403, unchecked.text
            assert "cannot be checked" in unchecked.json()["detail"]
        anonymous = {**user_request("hello"), "stream": streaming}
        if streaming:
            with http.stream("POST", url, json=anonymous, headers=nobody) as answer:
                assert answer.status_code == 200
                assert stream_reached_the_agent(read_sse(answer))
        else:
            assert reached_the_agent(http.post(url, json=anonymous, headers=nobody))
        own = {**user_request("hello"), "custom_inputs": {"user_id": "4242"}}
        if streaming:
            with http.stream("POST", url, json={**own, "stream": True}, headers=ada) as answer:
                assert answer.status_code == 200
                assert stream_reached_the_agent(read_sse(answer))
        else:
            assert reached_the_agent(http.post(url, json=own, headers=ada))


def test_server_still_serves_after_the_battery(guarded: AgentProcess) -> None:
    """Runs last in this module (pytest keeps file order): nothing above broke the server."""
    for case in CASES:
        _send(guarded, case, False, "/invocations")
    with httpx.Client(timeout=60) as http:
        assert http.get(f"{guarded.url}/health").status_code == 200
        response = http.post(f"{guarded.url}/invocations", json=user_request("still there?"))
    assert reached_the_agent(response), response.text
    assert guarded.process.poll() is None
    answered_500 = re.findall(r'"[A-Z]+ /(?:invocations|responses)[^"]*" 500', guarded.log())
    assert not answered_500, answered_500
