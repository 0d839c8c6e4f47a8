"""The fake workspace's fault injection (tests/fake_workspace/faults.py), over plain HTTP."""

from collections.abc import Iterator

import httpx
import pytest

from tests.fake_workspace import FakeWorkspace
from tests.fake_workspace.faults import llm_calls
from tests.support import CHAT_PATH, FAKE_MODEL, auth_headers, user_message


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeWorkspace]:
    with FakeWorkspace(tokens=6) as workspace:
        yield workspace


@pytest.fixture(autouse=True)
def _no_faults(fake: FakeWorkspace) -> Iterator[None]:
    fake.configure(faults=[])
    yield
    fake.configure(faults=[])


def chat(fake: FakeWorkspace, stream: bool = False) -> httpx.Response:
    body = {"model": FAKE_MODEL, "messages": [user_message("hi")], "stream": stream}
    return httpx.post(f"{fake.url}{CHAT_PATH}", json=body, headers=auth_headers(), timeout=30)


def test_status_faults_take_the_next_calls_then_stop(fake: FakeWorkspace) -> None:
    fake.configure(faults=[{"kind": "status", "status": 503, "times": 2}])
    statuses = [chat(fake).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_retry_after_is_sent_with_a_429(fake: FakeWorkspace) -> None:
    fake.configure(faults=[{"kind": "status", "status": 429, "retry_after": 2}])
    response = chat(fake)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"


def test_every_nth_call_and_falling_through_to_the_next_fault(fake: FakeWorkspace) -> None:
    fake.configure(
        faults=[
            {"kind": "status", "status": 500, "every": 3, "times": None},
            {"kind": "status", "status": 503, "every": 2, "times": None},
        ]
    )
    statuses = [chat(fake).status_code for _ in range(6)]
    # Calls 3 and 6 are the 500's; of the others (1, 2, 4, 5), every 2nd goes to the 503.
    assert statuses == [200, 503, 500, 200, 503, 500]


def test_none_lets_calls_through_before_the_next_fault(fake: FakeWorkspace) -> None:
    fake.configure(faults=[{"kind": "none", "times": 2}, {"kind": "status", "status": 500}])
    assert [chat(fake).status_code for _ in range(4)] == [200, 200, 500, 200]


def test_a_dropped_stream_breaks_the_connection(fake: FakeWorkspace) -> None:
    fake.configure(faults=[{"kind": "drop", "after": 2}])
    with pytest.raises(httpx.RemoteProtocolError):
        chat(fake, stream=True)
    assert llm_calls(fake)[-1].outcome == "fault"
    assert llm_calls(fake)[-1].events_sent == 2


def test_a_dropped_plain_answer_is_cut_short(fake: FakeWorkspace) -> None:
    fake.configure(faults=[{"kind": "drop"}])
    with pytest.raises(httpx.RemoteProtocolError):
        chat(fake)


def test_a_malformed_chunk_is_not_json(fake: FakeWorkspace) -> None:
    fake.configure(faults=[{"kind": "malformed", "after": 1}])
    lines = [line for line in chat(fake, stream=True).text.splitlines() if line]
    assert lines[1].startswith('data: {"id": "chatcmpl-broken"')
    assert lines[-1] == "data: [DONE]"  # the rest of the stream follows
    fake.configure(faults=[{"kind": "malformed"}])
    response = chat(fake)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_the_admin_api_validates_and_logs(fake: FakeWorkspace) -> None:
    for bad in ({"kind": "explode"}, {"kind": "status", "status": 200}, {"kind": "stall", "x": 1}):
        answer = httpx.post(f"{fake.url}/__fake__/config", json={"faults": [bad]}, timeout=10)
        assert answer.status_code == 400, bad
    answer = httpx.post(
        f"{fake.url}/__fake__/config", json={"faults": [{"kind": "slow_first_token"}]}, timeout=10
    )
    assert answer.json()["faults"][0]["kind"] == "slow_first_token"
    httpx.delete(f"{fake.url}/__fake__/llm-calls", timeout=10)
    chat(fake)
    [call] = httpx.get(f"{fake.url}/__fake__/llm-calls", timeout=10).json()
    assert call["fault"] == "slow_first_token"
    assert (call["outcome"], call["stream"], call["prompt"]) == ("completed", False, "hi")
