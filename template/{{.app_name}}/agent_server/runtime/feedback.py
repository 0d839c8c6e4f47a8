"""Thumbs up or down from the chat page, recorded as MLflow feedback on the answer's trace.

The page asks for each answer's trace id (the `x-mlflow-return-trace-id` header of mlflow's
agent server) and posts the user's rating here; `mlflow.log_feedback` attaches it to that trace
as a human assessment named `user_feedback`, so it shows next to the trace in the experiment's
UI and can be used for evaluation. On Databricks Apps the assessment is credited to the user the
proxy signed in; locally to "local user".

Trace ids are random 128-bit values that only the page that got the answer knows.
"""

import asyncio
import time
from collections.abc import Mapping
from typing import Literal

import mlflow
from fastapi import HTTPException
from mlflow.entities import AssessmentSource, AssessmentSourceType
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, Field

from agent_server.runtime.identity import proxy_user
from agent_server.runtime.tracing import tracing_enabled

FEEDBACK_NAME = "user_feedback"
LOCAL_USER = "local user"
# mlflow exports a trace in the background after the answer ends: a rating given at once may
# reach the store first. Retried for this long before the trace counts as unknown.
EXPORT_WAIT_SECONDS = 5.0
# The longest a rating waits for the tracking store (mlflow retries failed calls itself).
STORE_TIMEOUT_SECONDS = 20.0


class Feedback(BaseModel):
    """A rating of one answer, as the page posts it."""

    # mlflow's trace ids: "tr-<32 hex>", or "trace:/<location>/<hex>" for traces kept in Unity
    # Catalog tables.
    trace_id: str = Field(pattern=r"^(tr-[0-9a-f]{32}|trace:/[A-Za-z0-9_.\-/]{1,300})$")
    rating: Literal["up", "down"]
    comment: str | None = Field(default=None, max_length=2000)


def _log(feedback: Feedback, user: str) -> None:
    deadline = time.monotonic() + EXPORT_WAIT_SECONDS
    while True:
        try:
            mlflow.log_feedback(
                trace_id=feedback.trace_id,
                name=FEEDBACK_NAME,
                value=feedback.rating == "up",
                rationale=feedback.comment or None,
                source=AssessmentSource(source_type=AssessmentSourceType.HUMAN, source_id=user),
            )
            return
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST" or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


async def record_feedback(feedback: Feedback, headers: Mapping[str, str]) -> dict[str, str]:
    """Record `feedback` on its trace; a clear 4xx/5xx when it cannot be."""
    if not tracing_enabled():
        raise HTTPException(
            409, "Answers are not traced (MLFLOW_TRACKING_URI is not set): no feedback to keep."
        )
    user = proxy_user({key.lower(): value for key, value in headers.items()}) or LOCAL_USER
    try:
        await asyncio.wait_for(asyncio.to_thread(_log, feedback, user), STORE_TIMEOUT_SECONDS)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise HTTPException(404, f"No trace {feedback.trace_id}.") from None
        raise HTTPException(
            502, f"The tracking store did not take the feedback: {error.message[:300]}"
        ) from None
    except TimeoutError:
        raise HTTPException(
            504, f"The tracking store did not answer within {STORE_TIMEOUT_SECONDS:.0f} s."
        ) from None
    return {"trace_id": feedback.trace_id, "rating": feedback.rating}
