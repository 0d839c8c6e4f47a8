"""The generated chat page in a real browser: Debian's headless Chromium, driven by Selenium.

A LangGraph project is rendered with chat_ui=yes and installed; its fake workspace and its
`start-app` server run as a user would run them. Chromium opens the page, a question is typed,
and the answer must stream in from the fake LLM ("You said: ..."); a second question makes the
agent call its tool, which the page shows with its arguments and result. Then the failure paths:
an error event in the middle of the stream (the fake LLM fails) and an HTTP error (a body over the
server's limit), and a new conversation. Last, a rating (thumbs up, kept as MLflow feedback on the
answer's trace in the server's local tracking store), the configured greeting, and the
conversation kept across a reload. Screenshots land in build/artifacts/.

Background mode goes through a proxy between the browser and the server, as the Databricks Apps
proxy is: it cuts a stream mid-answer (as the Apps proxy ends long requests), and the page must
read on from the last event it got and show the answer exactly once; it holds a stream's first
event back (a slow network), and Stop pressed before the page knows the run must still cancel
the run, as Stop mid-answer does.

Chromium comes from Debian (`scripts/install-prereqs.sh` installs `chromium` and
`chromium-driver`); nothing is downloaded here.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO_ROOT, render
from project_commands import (
    FAKE_WORKSPACE_URL,
    LISTENING,
    background,
    project_env,
    run,
    wait_for_match,
    wait_healthy,
)
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = REPO_ROOT / "build" / "artifacts"
APP_NAME = "chat-ui-demo"
SERVING_ENDPOINT = "browser-test-endpoint"
FAKE_TOKEN = "dapi-fake-token"
# The server rejects larger bodies with 413: the page must show that HTTP error.
MAX_BODY_BYTES = 4_000
# Seconds between the fake LLM's tokens: each token is its own stream event.
TOKEN_DELAY = 0.05
BOOT_TIMEOUT = 120
ANSWER_TIMEOUT = 60
GREETING = "Hello from the browser test: ask me anything."
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1100,900",
)

# Injected into the page: a record of every request body the page sends to the agent, and of
# every text the assistant's messages show while the answer streams in.
RECORDERS = """
window.__bodies = [];
const originalFetch = window.fetch;
window.fetch = (url, options) => {
  if (options && options.body) window.__bodies.push(JSON.parse(options.body));
  return originalFetch(url, options);
};
window.__texts = [];
new MutationObserver(() => {
  const last = [...document.querySelectorAll(".turn .message.assistant")].pop();
  if (last) window.__texts.push(last.textContent);
}).observe(document.getElementById("messages"),
  {childList: true, subtree: true, characterData: true});
"""


@dataclass(frozen=True)
class ChatApp:
    url: str
    fake_url: str
    project: Path
    env: dict[str, str]  # the server's environment


@pytest.fixture(scope="module")
def chat_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatApp]:
    """The rendered project's fake workspace and `uv run start-app`, as a user runs them."""
    root = tmp_path_factory.mktemp("chat-ui")
    config = {"app_name": APP_NAME, "agent_framework": "langgraph", "chat_ui": "yes"}
    result = render(config, root / "out")
    assert result.returncode == 0, result.stderr
    project = root / "out" / APP_NAME
    synced = run(["uv", "sync", "--quiet"], project, timeout=900)
    assert synced.returncode == 0, synced.stderr

    env = project_env()
    fake_log, server_log = root / "fake.log", root / "server.log"
    fake_args = ["uv", "run", "--no-sync", "python", "-m", "tests.fake_workspace"]
    fake_args += ["--port", "0", "--token-delay", str(TOKEN_DELAY)]
    with background(fake_args, project, env, fake_log) as fake:
        fake_url = wait_for_match(fake_log, FAKE_WORKSPACE_URL, fake, BOOT_TIMEOUT)
        env |= {
            "DATABRICKS_HOST": fake_url,
            "DATABRICKS_TOKEN": FAKE_TOKEN,
            "DATABRICKS_CONFIG_FILE": str(root / "no-databrickscfg"),
            "SERVING_ENDPOINT": SERVING_ENDPOINT,
            "AGENT_ENV_FILE": os.devnull,
            "AGENT_LLM_MAX_RETRIES": "0",  # a failed LLM call fails the answer at once
            "AGENT_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
            # Answers are traced, so the page offers ratings.
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "CHAT_GREETING": GREETING,
        }
        server_args = ["uv", "run", "--no-sync", "start-app", "--port", "0"]
        with background(server_args, project, env, server_log) as server:
            url = wait_for_match(server_log, LISTENING, server, BOOT_TIMEOUT)
            wait_healthy(url, BOOT_TIMEOUT, server, server_log)
            yield ChatApp(url, fake_url, project, env)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    assert not missing, (
        f"{missing} not found: install Debian's chromium and chromium-driver "
        "(scripts/install-prereqs.sh does)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths are given, so Selenium Manager (which downloads drivers and browsers) has
    # nothing to do; SE_OFFLINE makes sure it never goes online.
    previous = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    finally:
        if previous is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = previous
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def turns(driver: WebDriver) -> list[Any]:
    return driver.find_elements(By.CSS_SELECTOR, "#messages .turn")


def ask(driver: WebDriver, question: str) -> Any:
    """Type `question`, press Enter, and return its turn once the answer has ended."""
    before = len(turns(driver))
    prompt = driver.find_element(By.ID, "prompt")
    prompt.send_keys(question)
    prompt.send_keys(Keys.ENTER)
    return wait_for_turn(driver, before)


def wait_for_turn(driver: WebDriver, index: int) -> Any:
    def ended(d: WebDriver) -> Any:
        all_turns = turns(d)
        if len(all_turns) > index and all_turns[index].get_attribute("data-state") in (
            "done",
            "error",
        ):
            return all_turns[index]
        return False

    try:
        return WebDriverWait(driver, ANSWER_TIMEOUT, poll_frequency=0.1).until(ended)
    except TimeoutException:
        screenshot(driver, "chat_ui_timeout.png")
        raise


def screenshot(driver: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    assert path.stat().st_size > 1000
    return path


def assistant_texts(turn: Any) -> list[str]:
    return [e.text for e in turn.find_elements(By.CSS_SELECTOR, ".message.assistant")]


def sent_bodies(driver: WebDriver) -> list[dict[str, Any]]:
    return driver.execute_script("return window.__bodies;")


def fake_admin(chat_app: ChatApp, settings: dict[str, Any]) -> None:
    response = httpx.post(f"{chat_app.fake_url}/__fake__/config", json=settings, timeout=10)
    assert response.status_code == 200, response.text


def test_chat_page_streams_answers_and_tool_calls(chat_app: ChatApp, browser: WebDriver) -> None:
    browser.get(f"{chat_app.url}/")
    assert browser.title == APP_NAME
    conversation_id = browser.find_element(By.ID, "conversation-id").text
    assert len(conversation_id) >= 8
    browser.execute_script(RECORDERS)

    # 1. A plain question: the fake LLM echoes it, one token per stream event.
    question = "Hello from a real browser, please say these words back to me one by one"
    turn = ask(browser, question)
    assert turn.get_attribute("data-state") == "done", turn.text
    answer = f"You said: {question}"
    assert assistant_texts(turn) == [answer]
    shown = browser.execute_script("return window.__texts;")
    partial = {text for text in shown if text and text != answer}
    assert len(partial) >= 3, f"the answer did not stream in: {shown}"
    assert all(answer.startswith(text) for text in partial), partial

    # 2. A question that names the tool: the page shows the call, its arguments and result.
    question = 'What time is it in Tokyo? Use get_current_time with {"timezone": "Asia/Tokyo"}'
    turn = ask(browser, question)
    assert turn.get_attribute("data-state") == "done", turn.text
    (tool,) = turn.find_elements(By.CSS_SELECTOR, "details.tool")
    assert tool.find_element(By.CSS_SELECTOR, ".tool-name").text == "get_current_time"
    tool.find_element(By.TAG_NAME, "summary").click()  # open it, as a user would
    blocks = [e.text for e in tool.find_elements(By.TAG_NAME, "pre")]
    assert len(blocks) == 2, blocks
    assert blocks[0].startswith("arguments") and '"timezone": "Asia/Tokyo"' in blocks[0]
    assert blocks[1].startswith("result") and "+09:00" in blocks[1]
    (final,) = assistant_texts(turn)
    assert final.startswith("The tool said: ") and final.endswith("+09:00"), final
    screenshot(browser, "chat_ui.png")

    # The page sent one conversation: the same id each time, and the history with it.
    first, second = sent_bodies(browser)
    assert first["stream"] is True and second["stream"] is True
    assert first["context"] == second["context"] == {"conversation_id": conversation_id}
    assert first["input"] == [{"role": "user", "content": first["input"][0]["content"]}]
    assert [m["role"] for m in second["input"]] == ["user", "assistant", "user"]
    assert second["input"][1]["content"] == answer

    # Its own assets loaded under the page's security policy: no violation, no script error.
    problems = [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" or "Content Security Policy" in entry["message"]
    ]
    assert not problems, problems


def test_chat_page_shows_errors_and_starts_new_conversations(
    chat_app: ChatApp, browser: WebDriver
) -> None:
    browser.get(f"{chat_app.url}/")
    browser.execute_script(RECORDERS)
    # The page shows the conversation kept from the test before: start a new one.
    browser.find_element(By.ID, "new-chat").click()
    first_id = browser.find_element(By.ID, "conversation-id").text

    # An error event in the stream: the LLM endpoint fails once.
    fake_admin(chat_app, {"faults": [{"kind": "status", "status": 500, "times": 1}]})
    try:
        turn = ask(browser, "This question meets a failing LLM endpoint")
    finally:
        fake_admin(chat_app, {"faults": []})
    assert turn.get_attribute("data-state") == "error"
    error = turn.find_element(By.CSS_SELECTOR, ".error").text
    assert error.startswith("The agent failed (upstream_error)"), error
    screenshot(browser, "chat_ui_stream_error.png")

    # An HTTP error: a question over the server's body limit is answered 413 before the agent.
    before = len(turns(browser))
    browser.execute_script(
        "const prompt = document.getElementById('prompt');"
        "prompt.value = 'x'.repeat(arguments[0]);"
        "document.getElementById('composer').requestSubmit();",
        MAX_BODY_BYTES + 500,
    )
    turn = wait_for_turn(browser, before)
    assert turn.get_attribute("data-state") == "error"
    error = turn.find_element(By.CSS_SELECTOR, ".error").text
    assert error.startswith("Error 413: ") and "AGENT_MAX_BODY_BYTES" in error, error
    assert not error.endswith(".."), error
    screenshot(browser, "chat_ui_http_error.png")

    # The failed turns stay out of the history: the next question goes alone, in the same
    # conversation; it is answered normally.
    turn = ask(browser, "Are you still there?")
    assert turn.get_attribute("data-state") == "done"
    assert assistant_texts(turn) == ["You said: Are you still there?"]
    last = sent_bodies(browser)[-1]
    assert last["input"] == [{"role": "user", "content": "Are you still there?"}]
    assert last["context"] == {"conversation_id": first_id}

    # New chat: the conversation is cleared and gets a new id.
    browser.find_element(By.ID, "new-chat").click()
    assert turns(browser) == []
    new_id = browser.find_element(By.ID, "conversation-id").text
    assert new_id and new_id != first_id
    turn = ask(browser, "A fresh start")
    assert assistant_texts(turn) == ["You said: A fresh start"]
    last = sent_bodies(browser)[-1]
    assert last["context"] == {"conversation_id": new_id}
    assert last["input"] == [{"role": "user", "content": "A fresh start"}]


def stored_conversation(driver: WebDriver) -> dict[str, Any]:
    """What the page keeps in localStorage: {"id": ..., "turns": [...]}."""
    return driver.execute_script(
        "return JSON.parse(localStorage.getItem(`chat:${new URL(document.baseURI).pathname}`));"
    )


def feedback_on(chat_app: ChatApp, trace_id: str) -> list[dict[str, Any]]:
    """The assessments of `trace_id` in the server's tracking store, read with mlflow."""
    script = (
        "import json, sys\n"
        "from mlflow import MlflowClient\n"
        "trace = MlflowClient().get_trace(sys.argv[1])\n"
        "print(json.dumps([{'name': a.name, 'value': a.value, 'source': a.source.source_type}"
        " for a in trace.info.assessments]))\n"
    )
    python = chat_app.project / ".venv" / "bin" / "python"
    result = subprocess.run(
        [str(python), "-c", script, trace_id],
        cwd=chat_app.project,
        env=chat_app.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_answers_are_rated_and_the_conversation_survives_a_reload(
    chat_app: ChatApp, browser: WebDriver
) -> None:
    browser.get(f"{chat_app.url}/")
    browser.find_element(By.ID, "new-chat").click()
    empty = browser.find_element(By.ID, "empty")
    assert empty.is_displayed() and empty.text == GREETING

    turn = ask(browser, "Rate me, please")
    assert turn.get_attribute("data-state") == "done", turn.text
    up, down = turn.find_elements(By.CSS_SELECTOR, ".feedback .rate")
    assert (up.get_attribute("title"), down.get_attribute("title")) == ("Good answer", "Bad answer")
    up.click()
    WebDriverWait(browser, ANSWER_TIMEOUT, poll_frequency=0.1).until(
        lambda d: up.get_attribute("aria-pressed") == "true"
    )
    assert down.get_attribute("aria-pressed") == "false"
    assert turn.find_element(By.CSS_SELECTOR, ".feedback-note").text == "Thanks!"
    screenshot(browser, "chat_ui_feedback.png")

    saved = stored_conversation(browser)
    (stored,) = saved["turns"]
    assert stored["question"] == "Rate me, please" and stored["rating"] == "up"
    assert stored["traceId"].startswith("tr-")
    assert feedback_on(chat_app, stored["traceId"]) == [
        {"name": "user_feedback", "value": True, "source": "HUMAN"}
    ]

    # A reload shows the same conversation, the rating included, and goes on with it.
    browser.refresh()
    WebDriverWait(browser, ANSWER_TIMEOUT, poll_frequency=0.1).until(lambda d: turns(d))
    assert browser.find_element(By.ID, "conversation-id").text == saved["id"]
    (restored,) = turns(browser)
    assert assistant_texts(restored) == ["You said: Rate me, please"]
    up = restored.find_element(By.CSS_SELECTOR, ".feedback .rate[data-rating=up]")
    assert up.get_attribute("aria-pressed") == "true"
    browser.execute_script(RECORDERS)
    turn = ask(browser, "And now?")
    assert assistant_texts(turn) == ["You said: And now?"]
    last = sent_bodies(browser)[-1]
    assert last["context"] == {"conversation_id": saved["id"]}
    assert [m["content"] for m in last["input"]] == [
        "Rate me, please",
        "You said: Rate me, please",
        "And now?",
    ]


def test_without_the_chat_page_only_the_api_is_served(chat_app: ChatApp, tmp_path: Path) -> None:
    """chat_ui=no: no page, no assets, no mount; the API as before. The project runs in the
    chat_ui=yes project's environment: the two differ only by the chat page's files."""
    config = {"app_name": APP_NAME, "agent_framework": "langgraph", "chat_ui": "no"}
    result = render(config, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    project = tmp_path / "out" / APP_NAME
    assert not (project / "agent_server" / "runtime" / "chat_ui.py").exists()
    assert not (project / "agent_server" / "runtime" / "static").exists()

    python = chat_app.project / ".venv" / "bin" / "python"
    args = [str(python), "-m", "agent_server.start_server", "--port", "0"]
    log = tmp_path / "server.log"
    with background(args, project, chat_app.env, log) as server:
        url = wait_for_match(log, LISTENING, server, BOOT_TIMEOUT)
        wait_healthy(url, BOOT_TIMEOUT, server, log)
        for path in ("/", "/static/app.js", "/static/index.html"):
            response = httpx.get(f"{url}{path}", timeout=10)
            assert response.status_code == 404, path
            assert response.json() == {"detail": "Not Found"}
        body = {"input": [{"role": "user", "content": "No page here"}], "stream": True}
        with httpx.stream("POST", f"{url}/invocations", json=body, timeout=60) as response:
            assert response.status_code == 200
            lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert any("You said: No page here" in line for line in lines)


# Headers that belong to one connection (RFC 9110 7.6.1), or that the proxy sets itself: not
# passed on. accept-encoding too, so that the server answers uncompressed and events can be read.
HOP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "upgrade",
    "host",
    "content-length",
    "accept-encoding",
}
# How long the proxy holds a stream back at most, whatever the test does.
HOLD_TIMEOUT = 30


class StreamProxy(ThreadingHTTPServer):
    """Between the browser and the server, as the Databricks Apps proxy is: passes every request
    on and every answer back, an event stream event by event. The next event stream can be cut
    after `after` events (the connection closes in the middle of its chunked body, as when the
    Apps proxy ends a long request), or held back, headers and all, until the test releases it
    (a slow network: the page has not seen the run's first event)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.lock = threading.Lock()
        self.requests: list[str] = []  # "METHOD /path?query", in arrival order
        self.run_ids: list[str] = []  # of the response.created events streamed through
        self._cut_after: int | None = None
        self._hold: threading.Event | None = None

    def cut_next_stream(self, after: int) -> None:
        with self.lock:
            self._cut_after = after

    def hold_next_stream(self) -> threading.Event:
        """Hold the next event stream back once its first event arrived, until this is set."""
        release = threading.Event()
        with self.lock:
            self._hold = release
        return release

    def take_stream_plan(self) -> tuple[int | None, threading.Event | None]:
        with self.lock:
            plan = (self._cut_after, self._hold)
            self._cut_after, self._hold = None, None
            return plan

    def record(self, event: bytes) -> None:
        for line in event.decode().splitlines():
            if line.startswith("data: {"):
                data = json.loads(line[len("data: ") :])
                if data.get("type") == "response.created":
                    with self.lock:
                        self.run_ids.append(data["response"]["id"])


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked bodies, so that a cut stream is an incomplete one
    server: StreamProxy

    def do_GET(self) -> None:
        self.forward()

    def do_POST(self) -> None:
        self.forward()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test asserts on `requests` instead

    def forward(self) -> None:
        proxy = self.server
        self.close_connection = True
        with proxy.lock:
            proxy.requests.append(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            with (
                httpx.Client(timeout=ANSWER_TIMEOUT) as client,
                client.stream(
                    self.command, proxy.upstream + self.path, headers=headers, content=body
                ) as answer,
            ):
                if answer.headers.get("content-type", "").startswith("text/event-stream"):
                    self.relay_events(answer)
                else:
                    self.relay_whole(answer)
        except OSError:
            pass  # the browser left (Stop): the upstream request is closed with it

    def start_answer(self, answer: httpx.Response, extra: dict[str, str]) -> None:
        self.send_response(answer.status_code)
        for name, value in answer.headers.items():
            if name.lower() not in HOP_HEADERS and name.lower() not in {"date", "server"}:
                self.send_header(name, value)
        for name, value in {"Connection": "close", **extra}.items():
            self.send_header(name, value)
        self.end_headers()

    def relay_whole(self, answer: httpx.Response) -> None:
        content = answer.read()
        self.start_answer(answer, {"Content-Length": str(len(content))})
        self.wfile.write(content)

    def relay_events(self, answer: httpx.Response) -> None:
        cut_after, hold = self.server.take_stream_plan()
        events = _events(answer)
        first = next(events, b"")
        self.server.record(first)
        if hold is not None:
            hold.wait(HOLD_TIMEOUT)
        self.start_answer(answer, {"Transfer-Encoding": "chunked"})
        for sent, event in enumerate(itertools.chain([first] if first else [], events)):
            if sent:
                self.server.record(event)
            if sent == cut_after:
                return  # the connection closes without the body's last chunk
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


def _events(answer: httpx.Response) -> Iterator[bytes]:
    """The server-sent events of `answer`, each with its blank line, as they arrive."""
    pending = b""
    for chunk in answer.iter_raw():
        pending += chunk
        *events, pending = pending.split(b"\n\n")
        for event in events:
            yield event + b"\n\n"
    if pending:
        yield pending


@pytest.fixture(scope="module")
def proxy(chat_app: ChatApp) -> Iterator[StreamProxy]:
    server = StreamProxy(chat_app.url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def open_page(driver: WebDriver, url: str) -> None:
    """The page at `url`, in a new conversation, with the recorders."""
    driver.get(f"{url}/")
    driver.find_element(By.ID, "new-chat").click()
    driver.execute_script(RECORDERS)


def send(driver: WebDriver, question: str) -> int:
    """Type `question` and press Enter; the index of its turn."""
    index = len(turns(driver))
    prompt = driver.find_element(By.ID, "prompt")
    prompt.send_keys(question)
    prompt.send_keys(Keys.ENTER)
    return index


def wait_until(what: str, condition: Any, timeout: float = ANSWER_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def run_state(chat_app: ChatApp, run_id: str) -> str:
    """The run's status once it ended, as `GET /responses/{id}` tells it (past the proxy)."""

    def ended() -> str | None:
        state = httpx.get(f"{chat_app.url}/responses/{run_id}", timeout=10).json()
        return None if state["status"] in ("queued", "in_progress") else state["status"]

    return wait_until(f"run {run_id} ended", ended)


def shown_text(driver: WebDriver) -> str:
    """What the last assistant message shows now."""
    texts = driver.execute_script("return window.__texts;")
    return texts[-1] if texts else ""


def stopped(turn: Any) -> bool:
    return turn.get_attribute("data-state") == "error" and [
        e.text for e in turn.find_elements(By.CSS_SELECTOR, ".error")
    ] == ["Stopped."]


def test_a_stream_cut_mid_answer_is_resumed_and_the_answer_shown_once(
    chat_app: ChatApp, browser: WebDriver, proxy: StreamProxy
) -> None:
    open_page(browser, proxy.url)
    question = "Please say every one of these words back to me in order, one token after another"
    answer = f"You said: {question}"
    cut_after = 6  # events: response.created and the first few of the answer
    proxy.cut_next_stream(after=cut_after)
    turn = ask(browser, question)

    assert turn.get_attribute("data-state") == "done", turn.text
    assert assistant_texts(turn) == [answer]
    (run_id,) = proxy.run_ids[-1:]
    # The page read on after the last event it got, once.
    resumed = [r for r in proxy.requests if "starting_after=" in r]
    assert resumed == [f"GET /responses/{run_id}?stream=true&starting_after={cut_after - 1}"], (
        proxy.requests
    )
    # The text grew word by word across the cut: nothing shown twice, nothing skipped.
    shown = browser.execute_script("return window.__texts;")
    partial = [text for text in shown if text and text != answer]
    assert partial, shown
    assert all(answer.startswith(text) for text in shown), shown
    assert stored_conversation(browser)["turns"][-1]["answer"] == answer
    screenshot(browser, "chat_ui_resumed.png")


def test_stop_mid_answer_cancels_the_run(
    chat_app: ChatApp, browser: WebDriver, proxy: StreamProxy
) -> None:
    open_page(browser, proxy.url)
    httpx.delete(f"{chat_app.fake_url}/__fake__/llm-calls", timeout=10)
    question = "Take your time with this one, it is a long answer that I may stop halfway"
    answer = f"You said: {question}"
    fake_admin(chat_app, {"token_delay": 0.5})  # one word every 0.5 s: about 9 s in all
    try:
        index = send(browser, question)
        wait_until(
            "part of the answer shows",
            lambda: len(shown_text(browser).split()) >= 4,
        )
        browser.find_element(By.ID, "stop").click()
        turn = wait_for_turn(browser, index)
    finally:
        fake_admin(chat_app, {"token_delay": TOKEN_DELAY})

    assert stopped(turn), turn.text
    (shown,) = assistant_texts(turn)
    assert answer.startswith(shown) and shown != answer, shown
    run_id = proxy.run_ids[-1]
    assert f"POST /responses/{run_id}/cancel" in proxy.requests
    assert run_state(chat_app, run_id) == "cancelled"

    # The run's LLM call was closed, not left to finish.
    def llm_outcomes() -> list[str] | None:
        calls = httpx.get(f"{chat_app.fake_url}/__fake__/llm-calls", timeout=10).json()
        outcomes = [c["outcome"] for c in calls if question in c["prompt"]]
        return outcomes if outcomes and "running" not in outcomes else None

    assert wait_until("the LLM call ended", llm_outcomes) == ["cancelled"]
    screenshot(browser, "chat_ui_stopped.png")


def test_stop_before_the_first_event_cancels_the_run(
    chat_app: ChatApp, browser: WebDriver, proxy: StreamProxy
) -> None:
    open_page(browser, proxy.url)
    # The LLM is slow to start, and the run's first event (its id) is held back on its way to
    # the page: Stop is pressed while the page does not know which run to cancel.
    fake_admin(chat_app, {"faults": [{"kind": "slow_first_token", "delay": 20}]})
    release = proxy.hold_next_stream()
    known = len(proxy.run_ids)
    try:
        index = send(browser, "Stop me before you say anything")
        wait_until("the run started", lambda: len(proxy.run_ids) > known)
        run_id = proxy.run_ids[-1]
        turn = turns(browser)[index]
        assert turn.find_element(By.CSS_SELECTOR, ".status").text == "Thinking\u2026"
        browser.find_element(By.ID, "stop").click()
        assert turn.find_element(By.CSS_SELECTOR, ".status").text == "Stopping\u2026"
        release.set()
        turn = wait_for_turn(browser, index)
    finally:
        release.set()
        fake_admin(chat_app, {"faults": []})

    assert stopped(turn), turn.text
    assert assistant_texts(turn) == []
    assert f"POST /responses/{run_id}/cancel" in proxy.requests
    assert run_state(chat_app, run_id) == "cancelled"
