"""The server itself, the same for every agent: how it builds its app, its own routes and its
request checks."""

import gc

import httpx
import pytest

from agent_server import start_server
from tests.support import user_request


def test_the_app_is_built_without_garbage_collection_then_frozen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Collections wait while the app is built (they would only walk objects that live as long
    as the process); after, they run again, and what was built is out of their way."""
    during: list[bool] = []

    def build() -> object:
        during.append(gc.isenabled())
        return "the app"

    monkeypatch.setattr(start_server, "build_app", build)
    frozen_before = gc.get_freeze_count()  # conftest.py froze what the session imported
    assert start_server.create_app() == "the app"
    assert during == [False]
    assert gc.isenabled()
    assert gc.get_freeze_count() > frozen_before


def test_collection_runs_again_when_the_app_cannot_be_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def build() -> object:
        raise RuntimeError("no app")

    monkeypatch.setattr(start_server, "build_app", build)
    with pytest.raises(RuntimeError, match="no app"):
        start_server.create_app()
    assert gc.isenabled()


def test_health(client: httpx.Client, agent_url: str) -> None:
    response = client.get(f"{agent_url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


def test_agent_info_names_the_responses_api(client: httpx.Client, agent_url: str) -> None:
    info = client.get(f"{agent_url}/agent/info").json()
    assert info["agent_api"] == "responses"
    assert info["use_case"] == "agent"


@pytest.mark.parametrize("path", ["/invocations", "/responses"])
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"input": [', "Invalid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"hello"', "must be a JSON object"),
        (b"{}", "input"),
        (b'{"input": "hi"}', "input"),
        (b'{"input": [{"role": "robot", "content": "hi"}]}', "robot"),
        (b'{"input": [{"role": "user", "content": "\xff\xfe"}]}', "Invalid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
    ids=[
        "truncated",
        "array",
        "scalar",
        "no-input",
        "input-string",
        "bad-role",
        "bad-utf8",
        "deep",
    ],
)
def test_malformed_requests_get_400_with_a_reason(
    client: httpx.Client, agent_url: str, path: str, body: bytes, reason: str
) -> None:
    response = client.post(
        f"{agent_url}{path}", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert reason in response.json()["detail"]


def test_wrong_content_type_is_415(client: httpx.Client, agent_url: str) -> None:
    response = client.post(
        f"{agent_url}/invocations", content=b"input=hi", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


def test_oversized_body_is_413(client: httpx.Client, agent_url: str) -> None:
    huge = user_request("x" * (5 * 1024 * 1024))
    response = client.post(f"{agent_url}/invocations", json=huge)
    assert response.status_code == 413
    assert "AGENT_MAX_BODY_BYTES" in response.json()["detail"]
