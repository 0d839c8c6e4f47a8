"""The scorers: deterministic checks, always, and mlflow's LLM judges on a serving endpoint.

Each check reads the agent's Responses answer (its output items) and the question's expectations;
a question without the expectation a check needs gets no result from that check.
"""

from __future__ import annotations

from typing import Any

from agent_cli.evaluation.eval_set import Question
from agent_cli.evaluation.local_agent import answer_text, tool_names

# Named apart from the expectations they read: mlflow reports both in one table.
DETERMINISTIC_SCORERS = ("answered", "tools_called", "contains_expected")


def deterministic_scorers() -> list[Any]:
    from mlflow.entities import Feedback
    from mlflow.genai.scorers import scorer

    @scorer
    def answered(outputs: Any) -> Feedback:
        text = answer_text(outputs)
        if text:
            return Feedback(value=True, rationale=f"{len(text)} characters")
        return Feedback(value=False, rationale="no answer text")

    @scorer
    def tools_called(outputs: Any, expectations: dict[str, Any]) -> Feedback | None:
        expected = (expectations or {}).get("expected_tools")
        if not expected:
            return None
        called = tool_names(outputs)
        missing = [name for name in expected if name not in called]
        rationale = f"called: {', '.join(called) or 'no tool'}"
        if missing:
            rationale = f"not called: {', '.join(missing)}; {rationale}"
        return Feedback(value=not missing, rationale=rationale)

    @scorer
    def contains_expected(outputs: Any, expectations: dict[str, Any]) -> Feedback | None:
        expected = (expectations or {}).get("expected_substrings")
        if not expected:
            return None
        text = answer_text(outputs).casefold()
        missing = [s for s in expected if s.casefold() not in text]
        if missing:
            return Feedback(value=False, rationale=f"missing: {missing}")
        return Feedback(value=True, rationale=f"contains {expected}")

    return [answered, tools_called, contains_expected]


def judge_scorers(endpoint: str, questions: list[Question]) -> list[Any]:
    """mlflow's LLM judges on `endpoint`; correctness only if every question has facts."""
    from mlflow.genai.scorers import Correctness, RelevanceToQuery, Safety

    model = f"databricks:/{endpoint}"
    judges: list[Any] = [RelevanceToQuery(model=model), Safety(model=model)]
    if all("expected_facts" in q.expectations for q in questions):
        judges.append(Correctness(model=model))
    return judges
