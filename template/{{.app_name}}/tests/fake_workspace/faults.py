"""Fault injection for the fake LLM endpoint, and a log of every LLM call and how it ended.

Faults are a setting (`faults`), a list applied in order, one LLM call at a time::

    fake.configure(faults=[{"kind": "status", "status": 503, "times": 2}])  # fail the next 2 calls
    fake.configure(faults=[{"kind": "drop", "after": 3}])  # cut the next stream after 3 events
    fake.configure(faults=[])  # no faults

or `POST /__fake__/config` with the same JSON. Each LLM call is offered to the faults in order:
a fault takes it if it has calls left (`times`; null: no limit) and, with `every: N`, if this is
the N-th call offered to it; otherwise the call goes on to the next fault, and is answered
normally if no fault takes it. Configuring faults starts their counts afresh. Kinds:

- ``status``: answer `status` (default 500) with a Databricks error body, and a `Retry-After:
  <retry_after>` header when `retry_after` is set (e.g. 429 with Retry-After: 1);
- ``slow_first_token``: wait `delay` s before answering at all (no status line, no headers);
- ``stall``: send `after` stream events, then nothing for `delay` s, then the rest;
- ``drop``: send `after` stream events, then drop the connection (no `[DONE]`, the chunked body
  never ends); a non-streaming answer is cut after half its body;
- ``malformed``: send `after` stream events, then an event whose data is not JSON, then the
  rest; a non-streaming answer is a 200 whose body is not JSON;
- ``none``: answer normally (a placeholder: `[{"kind": "none", "times": 3}, ...]` lets three
  calls through before the next fault).

Every LLM call is logged (`llm_calls(fake)`, `GET /__fake__/llm-calls`, cleared with `DELETE`):
the fault applied, the stream events sent, and how the call ended: ``completed``, ``fault``
(answered with an error status or dropped), or ``cancelled`` (the caller closed the connection
before the end of the answer: the way to see that a client's disconnect reached the LLM call).

The faults wrap the LLM routes of `llm` in place (see `_install`), so `server` registers them
with one import line.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from . import llm
from .core import ROUTES, Call, Handler, error, route

if TYPE_CHECKING:
    from .server import FakeWorkspace

KINDS = ("status", "slow_first_token", "stall", "drop", "malformed", "none")
MALFORMED_EVENT = 'data: {"id": "chatcmpl-broken", "choices": [{"delta": \n\n'


@dataclass(frozen=True, eq=False)  # compared by identity: each configured fault counts its calls
class Fault:
    kind: str
    status: int = 500
    retry_after: float | None = None
    delay: float = 0.0
    after: int = 0
    times: int | None = 1
    every: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind must be one of {KINDS}, not {self.kind!r}")
        if not isinstance(self.status, int) or not 400 <= self.status <= 599:
            raise ValueError("fault status must be an HTTP error status (400-599)")
        numbers = {"delay": self.delay, "after": self.after, "every": self.every}
        if self.retry_after is not None:
            numbers["retry_after"] = self.retry_after
        if self.times is not None:
            numbers["times"] = self.times
        for name, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"fault {name} must be a number >= 0")
        if self.every < 1:
            raise ValueError("fault every must be >= 1")


def parse_faults(specs: Iterable[Any] | None) -> tuple[Fault, ...]:
    """Faults from JSON-like specs (dicts) or Fault objects; for Settings.updated()."""
    if specs is None:
        return ()
    if isinstance(specs, Mapping | str):
        raise ValueError("faults must be a list of fault objects")
    faults = []
    for spec in specs:
        if isinstance(spec, Fault):
            faults.append(spec)
        elif isinstance(spec, Mapping):
            try:
                faults.append(Fault(**spec))
            except TypeError as e:
                raise ValueError(f"invalid fault {dict(spec)!r}: {e}") from None
        else:
            raise ValueError(f"a fault must be an object, not {spec!r}")
    return tuple(faults)


@dataclass
class LlmCall:
    """One call to the fake LLM endpoint, as it went."""

    number: int
    stream: bool
    fault: str | None
    started: float
    prompt: str  # the last user message (at most 200 characters): which request made the call
    ended: float | None = None
    events_sent: int = 0
    outcome: str = "running"  # then completed, fault or cancelled


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    calls: list[LlmCall] = field(default_factory=list)
    used: weakref.WeakKeyDictionary[Fault, list[int]] = field(
        default_factory=weakref.WeakKeyDictionary  # fault -> [calls offered to it, calls it took]
    )


_states: weakref.WeakKeyDictionary[FakeWorkspace, _State] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()


def _state(fake: FakeWorkspace) -> _State:
    with _states_lock:
        state = _states.get(fake)
        if state is None:
            state = _states[fake] = _State()
        return state


def llm_calls(fake: FakeWorkspace) -> list[LlmCall]:
    """A copy of the log of LLM calls, oldest first."""
    state = _state(fake)
    with state.lock:
        return [dataclasses.replace(call) for call in state.calls]


def wait_for_llm_calls(fake: FakeWorkspace, count: int, timeout: float = 60) -> None:
    """Wait until `count` LLM calls have started (the log is never cleared with the requests:
    count from `len(llm_calls(fake))` taken before)."""
    deadline = time.monotonic() + timeout
    while (started := len(llm_calls(fake))) < count:
        assert time.monotonic() < deadline, f"only {started} of {count} LLM calls started"
        time.sleep(0.05)


def clear_llm_calls(fake: FakeWorkspace) -> None:
    state = _state(fake)
    with state.lock:
        state.calls.clear()


def _next_fault(state: _State, faults: tuple[Fault, ...]) -> Fault | None:
    with state.lock:
        for fault in faults:
            offered, given = state.used.setdefault(fault, [0, 0])
            if fault.times is not None and given >= fault.times:
                continue
            state.used[fault][0] = offered + 1
            if (offered + 1) % fault.every:
                continue  # not this one's turn: offered to the next fault
            state.used[fault][1] = given + 1
            return None if fault.kind == "none" else fault
        return None


def _with_faults(handler: Handler) -> Handler:
    async def faulty(call: Call) -> Response:
        state = _state(call.fake)
        fault = _next_fault(state, call.settings.faults)
        stream = isinstance(call.body, dict) and bool(call.body.get("stream"))
        messages = call.body.get("messages") if isinstance(call.body, dict) else None
        users = [m for m in messages or [] if isinstance(m, dict) and m.get("role") == "user"]
        record = LlmCall(
            number=next(state.numbers),
            stream=stream,
            fault=fault and fault.kind,
            started=time.monotonic(),
            prompt=llm.message_text(users[-1])[:200] if users else "",
        )
        with state.lock:
            state.calls.append(record)
        if fault is not None and fault.kind == "status":
            _end(record, "fault")
            return _status_answer(fault)
        if fault is not None and fault.kind == "slow_first_token":
            if not await call.pause(fault.delay):
                _end(record, "fault")
                return error(503, "TEMPORARILY_UNAVAILABLE", "The fake workspace is stopping.")
        response = await handler(call)
        if isinstance(response, StreamingResponse):
            response.body_iterator = _events(call, response.body_iterator, fault, record)
            return response
        if fault is not None and fault.kind == "stall":
            await call.pause(fault.delay)
        if fault is not None and fault.kind in ("drop", "malformed") and response.status_code < 400:
            _end(record, "fault")
            return _broken_answer(response, fault)
        _end(record, "completed")
        return response

    return faulty


async def _events(
    call: Call, events: AsyncIterator[Any], fault: Fault | None, record: LlmCall
) -> AsyncIterator[Any]:
    """The stream, faulted after `after` events; records how far it got and how it ended."""
    outcome = "cancelled"  # unless the stream gets to its end
    try:
        async for event in events:
            if fault is not None and record.events_sent == fault.after:
                if fault.kind == "drop":
                    outcome = "fault"
                    raise DroppedConnection
                if fault.kind == "malformed":
                    yield MALFORMED_EVENT
                elif fault.kind == "stall" and not await call.pause(fault.delay):
                    return
            yield event
            record.events_sent += 1
        outcome = "completed"
    finally:
        _end(record, outcome)


def _end(record: LlmCall, outcome: str) -> None:
    record.ended = time.monotonic()
    record.outcome = outcome


def _status_answer(fault: Fault) -> Response:
    code = {429: "REQUEST_LIMIT_EXCEEDED", 503: "TEMPORARILY_UNAVAILABLE"}.get(
        fault.status, "INTERNAL_ERROR"
    )
    response = error(fault.status, code, f"Injected fault: HTTP {fault.status}.")
    if fault.retry_after is not None:
        response.headers["Retry-After"] = f"{fault.retry_after:g}"
    return response


class DroppedConnection(Exception):
    """Raised inside an answer to make uvicorn drop the connection mid-body."""


class _BrokenAnswer(Response):
    """A 200 with `body`; with `drop`, half of it, then the connection is dropped."""

    def __init__(self, body: bytes, headers: Mapping[str, str], drop: bool) -> None:
        super().__init__(body, 200, dict(headers))
        self.drop = drop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.drop:
            await super().__call__(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        half = self.body[: len(self.body) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        raise DroppedConnection


def _broken_answer(response: Response, fault: Fault) -> Response:
    headers = {"content-type": "application/json"}
    if fault.kind == "drop":
        return _BrokenAnswer(bytes(response.body), headers, drop=True)
    return _BrokenAnswer(b'{"id": "chatcmpl-broken", "choices": [', headers, drop=False)


class _QuietDrops(logging.Filter):
    """uvicorn logs an exception that ends an answer; a DroppedConnection is on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


@route("GET", "/__fake__/llm-calls", auth=False)
async def admin_llm_calls(call: Call) -> Response:
    return JSONResponse([dataclasses.asdict(c) for c in llm_calls(call.fake)])


@route("DELETE", "/__fake__/llm-calls", auth=False)
async def admin_clear_llm_calls(call: Call) -> Response:
    clear_llm_calls(call.fake)
    return JSONResponse({})


# The LLM routes of `llm`, by a path each matches (found by path: another module may have
# wrapped their handlers already).
LLM_PATHS = ("/serving-endpoints/chat/completions", "/serving-endpoints/any-endpoint/invocations")


def _install() -> None:
    """Wrap the LLM routes with fault injection (once, at import)."""
    for index, candidate in enumerate(ROUTES):
        if candidate.method == "POST" and any(candidate.pattern.fullmatch(p) for p in LLM_PATHS):
            ROUTES[index] = dataclasses.replace(candidate, handler=_with_faults(candidate.handler))
    logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


_install()
