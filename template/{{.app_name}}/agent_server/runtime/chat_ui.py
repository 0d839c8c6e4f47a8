"""The built-in chat page, served by the agent server itself at `/`.

Plain files in static/ beside this module (index.html, app.js, style.css): no Node, no build step,
and nothing fetched from the network, at start or in the browser. The page streams answers from
`/responses` (background mode, see background.py) on the same origin, so on Databricks Apps it
goes through the app's proxy with the user's session, like any other request to the app.

Routes added (nothing else is shadowed: /invocations, /responses, /health and unknown paths
answer as without the page):
- `GET /`: the page;
- `GET /static/<file>`: its assets. Only files inside agent_server/runtime/static are served; a path
  that leaves the folder (`/static/../.env`, encoded or not) is a 404.
- `GET /chat/config`: the page's greeting (CHAT_GREETING) and whether it offers feedback;
- `POST /chat/feedback`: a thumbs up or down on an answer, recorded as MLflow feedback on that
  answer's trace (see feedback.py).
"""

import os
from os import PathLike
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from agent_server.runtime.feedback import Feedback, record_feedback
from agent_server.runtime.tracing import tracing_enabled

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_FILE = STATIC_DIR / "index.html"
ASSETS_PATH = "/static"

# The page loads only its own files and talks only to its own origin: no inline script, no CDN.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'self'; form-action 'self'"
)
# Revalidate on every load (cheap: ETag / Last-Modified), so a new deployment shows at once.
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "same-origin",
}


class _Assets(StaticFiles):
    """StaticFiles with the page's headers on every file it serves (directories are 404s)."""

    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(HEADERS)
        return response


DEFAULT_GREETING = (
    "Ask the agent something. Answers stream in as they are written; tool calls and their "
    "results show up along the way."
)


def greeting() -> str:
    """The text an empty conversation shows: CHAT_GREETING (app.yaml's env), else the default."""
    return os.environ.get("CHAT_GREETING", "").strip() or DEFAULT_GREETING


def mount_chat_ui(app: FastAPI) -> None:
    """Serve the chat page at `/`, its assets under `/static` and its `/chat` routes on `app`."""
    if not PAGE_FILE.is_file():
        raise RuntimeError(f"The chat page is missing: {PAGE_FILE} does not exist.")

    async def chat_page() -> FileResponse:
        return FileResponse(PAGE_FILE, media_type="text/html", headers=HEADERS)

    async def chat_config() -> dict[str, object]:
        # Feedback is kept on the answer's trace: offered only while answers are traced.
        return {"greeting": greeting(), "feedback": tracing_enabled()}

    async def chat_feedback(body: Feedback, request: Request) -> dict[str, str]:
        return await record_feedback(body, request.headers)

    app.add_api_route("/", chat_page, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route("/chat/config", chat_config, methods=["GET"], include_in_schema=False)
    app.add_api_route("/chat/feedback", chat_feedback, methods=["POST"], include_in_schema=False)
    app.mount(ASSETS_PATH, _Assets(directory=STATIC_DIR), name="chat-ui-assets")
