"""The evaluation set: evaluation/eval_set.json, read and checked, as rows for mlflow.

The file is an object with a "questions" list. Each question: `question` (text) or `messages` (a
whole conversation, as in a request), an optional unique `name`, and any of `expected_tools`,
`expected_substrings` and `expected_facts` (lists of text). A mistake is reported with the file,
the question's index and what is wrong, never as a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_cli.console import CliError
from agent_cli.project import PROJECT_ROOT

EVAL_SET_FILE = PROJECT_ROOT / "evaluation" / "eval_set.json"
QUESTION_KEYS = frozenset(
    {"name", "question", "messages", "expected_tools", "expected_substrings", "expected_facts"}
)
EXPECTATION_KEYS = ("expected_tools", "expected_substrings", "expected_facts")


@dataclass(frozen=True)
class Question:
    name: str
    messages: list[dict[str, Any]]
    expectations: dict[str, list[str]]

    def as_row(self) -> dict[str, Any]:
        """A row for mlflow.genai.evaluate: `inputs` become the predict function's arguments."""
        row: dict[str, Any] = {"inputs": {"messages": self.messages}}
        if self.expectations:
            row["expectations"] = self.expectations
        return row


def load_eval_set(path: Path) -> list[Question]:
    """The questions of an evaluation set file, checked, with errors that name the problem."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(
            f"no evaluation set at {path}",
            hint="create it (see evaluation/eval_set.json in a new project) or pass --eval-set",
        ) from None
    except json.JSONDecodeError as exc:
        raise CliError(f"{path} is not valid JSON: {exc}") from None
    entries = document.get("questions") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CliError(f'{path}: expected an object with a non-empty "questions" list')
    questions = [_question(path, index, entry) for index, entry in enumerate(entries)]
    names = [q.name for q in questions]
    if duplicates := sorted({n for n in names if names.count(n) > 1}):
        raise CliError(f"{path}: question names must be unique; repeated: {duplicates}")
    return questions


def _question(path: Path, index: int, entry: Any) -> Question:
    where = f"{path}: questions[{index}]"
    if not isinstance(entry, dict):
        raise CliError(f"{where} must be an object")
    if unknown := sorted(set(entry) - QUESTION_KEYS):
        raise CliError(f"{where}: unknown keys {unknown}; known: {sorted(QUESTION_KEYS)}")
    if ("question" in entry) == ("messages" in entry):
        raise CliError(f'{where}: give either "question" (text) or "messages" (a conversation)')
    if "question" in entry:
        text = entry["question"]
        if not isinstance(text, str) or not text.strip():
            raise CliError(f'{where}: "question" must be non-empty text')
        messages = [{"role": "user", "content": text}]
    else:
        messages = entry["messages"]
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in messages)
        ):
            raise CliError(f'{where}: "messages" must be a list of {{"role", "content"}} objects')
    expectations: dict[str, list[str]] = {}
    for key in EXPECTATION_KEYS:
        if key not in entry:
            continue
        values = entry[key]
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise CliError(f'{where}: "{key}" must be a list of non-empty strings')
        expectations[key] = values
    name = entry.get("name", f"question-{index + 1}")
    if not isinstance(name, str) or not name:
        raise CliError(f'{where}: "name" must be non-empty text')
    return Question(name, messages, expectations)
