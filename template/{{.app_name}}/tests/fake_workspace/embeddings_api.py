"""Embeddings endpoints on the fake: what databricks-langchain's DatabricksEmbeddings calls.

DatabricksEmbeddings queries a serving endpoint through MLflow's Databricks deployments client:
POST /serving-endpoints/<name>/invocations with `{"input": [<text>, ...]}`, and reads
`data[i].embedding` of the answer (OpenAI's embeddings format, as Databricks' foundation model
embeddings endpoints answer). Any endpoint that gets such a body answers as one, with vectors
of EMBEDDING_DIMS (databricks-gte-large-en's size) that are deterministic and near for texts
sharing words: a hashed bag of words, normalized. A chat body still reaches the LLM; this
module wraps the route of `llm` in place (see `_install`), so `server` registers it with one
import line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from typing import Any

from starlette.responses import JSONResponse, Response

from .core import ROUTES, Call, Handler, endpoint_exists, no_such_endpoint

EMBEDDING_DIMS = 1024
INVOCATIONS_PATH = "/serving-endpoints/{name}/invocations"
_WORD_RE = re.compile(r"[a-z0-9]+")


def embed(text: str, dims: int = EMBEDDING_DIMS) -> list[float]:
    """Each word adds 1 to a dimension chosen by its hash; the vector has length 1 (zero for a
    text without words)."""
    vector = [0.0] * dims
    for word in _WORD_RE.findall(text.lower()):
        digest = hashlib.sha256(word.encode()).digest()
        vector[int.from_bytes(digest[:4], "big") % dims] += 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


def _texts(body: Any) -> list[str] | None:
    """The texts of an embeddings request, or None if the body is not one."""
    if not isinstance(body, dict) or "messages" in body:
        return None
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts):
        return texts
    return None


def _embeddings_answer(call: Call, name: str, texts: list[str]) -> Response:
    if not endpoint_exists(call.settings, name):
        return no_such_endpoint(name)
    data = [
        {"object": "embedding", "index": index, "embedding": embed(text)}
        for index, text in enumerate(texts)
    ]
    tokens = sum(len(_WORD_RE.findall(text.lower())) for text in texts)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return JSONResponse({"object": "list", "model": name, "data": data, "usage": usage})


def _as_embeddings(handler: Handler) -> Handler:
    async def embeddings_or_other(call: Call) -> Response:
        texts = _texts(call.body)
        if texts is not None:
            return _embeddings_answer(call, call.params["name"], texts)
        return await handler(call)

    return embeddings_or_other


def _install() -> None:
    """Wrap the invocations route (found by path: other modules may have wrapped it already)."""
    sample = INVOCATIONS_PATH.replace("{name}", "any-endpoint")
    for index, candidate in enumerate(ROUTES):
        if candidate.method == "POST" and candidate.pattern.fullmatch(sample):
            wrapped = _as_embeddings(candidate.handler)
            ROUTES[index] = dataclasses.replace(candidate, handler=wrapped)


_install()
