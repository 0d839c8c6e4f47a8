"""An MLflow LLM judge on chosen serving endpoints of the fake (setting `judge_endpoints`).

mlflow's judges (`model="databricks:/<endpoint>"`) send a chat completion whose prompt asks for
a JSON verdict, `{"rationale": ..., "result": ...}`. The echoing LLM of `llm` cannot give one, so
a chat completion for an endpoint listed in `judge_endpoints` is answered with JUDGE_VERDICT
instead; every other endpoint answers as before::

    fake.configure(judge_endpoints=["fake-judge"])

Each judge call is recorded like any request, with the judge's prompt. This module wraps the
chat routes of `llm` in place (see `_install`), so `server` registers it with one import line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from typing import Any

from starlette.responses import JSONResponse, Response

from .core import ROUTES, Call, Handler

JUDGE_VERDICT = {
    "rationale": "Let's think step by step. The fake workspace's judge approves every answer.",
    "result": "yes",
}
CHAT_PATHS = ("/serving-endpoints/chat/completions", "/serving-endpoints/{name}/invocations")


def _model(call: Call) -> Any:
    if "name" in call.params:
        return call.params["name"]
    return call.body.get("model") if isinstance(call.body, dict) else None


def _verdict(call: Call, model: str) -> Response:
    content = json.dumps(JUDGE_VERDICT)
    digest = hashlib.sha1(json.dumps(call.body, sort_keys=True, default=str).encode()).hexdigest()
    return JSONResponse(
        {
            "id": f"chatcmpl-judge-{digest[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )


def _as_judge(handler: Handler) -> Handler:
    async def judge_or_llm(call: Call) -> Response:
        model = _model(call)
        if isinstance(model, str) and model in call.settings.judge_endpoints:
            return _verdict(call, model)
        return await handler(call)

    return judge_or_llm


def _install() -> None:
    """Wrap the chat routes (found by path: `faults` may have wrapped their handlers already)."""
    samples = {path.replace("{name}", "any-endpoint") for path in CHAT_PATHS}
    for index, candidate in enumerate(ROUTES):
        if candidate.method == "POST" and any(candidate.pattern.fullmatch(p) for p in samples):
            ROUTES[index] = dataclasses.replace(candidate, handler=_as_judge(candidate.handler))


_install()
