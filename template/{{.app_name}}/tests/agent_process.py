"""The agent server as a child process that a test controls: its settings, signals and log.

The tests get the server as an `AgentProcess`: the process itself (to stop it with SIGTERM, to
read its log) and its URL; some also need settings of their own (short timeouts, a
recognisable token).

`agent_server` (session; `agent_url` is its URL) is the server most tests send requests to:
local tracing, the defaults, in front of the session's fake workspace.

`canary_fake` and `reliability_server` (session fixtures, registered in conftest.py) are shared
by the reliability tests, so that the server boots once: a fake workspace whose token is a
recognisable canary, and the server in front of it with short timeouts and local tracing.
tests/test_secrets.py scans what that server wrote, after every other test that used it.
`deployed_app` is the one server, shared the same way, of the tests that need the server as
Databricks Apps runs it, and `two_worker_server` the one of the tests of several workers. A test
that stops one of these servers is marked `stops_session_server`, and runs after all the others
(conftest.py).
"""

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from agent_cli.local_server import running
from tests.fake_workspace import ENV_KEYS_TO_REMOVE, FakeWorkspace
from tests.fake_workspace.mlflow_api import experiments
from tests.support import BOOT_TIMEOUT_SECONDS, PROJECT_ROOT, server_env

SERVING_ENDPOINT = "test-llm-endpoint"
GIT_COMMIT = "0123456789abcdef0123456789abcdef01234567"
STOP_TIMEOUT_SECONDS = 60
# A token nobody could mistake: tests/test_secrets.py looks for it everywhere the server writes.
CANARY_TOKEN = "dapi-SECRET-canary-7f3a9c1e5b2d4086"

# The reliability server's settings: short, so that timeouts happen within a test.
BODY_TIMEOUT_SECONDS = 2  # AGENT_BODY_TIMEOUT_SECONDS
LLM_TIMEOUT_SECONDS = 1.5  # AGENT_LLM_TIMEOUT_SECONDS
LLM_MAX_RETRIES = 2  # AGENT_LLM_MAX_RETRIES (the generated default)
WORKSPACE_WAIT_SECONDS = 2.0  # AGENT_WORKSPACE_WAIT_SECONDS
SHORT_TIMEOUTS = {
    "AGENT_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_SECONDS),
    "AGENT_LLM_TIMEOUT_SECONDS": str(LLM_TIMEOUT_SECONDS),
    "AGENT_LLM_MAX_RETRIES": str(LLM_MAX_RETRIES),
    "AGENT_WORKSPACE_WAIT_SECONDS": str(WORKSPACE_WAIT_SECONDS),
}


@dataclass
class AgentProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    tracking_db: Path | None = None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def terminate(self) -> int:
        """SIGTERM, as Databricks Apps stops an app; returns the exit status once it exits."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise


def agent_env(
    fake: FakeWorkspace, tracking_db: Path | None = None, **settings: str
) -> dict[str, str]:
    """The server's environment: the fake's credentials, no .env, optional local tracing."""
    extra = {
        **fake.env(),
        "SERVING_ENDPOINT": SERVING_ENDPOINT,
        "AGENT_GIT_COMMIT": GIT_COMMIT,
        "AGENT_ENV_FILE": os.devnull,
        **settings,
    }
    if tracking_db is not None:
        extra["MLFLOW_TRACKING_URI"] = f"sqlite:///{tracking_db}"
    return server_env(extra, remove=ENV_KEYS_TO_REMOVE)


@pytest.fixture(scope="session")
def agent_server(
    fake_workspace: FakeWorkspace, tracking_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    env = agent_env(fake_workspace, tracking_db)
    with agent_process(env, tmp_path_factory.mktemp("server") / "server.log") as server:
        server.tracking_db = tracking_db
        yield server


@pytest.fixture(scope="session")
def agent_url(agent_server: AgentProcess) -> str:
    """The URL of the session's server (most tests need nothing else)."""
    assert agent_server.process.poll() is None, "the session's agent server has stopped"
    return agent_server.url


@pytest.fixture(scope="session")
def canary_fake() -> Iterator[FakeWorkspace]:
    with FakeWorkspace(token=CANARY_TOKEN) as fake:
        yield fake


@pytest.fixture(scope="session")
def reliability_server(
    canary_fake: FakeWorkspace, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    folder = tmp_path_factory.mktemp("reliability")
    # DEBUG: every library logs all it can, for tests/test_secrets.py to search.
    env = agent_env(canary_fake, folder / "mlflow.db", LOG_LEVEL="DEBUG", **SHORT_TIMEOUTS)
    with agent_process(env, folder / "server.log") as server:
        server.tracking_db = folder / "mlflow.db"
        yield server


# A fake LLM whose every answer takes about 2 s, so that requests overlap.
SLOW_ANSWERS = {"tokens": 20, "token_delay": 0.1}


@dataclass
class WorkerPair:
    server: AgentProcess
    fake: FakeWorkspace


@pytest.fixture(scope="session")
def _two_worker_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerPair]:
    folder = tmp_path_factory.mktemp("two-workers")
    with FakeWorkspace(**SLOW_ANSWERS) as fake:
        env = agent_env(fake, folder / "mlflow.db", AGENT_WORKERS="2")
        with agent_process(env, folder / "server.log") as server:
            server.tracking_db = folder / "mlflow.db"
            wait_for_workers(server, 2)
            yield WorkerPair(server, fake)


@pytest.fixture
def two_worker_server(_two_worker_server: WorkerPair) -> WorkerPair:
    """A server of two workers for the session, tracing into a store that was new at its start."""
    assert _two_worker_server.server.process.poll() is None, "the two-worker server has stopped"
    return _two_worker_server


@dataclass
class DeployedApp:
    server: AgentProcess
    workspace: FakeWorkspace


DEPLOYED_APP_NAME = "my-agent"
# mlflow retries an export for up to 500 s by default, and batches ended spans for up to 5 s
# before exporting them; the deployed server is given short bounds, so that an export against a
# failing store gives up, and a trace lands, within a test.
EXPORT_SETTINGS = {
    "MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT": "3",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS": "500",
}


@pytest.fixture(scope="session")
def _deployed_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeployedApp]:
    with FakeWorkspace() as workspace:
        folder = f"/Users/tester@example.com/{DEPLOYED_APP_NAME}"
        experiment = experiments(workspace).create(folder)
        assert experiment is not None
        env = agent_env(
            workspace,
            MLFLOW_TRACKING_URI="databricks",
            MLFLOW_EXPERIMENT_ID=experiment.experiment_id,
            DATABRICKS_APP_NAME=DEPLOYED_APP_NAME,
            **EXPORT_SETTINGS,
        )
        with agent_process(env, tmp_path_factory.mktemp("deployed") / "server.log") as server:
            yield DeployedApp(server, workspace)


@pytest.fixture
def deployed_app(_deployed_app: DeployedApp) -> DeployedApp:
    """The server as Databricks Apps runs it (DATABRICKS_APP_NAME set: the proxy's headers say
    who the user is), tracing to the experiment of the app in its fake workspace. One server for
    the session; its fake's settings are reset for each test."""
    assert _deployed_app.server.process.poll() is None, "the deployed app's server has stopped"
    _deployed_app.workspace.configure(tokens=None, token_delay=0.0, endpoints=None)
    _deployed_app.workspace.clear_requests()
    return _deployed_app


@contextlib.contextmanager
def agent_process(env: dict[str, str], log_path: Path) -> Iterator[AgentProcess]:
    """Start the server on a port of its own and yield it once /health answers."""
    with running(PROJECT_ROOT, env, BOOT_TIMEOUT_SECONDS, log_path=log_path) as local:
        assert local.process is not None
        server = AgentProcess(local.url, local.process, log_path)
        try:
            yield server
        finally:
            if server.process.poll() is None:
                server.terminate()


def worker_connections(server: AgentProcess) -> dict[int, int]:
    """Client connections open to the server, counted by the worker process that holds each.

    Read from Linux's /proc: the established TCP connections on the server's port, and the
    sockets that the server process and its children (uvicorn's workers) have open.
    """
    port = int(server.url.rsplit(":", 1)[1])
    sockets = set()
    for line in Path("/proc/net/tcp").read_text(encoding="ascii").splitlines()[1:]:
        fields = line.split()
        local_port, state, inode = int(fields[1].split(":")[1], 16), fields[3], fields[9]
        if local_port == port and state == "01":  # 01: ESTABLISHED
            sockets.add(f"socket:[{inode}]")
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii").split()
    counts: dict[int, int] = {}
    for process in [pid, *map(int, children)]:  # one worker: the server process itself
        for fd in Path(f"/proc/{process}/fd").iterdir():
            with contextlib.suppress(OSError):  # a descriptor closed meanwhile
                if os.readlink(fd) in sockets:
                    counts[process] = counts.get(process, 0) + 1
    return counts


# An access log line as several workers write it: the worker's pid, the request, the status.
ACCESS_LINE = re.compile(r"\[(\d+)\] [\d.]+:\d+ - \"POST /\w+ HTTP/1.1\" (\d+)")


def wait_for_log(server: AgentProcess, line: str, count: int, timeout: float) -> None:
    """Until the server's log holds `line` `count` times (each worker writes its own)."""
    deadline = time.monotonic() + timeout
    while server.log().count(line) < count:
        assert time.monotonic() < deadline, f"{line!r} not {count} times: {server.log()[-3000:]}"
        time.sleep(0.05)


def wait_for_workers(server: AgentProcess, workers: int) -> None:
    """Until every worker has started: the server answers /health once the first one has."""
    wait_for_log(server, "Application startup complete.", workers, BOOT_TIMEOUT_SECONDS)


def answered_by(server: AgentProcess) -> set[int]:
    """The workers (pids) that have answered a POST request, from their access log lines."""
    return {int(pid) for pid, _status in ACCESS_LINE.findall(server.log())}


def spread_over_workers(
    server: AgentProcess, workers: int, start: Callable[[int], object], least: int, limit: int
) -> int:
    """Calls start(0), start(1), ... (each sends a request that stays in flight for a while)
    until at least `least` requests are in flight and every worker holds one of them; returns
    how many were started. Which worker accepts a connection is the kernel's choice."""
    wait_for_workers(server, workers)
    for started in range(1, limit + 1):
        start(started - 1)
        time.sleep(0.05)  # for the connection to be accepted
        if started >= least and len(worker_connections(server)) >= workers:
            return started
    raise AssertionError(f"{limit} requests in flight, not on all {workers} workers")


# The stream error code of an agent whose handlers are not written yet (HTTP 501).
NOT_IMPLEMENTED = "not_implemented"


def reached_the_agent(response: httpx.Response) -> bool:
    """The request passed every check and was answered by the agent: 200, or 501 Not
    Implemented with its reason from an agent whose handlers are not written yet (the same tests
    run for every project)."""
    if response.status_code == 200:
        return True
    return response.status_code == 501 and bool(response.json().get("detail"))


def stream_reached_the_agent(events: list) -> bool:
    """A full stream from the agent: `[DONE]` last, and no error but "not implemented"."""
    errors = [e for e in events[:-1] if isinstance(e, dict) and e.get("type") == "error"]
    return events[-1:] == ["[DONE]"] and all(e.get("code") == NOT_IMPLEMENTED for e in errors)
