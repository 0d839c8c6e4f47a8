"""The generated chat page in a real browser: Debian's headless Chromium, driven by Selenium.

A LangGraph project is rendered with chat_ui=yes and installed; its fake workspace and its
`start-app` server run as a user would run them. Chromium opens the page, a question is typed,
and the answer must stream in from the fake LLM ("You said: ..."); a second question makes the
agent call its tool, which the page shows with its arguments and result. Then the failure paths:
an error event in the middle of the stream (the fake LLM fails) and an HTTP error (a body over the
server's limit), and a new conversation. Last, a rating (thumbs up, kept as MLflow feedback on the
answer's trace in the server's local tracking store), the configured greeting, and the
conversation kept across a reload. Screenshots land in build/artifacts/.

Chromium comes from Debian (`scripts/install-prereqs.sh` installs `chromium` and
`chromium-driver`); nothing is downloaded here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO_ROOT, render
from project_commands import project_env, run
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def background(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[Any]:
    with log.open("w") as out:
        process = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def wait_for_line(log: Path, prefix: str, process: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith(prefix):
                return line[len(prefix) :]
        assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text()}"
        time.sleep(0.1)
    raise AssertionError(f"no {prefix!r} line after {BOOT_TIMEOUT} s:\n{log.read_text()}")


def wait_healthy(url: str, process: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text()}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} not healthy after {BOOT_TIMEOUT} s:\n{log.read_text()}")


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
        fake_url = wait_for_line(fake_log, "FAKE_WORKSPACE_URL=", fake)
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
        port = free_port()
        server_args = ["uv", "run", "--no-sync", "start-app", "--port", str(port)]
        with background(server_args, project, env, server_log) as server:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, server, server_log)
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
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [str(python), "-m", "agent_server.start_server", "--port", str(port)]
    log = tmp_path / "server.log"
    with background(args, project, chat_app.env, log) as server:
        wait_healthy(url, server, log)
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
