"""SIGTERM under load: the server stops accepting, finishes the requests in flight and exports
every trace before it exits.

Databricks Apps stops an app with SIGTERM and kills it 15 s later. The reference app lost the
traces still queued for export (uvicorn ends the process by re-raising SIGTERM, which skips
mlflow's exit-time flush); this server flushes them in its shutdown hook (start_server.py).
"""

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
from mlflow import MlflowClient

from tests.agent_process import (
    SLOW_ANSWERS,
    AgentProcess,
    WorkerPair,
    spread_over_workers,
    wait_for_log,
)
from tests.fake_workspace import FakeWorkspace
from tests.fake_workspace.faults import llm_calls, wait_for_llm_calls
from tests.support import output_text, read_sse, user_request

IN_FLIGHT = 24  # requests running when SIGTERM arrives, half of them streams
SHUTDOWN_GRACE_SECONDS = 10  # the generated default (AGENT_SHUTDOWN_GRACE_SECONDS)
TRACE_FLUSH_SECONDS = 4  # the generated default (AGENT_TRACE_FLUSH_TIMEOUT_SECONDS)
SLACK_SECONDS = 20.0


# The text of each request in flight, which its trace shows (mlflow's request preview).
IN_FLIGHT_TEXT = "in flight {}"


def _ask(url: str, index: int, results: list[tuple[int, bool]]) -> None:
    """One request; records (index, whether a complete answer arrived)."""
    text = IN_FLIGHT_TEXT.format(index)
    try:
        with httpx.Client(timeout=120) as http:
            if index % 2:
                response = http.post(f"{url}/invocations", json=user_request(text))
                complete = response.status_code == 200 and output_text(
                    response.json()["output"]
                ).startswith(f"You said: {text}")
            else:
                request = {**user_request(text), "stream": True}
                with http.stream("POST", f"{url}/invocations", json=request) as response:
                    events = read_sse(response)
                complete = (
                    response.status_code == 200
                    and events[-1] == "[DONE]"
                    and not [e for e in events[:-1] if e.get("type") == "error"]
                    and output_text([e["item"] for e in events[:-1] if "item" in e]).startswith(
                        f"You said: {text}"
                    )
                )
    except httpx.HTTPError:
        complete = False
    results.append((index, complete))


def _traces(tracking_db: Path) -> list[Any]:
    mlflow.set_tracking_uri(f"sqlite:///{tracking_db}")
    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_traces(locations=experiments, max_results=1000))


@pytest.mark.stops_session_server
def test_sigterm_finishes_requests_in_flight_and_flushes_traces(
    agent_server: AgentProcess, fake_workspace: FakeWorkspace
) -> None:
    server = agent_server
    assert server.tracking_db is not None
    fake_workspace.configure(**SLOW_ANSWERS)
    with httpx.Client(timeout=120) as http:  # builds the agent: not part of the load
        assert http.post(f"{server.url}/invocations", json=user_request("warm")).is_success
    earlier_calls = len(llm_calls(fake_workspace))  # the server has answered other tests before

    results: list[tuple[int, bool]] = []
    threads = [
        threading.Thread(target=_ask, args=(server.url, i, results)) for i in range(IN_FLIGHT)
    ]
    for thread in threads:
        thread.start()
    wait_for_llm_calls(fake_workspace, earlier_calls + IN_FLIGHT)  # every request is in flight

    log = _stop_and_check(server, threads, results, IN_FLIGHT)
    assert "Queued traces exported." in log
    _check_traces(server.tracking_db, IN_FLIGHT)


@pytest.mark.stops_session_server
def test_sigterm_with_two_workers_drains_both(two_worker_server: WorkerPair) -> None:
    """uvicorn's parent process passes SIGTERM on to each worker and waits for all of them:
    the requests in flight on either worker finish, and each worker exports its traces."""
    server, fake = two_worker_server.server, two_worker_server.fake
    assert server.tracking_db is not None
    earlier_calls = len(llm_calls(fake))  # the server has answered other tests before
    results: list[tuple[int, bool]] = []
    threads: list[threading.Thread] = []

    def start(index: int) -> None:
        threads.append(threading.Thread(target=_ask, args=(server.url, index, results)))
        threads[-1].start()

    in_flight = spread_over_workers(server, 2, start, least=IN_FLIGHT // 2, limit=IN_FLIGHT)
    wait_for_llm_calls(fake, earlier_calls + in_flight)
    log = _stop_and_check(server, threads, results, in_flight, workers=2)

    assert log.count("Queued traces exported.") == 2, log[-3000:]
    _check_traces(server.tracking_db, in_flight)


def _stop_and_check(
    server: AgentProcess,
    threads: list[threading.Thread],
    results: list[tuple[int, bool]],
    in_flight: int,
    workers: int = 1,
) -> str:
    """SIGTERM while `in_flight` requests run: each completes, the server exits in time; returns
    the server's log."""
    stopped_at = time.monotonic()
    server.process.send_signal(15)  # SIGTERM
    # uvicorn's parent of several workers passes SIGTERM on from its supervision loop (a tick of
    # 0.5 s), and each worker notices it on its own loop's tick: wait until every worker says it
    # is stopping rather than guessing how long that takes on a busy machine.
    wait_for_log(server, "Shutting down", workers, timeout=30)
    # Once stopping, no new request is served. One worker closes the listening socket: a new
    # connection is refused. With several, uvicorn's parent process keeps its copy of the socket
    # until the workers are done: a new connection waits there and is then reset.
    refused = httpx.ConnectError if workers == 1 else httpx.TransportError
    with pytest.raises(refused):
        httpx.get(f"{server.url}/health", timeout=5)
    for thread in threads:
        thread.join(timeout=SHUTDOWN_GRACE_SECONDS + SLACK_SECONDS)
    exit_status = server.terminate()  # already exiting: waits for the exit
    stop_seconds = time.monotonic() - stopped_at
    log = server.log()
    assert sorted(results) == [(i, True) for i in range(in_flight)], log[-3000:]
    # uvicorn exits by re-raising SIGTERM once its shutdown is done (its parent process of
    # several workers exits with 0).
    assert exit_status in (0, -15), log[-3000:]
    assert stop_seconds < SHUTDOWN_GRACE_SECONDS + TRACE_FLUSH_SECONDS + SLACK_SECONDS
    return log


def _check_traces(tracking_db: Path, count: int) -> None:
    """`count` traces of requests in flight in the store, all complete."""
    prefix = IN_FLIGHT_TEXT.format("")
    traces = [t for t in _traces(tracking_db) if (t.info.request_preview or "").startswith(prefix)]
    states = [str(trace.info.state) for trace in traces]
    assert len(traces) == count, states
    assert all(state.endswith("OK") for state in states), states
