"""The migration scaffold boots and says clearly that the agent is not migrated yet."""

import httpx

from tests.support import stream, user_request


def test_invoke_answers_not_migrated_with_501(client: httpx.Client, agent_url: str) -> None:
    response = client.post(f"{agent_url}/invocations", json=user_request("hello"))
    assert response.status_code == 501
    assert "not been migrated yet" in response.json()["detail"]


def test_stream_ends_with_a_not_migrated_error_event(client: httpx.Client, agent_url: str) -> None:
    events = stream(client, f"{agent_url}/invocations", user_request("hello"))
    assert events[-1] == "[DONE]"
    assert "not been migrated yet" in events[-2]["error"]


def test_server_keeps_serving_after_the_errors(client: httpx.Client, agent_url: str) -> None:
    for _ in range(3):
        client.post(f"{agent_url}/invocations", json=user_request("hello"))
    assert client.get(f"{agent_url}/health").status_code == 200
