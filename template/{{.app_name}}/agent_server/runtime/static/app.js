// The chat page: sends each question to the agent's /responses in background mode with
// "stream": true and shows the server-sent events as they arrive: text deltas, tool calls and
// their results, errors. The agent's run goes on when the connection breaks (the platform's proxy
// cuts long requests): the page picks its stream up again after the last event it read.
// Finished answers can be rated (thumbs up or down, kept as MLflow feedback on the answer's
// trace), and the conversation is kept in the browser's localStorage across reloads.
// Plain browser JavaScript (no build step, no dependencies).
"use strict";

// Relative to the page, so it works wherever the page is served: locally, and behind the
// Databricks Apps proxy (same origin: the user's session with the app authenticates the call).
const RESPONSES_URL = new URL("responses", document.baseURI);
const CONFIG_URL = new URL("chat/config", document.baseURI);
const FEEDBACK_URL = new URL("chat/feedback", document.baseURI);
// Where the conversation is kept between reloads (per page path), and how many turns of it.
const STORAGE_KEY = `chat:${new URL(document.baseURI).pathname}`;
const STORED_TURNS = 50;
// Each request carries the conversation so far, so an agent without memory has the context. An
// agent that keeps the conversation itself (memory keyed by the conversation id) needs only the
// new message: set this to false.
const SEND_HISTORY = true;
// How often a stream cut before its end is picked up again, and the wait before each try.
const RESUME_TRIES = 5;
const RESUME_DELAY_MS = 1000;
// Stop before the run's id has arrived waits this long for it, to cancel the run; then gives up.
const STOP_WAIT_MS = 10000;

const elements = {
  messages: document.getElementById("messages"),
  empty: document.getElementById("empty"),
  form: document.getElementById("composer"),
  prompt: document.getElementById("prompt"),
  send: document.getElementById("send"),
  stop: document.getElementById("stop"),
  newChat: document.getElementById("new-chat"),
  conversationId: document.getElementById("conversation-id"),
};

const chat = {
  conversationId: "",
  history: [], // {role, content} of the finished turns
  turns: [], // {question, answer, traceId, rating} of the finished turns, as stored
  // The question being answered: its background run's id (once known), the last sequence
  // number read, the AbortController of its requests, its Turn, and whether Stop was pressed.
  run: null,
  feedback: false, // whether answers are traced, so that they can be rated
};

function newConversationId() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") {
    return window.crypto.randomUUID();
  }
  // randomUUID needs a secure context (https or localhost); elsewhere any unique id will do.
  return `c-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

function startConversation() {
  chat.conversationId = newConversationId();
  chat.history = [];
  chat.turns = [];
  elements.conversationId.textContent = chat.conversationId;
  for (const node of [...elements.messages.children]) {
    if (node !== elements.empty) node.remove();
  }
  elements.empty.hidden = false;
  saveConversation();
}

// localStorage may be unavailable (private windows, storage blocked): the page works without.
function saveConversation() {
  try {
    const turns = chat.turns.slice(-STORED_TURNS);
    localStorage.setItem(STORAGE_KEY, JSON.stringify({ id: chat.conversationId, turns }));
  } catch {
    // not kept across reloads
  }
}

function restoreConversation() {
  let saved;
  try {
    saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || "null");
  } catch {
    saved = null;
  }
  if (!saved || typeof saved.id !== "string" || !Array.isArray(saved.turns)) return false;
  startConversation();
  chat.conversationId = saved.id;
  elements.conversationId.textContent = saved.id;
  for (const stored of saved.turns) {
    if (typeof stored.question !== "string" || typeof stored.answer !== "string") continue;
    const turn = new Turn(stored.question);
    turn.setText("text", stored.answer);
    turn.finish("done");
    finishedTurn(turn, stored);
  }
  saveConversation();
  return true;
}

// A turn that ended well: into the history sent with the next question, the stored
// conversation, and, when answers are traced, rated.
function finishedTurn(turn, stored) {
  chat.history.push(
    { role: "user", content: stored.question },
    { role: "assistant", content: stored.answer },
  );
  chat.turns.push(stored);
  saveConversation();
  if (chat.feedback && stored.traceId) turn.offerFeedback(stored);
}

async function loadConfig() {
  try {
    const response = await fetch(CONFIG_URL, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const config = await response.json();
    if (typeof config.greeting === "string" && config.greeting) {
      elements.empty.textContent = config.greeting;
    }
    chat.feedback = config.feedback === true;
  } catch {
    // the defaults: the built-in greeting, no ratings
  }
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text; // never innerHTML: answers are untrusted
  return node;
}

function scrollToEnd() {
  elements.messages.scrollTop = elements.messages.scrollHeight;
}

// The agent's answer to one question: its messages, tool calls and errors, in arrival order.
class Turn {
  constructor(question) {
    elements.empty.hidden = true;
    elements.messages.append(element("div", "message user", question));
    this.root = element("div", "turn");
    this.root.dataset.state = "waiting";
    this.status = element("p", "status", "Thinking\u2026");
    this.root.append(this.status);
    elements.messages.append(this.root);
    this.texts = new Map(); // message item id -> element
    this.tools = new Map(); // call id -> {details, result}
    this.failed = false;
    scrollToEnd();
  }

  add(node) {
    this.root.insertBefore(node, this.status);
    scrollToEnd();
  }

  textElement(itemId) {
    let node = this.texts.get(itemId);
    if (!node) {
      node = element("div", "message assistant", "");
      this.texts.set(itemId, node);
      this.add(node);
    }
    return node;
  }

  appendText(itemId, delta) {
    this.textElement(itemId || "text").textContent += delta;
    scrollToEnd();
  }

  setText(itemId, text) {
    // The finished item is authoritative: it replaces the deltas streamed for it.
    this.textElement(itemId || "text").textContent = text;
  }

  toolCall(callId, name, args) {
    const details = element("details", "tool");
    const summary = element("summary");
    summary.append("Tool call ", element("span", "tool-name", name || "tool"));
    const argsBlock = element("pre");
    argsBlock.append(element("span", "label", "arguments"), formatJson(args));
    details.append(summary, argsBlock);
    details.dataset.callId = callId || "";
    this.tools.set(callId, { details, summary });
    this.add(details);
  }

  toolResult(callId, output) {
    let tool = this.tools.get(callId);
    if (!tool) {
      this.toolCall(callId, "tool", "");
      tool = this.tools.get(callId);
    }
    const resultBlock = element("pre", "tool-result");
    resultBlock.append(element("span", "label", "result"), formatJson(output));
    tool.details.append(resultBlock);
    tool.summary.append(" \u2713");
  }

  error(message) {
    this.failed = true;
    this.add(element("div", "error", message));
  }

  finish(state) {
    this.status.remove();
    this.root.dataset.state = state;
  }

  answerText() {
    return [...this.texts.values()].map((node) => node.textContent).join("\n\n");
  }

  // Thumbs up and down under the answer; a click records the rating on the answer's trace.
  offerFeedback(stored) {
    const bar = element("div", "feedback");
    const buttons = { up: element("button", "rate"), down: element("button", "rate") };
    const note = element("span", "feedback-note");
    const show = (rating) => {
      for (const [value, button] of Object.entries(buttons)) {
        button.setAttribute("aria-pressed", String(value === rating));
      }
    };
    for (const [rating, button] of Object.entries(buttons)) {
      button.type = "button";
      button.dataset.rating = rating;
      button.title = rating === "up" ? "Good answer" : "Bad answer";
      button.setAttribute("aria-label", button.title);
      button.append(thumbIcon());
      button.addEventListener("click", async () => {
        note.textContent = "";
        try {
          const response = await fetch(FEEDBACK_URL, {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ trace_id: stored.traceId, rating }),
          });
          if (!response.ok) {
            note.textContent = await httpErrorMessage(response);
            return;
          }
          stored.rating = rating;
          saveConversation();
          show(rating);
          note.textContent = "Thanks!";
        } catch (err) {
          note.textContent = `Could not send the rating: ${err.message}`;
        }
      });
    }
    show(stored.rating);
    bar.append(buttons.up, buttons.down, note);
    this.root.append(bar);
  }
}

// A thumb as inline SVG (no font needs emoji); the "down" button shows it turned over (CSS).
function thumbIcon() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute(
    "d",
    "M2 10h4v11H2zM8 21h8.6a2 2 0 0 0 2-1.6l1.3-6.6A2 2 0 0 0 18 10.4h-4.7l.8-4.1a1.8 1.8 0 " +
      "0 0-3.3-1.3L8 10z",
  );
  svg.append(path);
  return svg;
}

function formatJson(value) {
  if (typeof value !== "string") return JSON.stringify(value, null, 2);
  try {
    return JSON.stringify(JSON.parse(value), null, 2);
  } catch {
    return value;
  }
}

function messageText(item) {
  const content = item.content;
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .filter((part) => part && typeof part.text === "string")
    .map((part) => part.text)
    .join("");
}

// One event of the Responses stream, as mlflow's agent server sends them.
function handleEvent(turn, event) {
  if (typeof event.trace_id === "string" && !event.type) {
    turn.traceId = event.trace_id; // sent after the answer, with x-mlflow-return-trace-id
    return;
  }
  turn.status.textContent = "Answering\u2026";
  if (event.type === "response.output_text.delta") {
    turn.appendText(event.item_id, event.delta || "");
  } else if (event.type === "response.output_item.done" && event.item) {
    const item = event.item;
    if (item.type === "message") turn.setText(item.id, messageText(item));
    else if (item.type === "function_call") turn.toolCall(item.call_id, item.name, item.arguments);
    else if (item.type === "function_call_output") turn.toolResult(item.call_id, item.output);
  } else if (event.type === "response.failed" && !turn.failed) {
    // A run that failed before its agent could report it in an error event.
    const error = (event.response && event.response.error) || {};
    const code = error.code ? ` (${error.code})` : "";
    turn.error(`The agent failed${code}: ${error.message || "no reason given"}`);
  } else if (event.type === "error" || event.error) {
    const reason = event.message || event.error;
    const text = typeof reason === "string" ? reason : JSON.stringify(reason);
    turn.error(`The agent failed${event.code ? ` (${event.code})` : ""}: ${text}`);
  }
}

// The `data:` payloads of a server-sent event stream, as they arrive.
async function* serverSentData(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const payload = (block) =>
    block
      .split("\n")
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).replace(/^ /, ""))
      .join("\n");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer = (buffer + value).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) !== -1) {
      const data = payload(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (data) yield data;
    }
  }
  const rest = payload(buffer);
  if (rest) yield rest;
}

async function httpErrorMessage(response) {
  let detail = "";
  try {
    const text = await response.text();
    try {
      const body = JSON.parse(text);
      detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? body);
    } catch {
      detail = text.slice(0, 300);
    }
  } catch {
    // no body
  }
  const hint =
    response.status === 401 || response.status === 403
      ? " Your session may have expired: reload the page."
      : "";
  const text = `Error ${response.status}${detail ? `: ${detail}` : ""}`;
  return `${text}${/[.!?]$/.test(text) ? "" : "."}${hint}`;
}

// Reads one stream of the run into the turn; whether it reached its end (`[DONE]`).
async function readRun(response, turn, run) {
  for await (const data of serverSentData(response)) {
    if (data === "[DONE]") return true;
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      turn.error(`Unreadable event from the agent: ${data.slice(0, 200)}`);
      continue;
    }
    if (typeof event.sequence_number === "number") run.after = event.sequence_number;
    if (event.type === "response.created" && event.response) {
      run.id = event.response.id;
      if (run.stopped) {
        cancelRun(run); // Stop was pressed before the id arrived: the next read ends as stopped
        continue;
      }
    }
    handleEvent(turn, event);
  }
  return false;
}

function runUrl(run, suffix) {
  return new URL(`responses/${encodeURIComponent(run.id)}${suffix}`, document.baseURI);
}

function pause(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(new DOMException("Stopped", "AbortError"));
      },
      { once: true },
    );
  });
}

async function ask(question) {
  const turn = new Turn(question);
  const message = { role: "user", content: question };
  const body = {
    input: SEND_HISTORY ? [...chat.history, message] : [message],
    context: { conversation_id: chat.conversationId },
    background: true,
    stream: true,
  };
  const run = { id: null, after: -1, controller: new AbortController(), turn, stopped: false };
  chat.run = run;
  setBusy(true);
  let completed = false;
  try {
    let url = RESPONSES_URL;
    let init = {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Accept: "text/event-stream",
        ...(chat.feedback ? { "x-mlflow-return-trace-id": "true" } : {}),
      },
      body: JSON.stringify(body),
    };
    for (let tries = 0; ; tries++) {
      let cut = "the connection closed before its end";
      try {
        const response = await fetch(url, { ...init, signal: run.controller.signal });
        if (!response.ok) {
          turn.error(await httpErrorMessage(response));
          return;
        }
        const type = response.headers.get("content-type") || "";
        if (!type.startsWith("text/event-stream")) {
          // E.g. a login page instead of the answer, when the app's session has expired.
          const what = type || "no content type";
          turn.error(`Unexpected answer (${what}): reload the page and try again.`);
          return;
        }
        completed = await readRun(response, turn, run);
        if (completed) break;
      } catch (err) {
        if (err.name === "AbortError" || !run.id) throw err;
        cut = err.message;
      }
      if (!run.id || tries >= RESUME_TRIES) {
        turn.error(`The answer was cut off: ${cut}.`);
        break;
      }
      // The run goes on without a reader: read on after the last event that arrived.
      turn.status.textContent = "Reconnecting\u2026";
      await pause(RESUME_DELAY_MS, run.controller.signal);
      url = runUrl(run, `?stream=true&starting_after=${run.after}`);
      init = { headers: { Accept: "text/event-stream" } };
    }
  } catch (err) {
    if (err.name === "AbortError") turn.error("Stopped.");
    else turn.error(`Could not reach the agent: ${err.message}`);
  } finally {
    const ok = completed && !turn.failed;
    turn.finish(ok ? "done" : "error");
    if (ok) {
      const stored = { question, answer: turn.answerText(), traceId: turn.traceId || null };
      finishedTurn(turn, stored);
    }
    chat.run = null;
    setBusy(false);
  }
}

// Stop: no longer read the answer, and cancel the agent's run (it would go on without a reader).
// Before the run's id has arrived (its first event) there is nothing to cancel yet, and the
// server must not stop a run because its stream broke (the platform's proxy cuts long
// requests): the page reads on until the id arrives, cancels the run then, and gives up after
// STOP_WAIT_MS.
function stop() {
  const run = chat.run;
  if (!run || run.stopped) return;
  run.stopped = true;
  if (run.id) {
    cancelRun(run);
    return;
  }
  run.turn.status.textContent = "Stopping\u2026";
  setTimeout(() => run.controller.abort(), STOP_WAIT_MS);
}

function cancelRun(run) {
  run.controller.abort();
  // keepalive: the cancel goes out even when the page is closed right after.
  fetch(runUrl(run, "/cancel"), { method: "POST", keepalive: true }).catch(() => {});
}

function setBusy(busy) {
  elements.send.disabled = busy;
  elements.stop.hidden = !busy;
  elements.newChat.disabled = busy;
  if (!busy) elements.prompt.focus();
}

elements.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const question = elements.prompt.value.trim();
  if (!question || chat.run) return;
  elements.prompt.value = "";
  ask(question);
});

elements.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    elements.form.requestSubmit();
  }
});

elements.stop.addEventListener("click", stop);
elements.newChat.addEventListener("click", startConversation);

loadConfig().then(() => {
  if (!restoreConversation()) startConversation();
  elements.prompt.focus();
});
