"""Which conversation a request continues: its thread_id, its user, and what is new in it."""

import json
from typing import Any
from uuid import uuid4

from mlflow.genai.agent_server import get_request_headers
from mlflow.types.responses import ResponsesAgentRequest

from agent_server.runtime.identity import on_databricks_apps, request_user

# Roles and item types of the agent's side of a conversation: chat messages (role) and
# Responses input items (type).
ANSWER_ROLES = ("assistant", "tool")
ANSWER_TYPES = ("function_call", "function_call_output")


def conversation_ids(request: ResponsesAgentRequest) -> dict[str, str]:
    """The request's thread_id and user_id: from custom_inputs, else from its context.

    A request without a thread_id starts a new conversation (a new id, returned in
    custom_outputs so that the client can continue it). On Databricks Apps the user is the one
    the platform's proxy signed in (identity.py; a different user_id was refused before the
    agent ran); locally it is the client's user_id, if any.
    """
    inputs = request.custom_inputs or {}
    context = request.context
    thread_id = str(inputs.get("thread_id") or (context and context.conversation_id) or uuid4())
    ids = {"thread_id": thread_id}
    client_user = inputs.get("user_id") or (context and context.user_id)
    if user_id := request_user(get_request_headers(), str(client_user) if client_user else None):
        ids["user_id"] = user_id
    return ids


def conversation_key(ids: dict[str, str]) -> str:
    """The key the conversation is stored under.

    On Databricks Apps a conversation belongs to the user who started it: it is kept under the
    user and the thread_id together, so another user who sends the same thread_id gets a new,
    empty conversation of their own and sees nothing of the first one (nor learns that it
    exists).
    """
    if on_databricks_apps():
        # A request with no signed-in user is nobody's (""): apart from every user's too.
        return json.dumps([ids.get("user_id", ""), ids["thread_id"]])
    return ids["thread_id"]


def new_messages(messages: list[dict[str, Any]], prior: int) -> list[dict[str, Any]]:
    """The messages of the request that its stored conversation does not have yet.

    Many clients keep no memory of their own and send the whole conversation each time;
    once the memory holds it, only the turn after the last answer is new.
    """
    if prior:
        for index in range(len(messages) - 1, -1, -1):
            message = messages[index]
            if message.get("role") in ANSWER_ROLES or message.get("type") in ANSWER_TYPES:
                return messages[index + 1 :]
    return messages
