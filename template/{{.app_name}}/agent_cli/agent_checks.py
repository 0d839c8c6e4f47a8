"""Checks of a running agent server over HTTP: /health, and /invocations with and without streaming.

Shared by `preflight` (a local server it starts) and `test-agent` (a deployed app). Each check
returns a CheckResult with its latency (and, for streams, the time to the first token) and, on
failure, the reason in words: unreachable, timed out, authentication rejected, a bad status
with the server's own explanation, a malformed answer, or an error event in the stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from agent_cli import console

PREVIEW_CHARACTERS = 120
DETAIL_CHARACTERS = 300
# Where an unauthenticated browser-style request to a Databricks App gets redirected.
LOGIN_MARKERS = ("login", "oidc", "authorize", "oauth")


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    seconds: float
    detail: str  # a preview of the answer, or the reason for the failure
    first_token_seconds: float | None = None
    # True when the following checks cannot pass either (unreachable, auth rejected).
    stops_run: bool = False


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def report(result: CheckResult) -> None:
    timing = milliseconds(result.seconds)
    if result.first_token_seconds is not None:
        timing = f"first token {milliseconds(result.first_token_seconds)}, done {timing}"
    line = f"{result.name:<27} {timing:<32} {result.detail}"
    (console.ok if result.passed else console.failed)(line)


class CheckFailed(Exception):
    def __init__(self, reason: str, stops_run: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stops_run = stops_run


def preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARACTERS else flat[: PREVIEW_CHARACTERS - 3] + "..."


def _server_detail(response: httpx.Response) -> str:
    """The server's explanation in an error answer: FastAPI's `detail`, or the body."""
    try:
        body = response.json()
    except ValueError:
        return preview(response.text[:DETAIL_CHARACTERS]) or "(empty body)"
    if isinstance(body, dict):
        for key in ("detail", "message", "error"):
            if body.get(key):
                return preview(str(body[key]))
    return preview(json.dumps(body)[:DETAIL_CHARACTERS])


def _check_status(response: httpx.Response) -> None:
    status = response.status_code
    if status in (401, 403):
        raise CheckFailed(
            f"authentication rejected (HTTP {status}): {_server_detail(response)}", stops_run=True
        )
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        if any(marker in location.lower() for marker in LOGIN_MARKERS):
            raise CheckFailed(
                f"authentication required: redirected to a login page (HTTP {status})",
                stops_run=True,
            )
        raise CheckFailed(f"unexpected redirect (HTTP {status}) to {location or '?'}")
    if status != 200:
        raise CheckFailed(f"bad status HTTP {status}: {_server_detail(response)}")


def output_text(output: list[Any]) -> str:
    """The text of the assistant messages among Responses output items."""
    return "".join(
        part.get("text", "")
        for item in output
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict) and part.get("type") == "output_text"
    )


def _answer(output: list[Any]) -> str:
    text = output_text(output)
    if text:
        return repr(preview(text))
    return f"no text; {len(output)} output item(s): {', '.join(_item_types(output))}"


def _item_types(output: list[Any]) -> list[str]:
    return [str(item.get("type")) if isinstance(item, dict) else "?" for item in output]


def _stream_error(event: dict[str, Any]) -> str | None:
    """The error an event reports, or None (mlflow sends {"error": ...} before [DONE])."""
    error = event.get("error")
    if error is None and event.get("type") in ("error", "response.failed"):
        error = event.get("message") or event.get("response", {}).get("error") or event
    if error is None:
        return None
    if isinstance(error, dict):
        error = error.get("message") or json.dumps(error)
    return str(error)


class AgentClient:
    """Checks of the agent server at `base_url` (its root, without /invocations)."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout), follow_redirects=False
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, name: str, check: Callable[[float], tuple[str, float | None]]) -> CheckResult:
        started = time.monotonic()
        try:
            detail, first_token = check(started)
        except CheckFailed as failure:
            return CheckResult(
                name, False, time.monotonic() - started, failure.reason, None, failure.stops_run
            )
        except httpx.ConnectError as exc:
            reason = f"cannot connect to {self.base_url}: {exc}"
            return CheckResult(name, False, time.monotonic() - started, reason, None, True)
        except httpx.TimeoutException:
            reason = f"no answer within {self.timeout:g} s (--timeout)"
            return CheckResult(name, False, time.monotonic() - started, reason)
        except httpx.HTTPError as exc:
            reason = f"the connection failed: {type(exc).__name__}: {exc}"
            return CheckResult(name, False, time.monotonic() - started, reason)
        return CheckResult(name, True, time.monotonic() - started, detail, first_token)

    def health(self) -> CheckResult:
        def check(started: float) -> tuple[str, None]:
            response = self._http.get(f"{self.base_url}/health")
            _check_status(response)
            return _server_detail(response), None

        return self._run("GET /health", check)

    def invoke(self, body: dict[str, Any]) -> CheckResult:
        def check(started: float) -> tuple[str, None]:
            response = self._http.post(f"{self.base_url}/invocations", json=body)
            _check_status(response)
            try:
                answer = response.json()
            except ValueError:
                raise CheckFailed(
                    f"malformed answer: not JSON: {preview(response.text)!r}"
                ) from None
            output = answer.get("output") if isinstance(answer, dict) else None
            if not isinstance(output, list):
                raise CheckFailed("malformed answer: no 'output' list (not a Responses answer)")
            return _answer(output), None

        return self._run("POST /invocations", check)

    def stream(self, body: dict[str, Any]) -> CheckResult:
        def check(started: float) -> tuple[str, float | None]:
            request = {**body, "stream": True}
            with self._http.stream("POST", f"{self.base_url}/invocations", json=request) as reply:
                if reply.status_code != 200:
                    reply.read()
                _check_status(reply)
                media_type = reply.headers.get("content-type", "").split(";")[0].strip()
                if media_type != "text/event-stream":
                    raise CheckFailed(
                        f"malformed stream: content type {media_type or 'none'!r}, "
                        "expected text/event-stream"
                    )
                return _read_stream(_data_lines(reply), started)

        return self._run("POST /invocations (stream)", check)


def _data_lines(response: httpx.Response) -> Iterator[str]:
    for line in response.iter_lines():
        if line.startswith("data:"):
            yield line[len("data:") :].strip()


def _read_stream(lines: Iterator[str], started: float) -> tuple[str, float | None]:
    deltas: list[str] = []
    items: list[Any] = []
    first_token: float | None = None
    events = 0
    for payload in lines:
        if payload == "[DONE]":
            if not deltas and not items:
                raise CheckFailed("malformed stream: [DONE] before any output")
            text = "".join(deltas) or output_text(items)
            answer = repr(preview(text)) if text else _answer(items)
            return f"{answer} ({events} events)", first_token
        events += 1
        try:
            event = json.loads(payload)
        except ValueError:
            raise CheckFailed(
                f"malformed stream: event {events} is not JSON: {preview(payload)!r}"
            ) from None
        if not isinstance(event, dict):
            raise CheckFailed(f"malformed stream: event {events} is not a JSON object")
        if (error := _stream_error(event)) is not None:
            raise CheckFailed(f"error event mid-stream (event {events}): {preview(error)}")
        kind = event.get("type")
        if kind == "response.output_text.delta":
            deltas.append(str(event.get("delta", "")))
        elif kind == "response.output_item.done" and isinstance(event.get("item"), dict):
            items.append(event["item"])
        else:
            continue
        if first_token is None:
            first_token = time.monotonic() - started
    raise CheckFailed(f"malformed stream: it ended after {events} events without [DONE]")
