"""The fake as a server: the ASGI app that records and dispatches, and FakeWorkspace."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from . import admin, llm, workspace_api  # noqa: F401  (importing them registers their routes)
from .core import (
    ADMIN_PREFIX,
    DEFAULT_TOKEN,
    ENV_KEYS_TO_REMOVE,
    MISSING_CONFIG_FILE,
    Call,
    RecordedRequest,
    Settings,
    dispatch,
)
from .embeddings_api import embed  # noqa: F401  (answers embeddings requests as an endpoint)
from .faults import Fault  # noqa: F401  (wraps the LLM routes with fault injection)
from .judges import JUDGE_VERDICT  # noqa: F401  (answers as an LLM judge on judge_endpoints)
from .lakebase_api import get_instance  # noqa: F401  (registers the Lakebase routes)
from .listings_api import DEFAULT_LISTINGS  # noqa: F401  (registers the list routes)
from .mcp_api import genie_tool  # noqa: F401  (registers the managed MCP server routes)
from .mlflow_api import ExperimentStore  # noqa: F401  (registers the MLflow routes)
from .subagents_api import oauth_env  # noqa: F401  (sub-agents, OAuth sign-in routes)
from .traces_api import stored_traces  # noqa: F401  (traces, logged models, presigned storage)


def _parse_body(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


class _App:
    """The ASGI application: record the request, then dispatch it through ROUTES."""

    def __init__(self, fake: FakeWorkspace) -> None:
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = _parse_body(await request.body())
        path = request.url.path
        if not path.startswith(ADMIN_PREFIX):
            query = scope.get("query_string", b"").decode("latin-1")
            self.fake._record(
                RecordedRequest(request.method, path, query, dict(request.headers), body)
            )
        call = Call(request, body, {}, self.fake.settings, self.fake)
        response = await dispatch(call)
        await response(scope, receive, send)


class FakeWorkspace:
    """A fake Databricks workspace served by uvicorn in a daemon thread (see the module doc)."""

    def __init__(
        self,
        *,
        tokens: int | None = None,
        token_delay: float = 0.0,
        endpoints: set[str] | None = None,
        token: str = DEFAULT_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._lock = threading.Lock()
        self._settings = Settings().updated(
            tokens=tokens, token_delay=token_delay, endpoints=endpoints, token=token
        )
        self._requests: list[RecordedRequest] = []
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.stopping = False  # tells running answers to end early
        # State of stateful route modules, by key (e.g. mlflow_api's experiments).
        self.state: dict[str, Any] = {}

    def start(self, timeout: float = 10.0) -> FakeWorkspace:
        """Serve in a background thread; returns once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("FakeWorkspace is already started")
        sock = socket.create_server((self._host, self._port), backlog=2048)
        port = sock.getsockname()[1]
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self._host, self._host)
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        config = uvicorn.Config(
            _App(self),
            interface="asgi3",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            ws="none",
            backlog=2048,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-workspace", daemon=True
        )
        self._server, self._thread, self.stopping = server, thread, False
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError(f"fake workspace did not start on {self.url}")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        self.stopping = True
        server.should_exit = True
        thread.join(timeout=5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)

    def __enter__(self) -> FakeWorkspace:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def settings(self) -> Settings:
        with self._lock:
            return self._settings

    def configure(self, **settings: Any) -> None:
        """Change `tokens`, `token_delay`, `endpoints` (or `token`); applies to new requests."""
        with self._lock:
            self._settings = self._settings.updated(**settings)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def env(self) -> dict[str, str]:
        """Variables that point every Databricks client at this fake.

        Also REMOVE the ENV_KEYS_TO_REMOVE from the environment (setting them to "" is not
        enough), or use environ().
        """
        return {
            "DATABRICKS_HOST": self.url,
            "DATABRICKS_TOKEN": self.settings.token,
            "DATABRICKS_CONFIG_FILE": MISSING_CONFIG_FILE,
        }

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (default os.environ) without ENV_KEYS_TO_REMOVE, plus env(): for subprocesses."""
        result = {k: v for k, v in (os.environ if base is None else base).items()}
        for key in ENV_KEYS_TO_REMOVE:
            result.pop(key, None)
        return {**result, **self.env()}
