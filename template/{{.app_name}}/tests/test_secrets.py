"""No token ever leaves the server: not in a log line, an error body, a trace, or a file.

The reliability server (tests/agent_process.py) runs with a recognisable canary as its
Databricks token, and the requests below carry canary user tokens in the
`x-forwarded-access-token` header that Databricks Apps adds. After the traffic (and every other
test that used that server) the log, the answers, the trace store and the project tree are
searched for the canaries. The server runs with LOG_LEVEL=DEBUG, so every library logs all it
can.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.agent_process import CANARY_TOKEN, AgentProcess
from tests.fake_workspace import FakeWorkspace
from tests.support import PROJECT_ROOT, read_sse, start_server_calls, user_request, wait_for_trace

CANARY = "SECRET-canary"  # in every canary below; no legitimate text contains it
OBO_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvYm8ifQ.SECRET-canary-obo-signature"
OBO_PLAIN = "obo-SECRET-canary-not-shaped-like-any-token"
SECRET_HEADERS = [
    {"x-forwarded-access-token": OBO_JWT},
    {"x-forwarded-access-token": OBO_PLAIN},
    {"authorization": f"Bearer {CANARY_TOKEN}"},
]


def _traffic(server: AgentProcess, fake: FakeWorkspace) -> tuple[list[str], list[str]]:
    """Requests that go through every path that writes: answers, streams, traces, 4xx from the
    guard and from mlflow's validation, LLM failures. Returns the answers' bodies and the ids
    of the traces of the answers that succeeded."""
    bodies: list[str] = []
    trace_ids: list[str] = []
    url = f"{server.url}/invocations"
    with httpx.Client(timeout=120) as http:
        for secret in SECRET_HEADERS:
            headers = {**secret, "x-mlflow-return-trace-id": "true"}
            answer = http.post(url, json=user_request("hello"), headers=headers)
            bodies.append(answer.text)
            if answer.status_code == 200:
                trace_ids.append(answer.json()["metadata"]["trace_id"])
            request = {**user_request("stream please"), "stream": True}
            with http.stream("POST", url, json=request, headers=headers) as response:
                events = read_sse(response)
            bodies.append(json.dumps(events))
            trace_ids += [e["trace_id"] for e in events[:-1] if "trace_id" in e]
            # mlflow's validation error quotes the bad value; the guard redacts it.
            bad = {**user_request("x"), "temperature": CANARY_TOKEN}
            answer = http.post(url, json=bad, headers=headers)
            assert answer.status_code == 400
            bodies.append(answer.text)
            bodies.append(http.post(url, content=b"[1]", headers=headers).text)
        # LLM failures, for an agent that calls the LLM: an error status, then a rejected token.
        for settings in (
            {"faults": [{"kind": "status", "status": 500, "times": None}]},
            {"token": "dapi-another-token-entirely"},
        ):
            fake.configure(**settings)
            try:
                bodies.append(http.post(url, json=user_request("fail"), headers=headers).text)
                with http.stream("POST", url, json={**user_request("fail"), "stream": True}) as r:
                    bodies.append(json.dumps(read_sse(r)))
            finally:
                fake.configure(faults=[], token=CANARY_TOKEN)
    return bodies, trace_ids


def _wait_for_traces(tracking_db: Path, trace_ids: list[str]) -> None:
    """Traces are exported in the background: wait until those of `trace_ids` are all stored."""
    deadline = time.monotonic() + 60  # for all of them together
    for trace_id in trace_ids:
        wait_for_trace(tracking_db, trace_id, timeout=deadline - time.monotonic())


def _files_written_since(root: Path, since: float) -> list[Path]:
    """Files under `root` created or changed since `since`, and any .env, outside the venv."""
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root).parts
        if not path.is_file() or relative[0] == ".venv" or path.suffix == ".pyc":
            continue
        try:
            if path.name.startswith(".env") or path.stat().st_mtime >= since:
                found.append(path)
        except FileNotFoundError:  # a transient file, gone since rglob listed it
            continue
    return found


def _text_of(path: Path) -> str:
    """The file's text, or "" when it vanished meanwhile (sqlite's transient -journal files)."""
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _leaks(text: str) -> list[str]:
    return [canary for canary in (CANARY, OBO_JWT, OBO_PLAIN) if canary in text]


def test_no_secret_in_answers_logs_traces_or_files(
    reliability_server: AgentProcess, canary_fake: FakeWorkspace
) -> None:
    since = reliability_server.log_path.stat().st_ctime - 1
    bodies, trace_ids = _traffic(reliability_server, canary_fake)

    for body in bodies:
        assert not _leaks(body), body
    assert not _leaks(reliability_server.log()), [
        line for line in reliability_server.log().splitlines() if _leaks(line)
    ][:5]

    # The trace store: the sqlite database and anything next to it.
    assert reliability_server.tracking_db is not None
    _wait_for_traces(reliability_server.tracking_db, trace_ids)
    store = [p for p in reliability_server.tracking_db.parent.rglob("*") if p.is_file()]
    assert reliability_server.tracking_db in store
    files = store + _files_written_since(PROJECT_ROOT, since)
    leaking = [str(p) for p in files if _leaks(_text_of(p))]
    assert not leaking


def test_redaction_catches_secret_values_and_token_shapes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent_server.runtime import redaction

    monkeypatch.setenv("MY_SERVICE_PASSWORD", "hunter2-but-longer")
    redaction.forget_secret_values()
    try:
        text = (
            f"pat {CANARY_TOKEN} jwt {OBO_JWT} header 'Authorization: Bearer abc.def' "
            "oauth dose0123456789abcdef password hunter2-but-longer, not secret: hello"
        )
        clean = redaction.redact(text)
    finally:
        redaction.forget_secret_values()
    assert "SECRET" not in clean and "abc.def" not in clean and "dose01" not in clean
    assert "hunter2" not in clean
    assert clean.endswith("not secret: hello")


def test_log_lines_are_redacted_whatever_the_logger() -> None:
    """In a fresh interpreter: install the redaction, log a token every way logging allows."""
    script = f"""
import logging, sys
from agent_server.runtime.redaction import install_log_redaction
install_log_redaction()
logging.basicConfig(stream=sys.stdout, level=logging.DEBUG, format="%(name)s %(message)s")
token = {CANARY_TOKEN!r}
logging.getLogger("plain").info("token %s", token)
logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "1.2.3.4", "GET",
                                          "/x?t=" + token, "1.1", 200)
try:
    raise ValueError("bad token " + token)
except ValueError:
    logging.getLogger("exc").exception("failed")
logging.getLogger("stack").info("here %s", token, stack_info=True)
"""
    env = {**os.environ, "AGENT_ENV_FILE": os.devnull}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "plain token [REDACTED]" in output
    assert '"GET /x?t=[REDACTED] HTTP/1.1" 200' in output
    assert "ValueError: bad token [REDACTED]" in output
    assert CANARY not in output


def test_agent_errors_never_carry_a_secret() -> None:
    from agent_server.runtime.errors import UpstreamError, public_error

    assert CANARY not in str(UpstreamError(f"failed with {CANARY_TOKEN}"))
    assert CANARY not in str(public_error(RuntimeError(f"Bearer {CANARY_TOKEN}")))


def test_binds_localhost_locally_and_the_platform_port_on_apps() -> None:
    """What start-server hands to uvicorn (uvicorn.run replaced by a print), without and with
    the DATABRICKS_APP_PORT that Databricks Apps sets."""
    script = (
        "import json, os, uvicorn\n"
        "uvicorn.run = lambda app, **kwargs: print(json.dumps(kwargs))\n"
        "from agent_server import start_server\n"
        "start_server.main([])\n"
        "os.environ['DATABRICKS_APP_PORT'] = '8123'\n"
        "start_server.main([])\n"
    )
    local, on_apps = start_server_calls(script, 2)
    assert (local["host"], local["port"]) == ("127.0.0.1", 8000)
    assert (on_apps["host"], on_apps["port"]) == ("0.0.0.0", 8123)
