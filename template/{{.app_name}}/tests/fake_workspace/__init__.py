"""An offline fake Databricks workspace, served on 127.0.0.1 for tests, demos and benchmarks.

It answers what the real clients (databricks-sdk, databricks-openai, databricks-langchain and
the OpenAI client) call, with a deterministic "LLM" behind the OpenAI-compatible chat
completions endpoint.

In-process use::

    with FakeWorkspace(tokens=50, token_delay=0.02) as fake:
        for key in ENV_KEYS_TO_REMOVE:
            os.environ.pop(key, None)
        os.environ.update(fake.env())
        ...  # build Databricks clients only now: the SDK contacts the host when constructed

As its own process (from the project root)::

    python -m tests.fake_workspace [--host 127.0.0.1] [--port 0] [--tokens N] [--token-delay S]

prints ``FAKE_WORKSPACE_URL=http://127.0.0.1:PORT`` once listening and serves until SIGINT or
SIGTERM. Such a fake is reconfigured and inspected through its admin API, which is not
recorded and needs no token:

- ``POST /__fake__/config`` with JSON settings (as ``configure()``); ``GET`` shows them;
- ``GET /__fake__/requests`` lists the recorded requests; ``DELETE`` clears them.

Layout: ``core`` (settings, recorded requests, the route table and ``@route``), ``llm`` (the
deterministic "LLM" ``llm_reply()`` and the serving endpoint routes), ``workspace_api`` (REST API
routes), ``admin`` (the admin API), ``server`` (``FakeWorkspace``); ``mlflow_api`` and
``traces_api`` (experiments; traces and logged models as mlflow exports them to a workspace);
``listings_api`` (the list routes of `uv run discover-tools`); ``embeddings_api`` (embeddings
endpoints: deterministic vectors, near for texts sharing words).
A new area of the API is a new module of ``@route`` handlers, imported by ``server``.
"""

from .core import (
    DEFAULT_TOKEN,
    ENV_KEYS_TO_REMOVE,
    FILLER_TOKEN,
    ROUTES,
    Call,
    RecordedRequest,
    Settings,
    error,
    route,
)
from .llm import Reply, ToolCall, llm_reply, message_text, split_tokens
from .server import FakeWorkspace

__all__ = [
    "DEFAULT_TOKEN",
    "ENV_KEYS_TO_REMOVE",
    "FILLER_TOKEN",
    "ROUTES",
    "Call",
    "FakeWorkspace",
    "RecordedRequest",
    "Reply",
    "Settings",
    "ToolCall",
    "error",
    "llm_reply",
    "message_text",
    "route",
    "split_tokens",
]
