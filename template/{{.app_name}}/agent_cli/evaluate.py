"""`uv run agent-evaluate`: ask the agent the questions of the evaluation set and score its answers.

The agent runs in this process: agent_server.agent is imported (which registers its @invoke
handler) and its invoke function is called directly, as the server calls it. So the evaluation
needs no running server, and each answer's trace (LLM calls, tool calls) is recorded with the
evaluation run. Async handlers run on one event loop owned by this command (the agent's async
clients stay on the loop they were made on); sync handlers run on mlflow's worker threads.

Before anything is logged, the agent answers the first question once: an agent that cannot
answer at all (an agent whose handlers are not written yet: 501 Not Implemented; no
SERVING_ENDPOINT; an unreachable workspace) stops the command there with the reason.

Scorers:
- always, deterministic: `answered` (a non-empty answer), `tools_called` (the answer called the
  question's `expected_tools`) and `contains_expected` (the answer contains the question's
  `expected_substrings`, ignoring case), the last two for the questions that list them;
- LLM judges (relevance, safety, and correctness against `expected_facts`) on the project's
  serving endpoint: on when the results go to a Databricks workspace, off otherwise (a local
  store means no workspace to judge with); `--judges on|off` decides instead.

Results go to the experiment of the project (MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_ID, from
.env as quickstart writes them), or to `--tracking-uri`, or else to a temporary local store.
The terminal gets a summary. Exit status 1 when a deterministic check fails; the judges inform.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_cli import console, options
from agent_cli.console import CliError
from agent_cli.evaluation.eval_set import EVAL_SET_FILE, Question, load_eval_set
from agent_cli.evaluation.local_agent import LocalAgent, load_agent
from agent_cli.evaluation.scorers import (
    DETERMINISTIC_SCORERS,
    deterministic_scorers,
    judge_scorers,
)
from agent_cli.evaluation.tracking import (
    LOCAL_EXPERIMENT_NAME,
    Tracking,
    configure_tracking,
    judges_enabled,
)
from agent_cli.project import (
    AGENT_FRAMEWORK,
    APP_NAME,
    DEFAULT_SERVING_ENDPOINT,
    ENV_FILE,
    PROJECT_ROOT,
)

DEFAULT_TIMEOUT_SECONDS = 300.0
DEFAULT_WORKERS = 4


# --- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    question: str
    scorer: str
    value: Any
    rationale: str
    error: str

    @property
    def passed(self) -> bool:
        return not self.error and (self.value is True or str(self.value).lower() == "yes")


def probe(agent: LocalAgent, question: Question) -> None:
    """One answer before anything is logged: stop with the agent's reason if it cannot answer.

    Tracing is off for this trial call (no stray trace, and no default store created in the
    working directory); run_evaluation turns it back on once the tracking store is chosen.
    """
    import mlflow

    from agent_server.runtime.errors import public_error

    mlflow.tracing.disable()
    try:
        agent.invoke(question.messages)
    except Exception as exc:
        error = public_error(exc)
        if error.status_code == 501:
            raise CliError(
                f"the agent is not written yet (HTTP 501): {error}",
                hint="write its handlers in agent_server/agent.py, then evaluate it",
            ) from None
        raise CliError(
            f"the agent could not answer {question.name!r} "
            f"({error.code}, HTTP {error.status_code}): {error}",
            hint="run `uv run preflight` to check the configuration",
        ) from None


def run_evaluation(
    agent: LocalAgent, questions: list[Question], scorers: list[Any], run_name: str | None
) -> tuple[str, list[Outcome]]:
    import mlflow

    @mlflow.trace(name="agent", span_type="AGENT")
    def predict(messages: list[dict[str, Any]]) -> dict[str, Any]:
        return agent.invoke(messages)

    mlflow.tracing.enable()
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags({"agent_framework": AGENT_FRAMEWORK, "app_name": APP_NAME})
        result = mlflow.genai.evaluate(
            data=[q.as_row() for q in questions], predict_fn=predict, scorers=scorers
        )
    return run.info.run_id, outcomes(result, questions, [s.name for s in scorers])


def outcomes(result: Any, questions: list[Question], scorers: list[str]) -> list[Outcome]:
    """Each question's scorer results, from the evaluation's result table (which also has the
    expectations, as `<name>/value` columns like the scorers' values)."""
    table = getattr(result, "result_df", None)
    if table is None:
        table = result.tables["eval_results"]
    by_messages = {json.dumps(q.messages, sort_keys=True): q.name for q in questions}
    found: list[Outcome] = []
    for _, row in table.iterrows():
        name = by_messages.get(json.dumps(_row_messages(row), sort_keys=True), "?")
        for scorer in scorers:
            value = _clean(row.get(f"{scorer}/value"))
            error = _clean(row.get(f"{scorer}/error_message")) or ""
            if value is None and not error:
                continue  # the scorer had nothing to check for this question
            rationale = _clean(row.get(f"{scorer}/rationale")) or ""
            found.append(Outcome(name, scorer, value, str(rationale), str(error)))
    order = {q.name: i for i, q in enumerate(questions)}
    return sorted(found, key=lambda o: (order.get(o.question, len(order)), _scorer_order(o.scorer)))


def _row_messages(row: Any) -> Any:
    for column in ("inputs", "request"):
        value = row.get(column)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if isinstance(value, dict) and "messages" in value:
            return value["messages"]
    return None


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


# --- the command ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="agent-evaluate",
        description="Ask the agent (in this process) the questions of the evaluation set and "
        "score the answers with mlflow.genai.evaluate; results go to the project's MLflow "
        "experiment. Exits 1 when a deterministic check fails.",
    )
    parser.add_argument(
        "--eval-set",
        type=Path,
        default=EVAL_SET_FILE,
        help="the evaluation set (default: evaluation/eval_set.json)",
    )
    parser.add_argument(
        "--tracking-uri",
        help="where to log the results (default: MLFLOW_TRACKING_URI, else a temporary "
        "local store), e.g. databricks://<profile> or sqlite:///evaluation.db",
    )
    parser.add_argument(
        "--experiment-id",
        help="the experiment to log to (default: MLFLOW_EXPERIMENT_ID with MLFLOW_TRACKING_URI; "
        f"else the experiment {LOCAL_EXPERIMENT_NAME!r})",
    )
    parser.add_argument(
        "--judges",
        choices=("auto", "on", "off"),
        default="auto",
        help="LLM judges on the serving endpoint: auto (default) runs them when the results go "
        "to a Databricks workspace",
    )
    parser.add_argument(
        "--judge-endpoint",
        help="serving endpoint of the judges (default: SERVING_ENDPOINT, the agent's own LLM)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help=f"questions answered at once (default: {DEFAULT_WORKERS})",
    )
    options.add_seconds(parser, "--timeout", DEFAULT_TIMEOUT_SECONDS, "each answer")
    parser.add_argument("--run-name", help="name of the MLflow run (default: mlflow's)")
    options.add_env_file(parser, "settings to load first", default=None)
    return parser.parse_args(argv)


def load_settings(env_file: Path | None) -> None:
    """The same settings the server starts with; real environment variables win."""
    from dotenv import load_dotenv

    path = env_file or os.environ.get("AGENT_ENV_FILE") or ENV_FILE
    load_dotenv(path)
    # mlflow would fetch LLM prices from the internet for trace cost estimates.
    os.environ.setdefault("MLFLOW_MODEL_CATALOG_URI", "")


@contextmanager
def _closing(*resources: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for resource in resources:
            resource.close()


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    if args.timeout <= 0:
        raise CliError("--timeout must be a positive number of seconds")
    questions = load_eval_set(args.eval_set)
    load_settings(args.env_file)
    os.environ["MLFLOW_GENAI_EVAL_MAX_WORKERS"] = str(args.workers)
    # predict() below opens its own trace; mlflow's trial call to check that would be wasted.
    os.environ["MLFLOW_GENAI_EVAL_SKIP_TRACE_VALIDATION"] = "true"

    console.say(f"Evaluating {APP_NAME} ({AGENT_FRAMEWORK}) on {len(questions)} questions")
    console.note(f"questions: {_display_path(args.eval_set)}")
    agent = load_agent(args.timeout)
    with _closing(agent):
        probe(agent, questions[0])
        tracking = configure_tracking(args.tracking_uri, args.experiment_id)
        with _closing(tracking):
            endpoint = (
                args.judge_endpoint
                or os.environ.get("SERVING_ENDPOINT", "").strip()
                or DEFAULT_SERVING_ENDPOINT
            )
            use_judges, why = judges_enabled(args.judges, tracking)
            console.note(
                f"results: {console.redact(tracking.uri)}, experiment {tracking.experiment_id}"
            )
            for note in tracking.notes:
                console.note(f"results: {note}")
            console.note(f"LLM judges: {why}" + (f"; endpoint {endpoint}" if use_judges else ""))
            scorers = deterministic_scorers()
            if use_judges:
                scorers += judge_scorers(endpoint, questions)

            run_id, results = run_evaluation(agent, questions, scorers, args.run_name)
            return summarise(results, run_id, tracking, questions)


def summarise(
    results: list[Outcome], run_id: str, tracking: Tracking, questions: list[Question]
) -> int:
    console.heading("Results")
    width = max(len(q.name) for q in questions)
    for outcome in results:
        label = f"{outcome.question:<{width}}  {outcome.scorer}"
        if outcome.error:
            line = f"{label}: error: {_one_line(outcome.error)}"
        elif outcome.passed or outcome.scorer in DETERMINISTIC_SCORERS:
            line = f"{label}: {_one_line(outcome.rationale)}"
        else:
            line = f"{label} = {outcome.value}: {_one_line(outcome.rationale)}"
        if outcome.passed:
            console.ok(line)
        elif outcome.scorer in DETERMINISTIC_SCORERS:
            console.failed(line)
        else:
            console.warn(line)  # a judge's verdict informs; it does not fail the command

    console.heading("Scorers")
    scorers = sorted({o.scorer for o in results}, key=_scorer_order)
    for name in scorers:
        mine = [o for o in results if o.scorer == name]
        passed = sum(o.passed for o in mine)
        errors = sum(bool(o.error) for o in mine)
        kind = "check" if name in DETERMINISTIC_SCORERS else "judge"
        extra = f", {errors} errors" if errors else ""
        console.say(f"  {name:<22} {kind}  {passed}/{len(mine)} passed{extra}")
    console.say(f"\nMLflow run {run_id} in experiment {tracking.experiment_id}")

    answered = {o.question for o in results if o.scorer == "answered"}
    unscored = [q.name for q in questions if q.name not in answered]
    failed = [o for o in results if o.scorer in DETERMINISTIC_SCORERS and not o.passed]
    if unscored:
        raise CliError(f"agent-evaluate: no result for {unscored}")
    if failed:
        raise CliError(
            f"agent-evaluate failed: {len(failed)} of "
            f"{sum(o.scorer in DETERMINISTIC_SCORERS for o in results)} checks failed"
        )
    checks = sum(o.scorer in DETERMINISTIC_SCORERS for o in results)
    console.say(f"agent-evaluate passed: {checks} checks on {len(questions)} questions")
    return console.EXIT_OK


def _scorer_order(name: str) -> tuple[int, str]:
    if name in DETERMINISTIC_SCORERS:
        return DETERMINISTIC_SCORERS.index(name), name
    return len(DETERMINISTIC_SCORERS), name


def _one_line(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return console.guard(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
