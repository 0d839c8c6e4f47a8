"""MLflow tracing for the agent: on when a tracking store is configured, off otherwise.

Left alone, mlflow traces into sqlite:///mlflow.db in the working directory, creating it on the
first request. Here tracing follows MLFLOW_TRACKING_URI: set (`databricks` on Apps, a profile or a
local store you chose), traces go there; unset, tracing is off and nothing is written.

Traces are exported by mlflow on background threads. `flush_traces()` runs at server shutdown
(start_server.py): uvicorn ends the process by re-raising SIGTERM, which skips mlflow's own
exit-time flush, and every trace still queued would be lost. The tracking store is outside the
app, so both version tracking at start and the flush at shutdown are time-bounded.

No request waits for the tracking store: the experiment is looked up once, at start (see
`start_tracking`), and export runs in the background. A trace that cannot be exported is dropped
with one warning, not one per request (see `ExportFailureFilter`).

With a Databricks tracking store, the workspace configuration mlflow resolves for its calls is
reused rather than resolved again for each one (mlflow_internals.cache_databricks_host_creds).

A local sqlite store is tuned for what it is, a file with one writer at a time (see
`tune_local_store`): profiled under load, exporting traces to it was most of the server's CPU.
"""

import logging
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
from mlflow.entities import MlflowExperimentLocation

from agent_server.runtime.mlflow_internals import cache_databricks_host_creds

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# An abbreviated or full git commit id (SHA-1, or SHA-256 in repositories that use it).
COMMIT_HASH = re.compile(r"[0-9a-fA-F]{7,64}")
# Longest the server start waits for the tracking store (version tracking), and the shutdown
# for queued traces to be exported. Databricks Apps stops an app 15 s after SIGTERM.
TRACKING_TIMEOUT_SECONDS = float(os.environ.get("AGENT_TRACKING_TIMEOUT_SECONDS", "20"))
TRACE_FLUSH_TIMEOUT_SECONDS = float(os.environ.get("AGENT_TRACE_FLUSH_TIMEOUT_SECONDS", "4"))

# mlflow logs a warning for each trace it could not export (mlflow/tracing/export/mlflow_v3.py
# and async_export_queue.py): while the store is down, one per request. See ExportFailureFilter.
EXPORT_LOGGERS = ("mlflow.tracing.export.mlflow_v3", "mlflow.tracing.export.async_export_queue")
EXPORT_WARNING_INTERVAL_SECONDS = float(
    os.environ.get("AGENT_TRACE_WARNING_INTERVAL_SECONDS", "300")
)

_enabled = False


def configure_tracing() -> bool:
    """Turn tracing on or off from the environment; returns whether it is on."""
    global _enabled
    # mlflow fetches LLM prices from github.com for trace cost estimates: an outbound call the
    # app does not need (Apps may have no internet access). Use the catalog bundled with mlflow.
    os.environ.setdefault("MLFLOW_MODEL_CATALOG_URI", "")
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.tracing.disable()
        logger.info(
            "Tracing is off: set MLFLOW_TRACKING_URI (uv run quickstart does) to record traces."
        )
        _enabled = False
        return False
    tune_local_store(os.environ["MLFLOW_TRACKING_URI"])
    if os.environ["MLFLOW_TRACKING_URI"].startswith("databricks"):
        cache_databricks_host_creds()
    quiet_export_failures()
    _enabled = True
    experiment: list[object] = []

    def start() -> None:
        start_tracking(experiment)

    started = run_bounded(start, TRACKING_TIMEOUT_SECONDS)
    if not started:
        logger.warning(
            "Version tracking did not finish within %g s (AGENT_TRACKING_TIMEOUT_SECONDS): "
            "starting without it; the tracking store may be unreachable.",
            TRACKING_TIMEOUT_SECONDS,
        )
    if not experiment:
        pin_experiment()
    if started and (model_id := os.environ.get("MLFLOW_ACTIVE_MODEL_ID")):
        # mlflow keeps the active model per thread, and track_version ran on a thread of its
        # own: set it here too, for the server's thread (the store has just answered).
        try:
            mlflow.set_active_model(model_id=model_id)
        except Exception as exc:
            logger.warning("Could not set the active model %s: %s", model_id, exc)
    return True


def tracing_enabled() -> bool:
    """Whether answers are traced (configure_tracing found a tracking store)."""
    return _enabled


def start_tracking(experiment: list[object]) -> None:
    """Look the experiment up once, start tracing, track the version (may block on the store).

    Left to itself, mlflow looks up MLFLOW_EXPERIMENT_ID in the tracking store at the start of
    every trace, on the request's own thread (mlflow.tracking.fluent's experiment lookup reads
    the variable and calls get_experiment unless an experiment is active), and again when it
    first builds its exporter (to find a Unity Catalog trace destination). Against a store that
    is slow or down, every request would wait for it. `mlflow.set_experiment` does the lookup
    once and makes the experiment active for all threads; `enable()` then builds the exporter
    for it, here rather than on the first request. Appends the experiment once it is active.
    """
    experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID", "").strip()
    experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "").strip()
    if experiment_id or experiment_name:
        # set_experiment prints a notebook-style tip about Unity Catalog trace storage to
        # stderr (mlflow/tracking/_uc_upsell.py): noise in every start of the app's log.
        os.environ.setdefault("_MLFLOW_ENABLE_UC_TRACE_UPSELL", "false")
        try:
            if experiment_id:
                experiment.append(mlflow.set_experiment(experiment_id=experiment_id))
            else:
                experiment.append(mlflow.set_experiment(experiment_name=experiment_name))
        except Exception as exc:  # a missing experiment, the store unreachable: serve anyway
            logger.warning("Could not use the MLflow experiment: %s", exc)
    else:
        experiment.append(None)  # nothing to look up
    mlflow.tracing.enable()
    track_version()


def pin_experiment() -> None:
    """Send traces to MLFLOW_EXPERIMENT_ID without looking it up, when the lookup failed.

    So that no request waits for the store (see start_tracking). The experiment's Unity
    Catalog trace destination, if it has one, is then not known: traces go to the experiment.
    """
    experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID", "").strip()
    if not experiment_id:
        return
    try:
        mlflow.tracing.set_destination(MlflowExperimentLocation(experiment_id=experiment_id))
    except Exception as exc:
        logger.warning("Could not send traces to experiment %s: %s", experiment_id, exc)
        return
    logger.info("Traces go to experiment %s (not looked up: see above).", experiment_id)


class ExportFailureFilter(logging.Filter):
    """One clear warning when traces cannot be exported, then at most one per interval.

    Export runs on mlflow's background threads and never fails a request, but mlflow warns once
    per trace it drops. The first failure becomes one warning that says what happens; later
    ones are counted and summed up at most every `interval` s (at DEBUG level they all show).
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last_warning: float | None = None
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        detail = record.getMessage()
        now = self._clock()
        with self._lock:
            first = self._last_warning is None
            if not first and now - self._last_warning < self.interval:
                self._dropped += 1
                if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
                    return False
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                return True
            dropped, self._dropped, self._last_warning = self._dropped, 0, now
        if first:
            record.msg = (
                "Traces are not reaching the tracking store (%s), so they are not saved; the "
                "agent keeps serving. This is logged at most every %g s "
                "(AGENT_TRACE_WARNING_INTERVAL_SECONDS). Cause: %s"
            )
            record.args = (os.environ.get("MLFLOW_TRACKING_URI", ""), self.interval, detail)
        else:
            record.msg = "%d more traces were not saved in the last %g s. Latest cause: %s"
            record.args = (dropped + 1, self.interval, detail)
        return True


def quiet_export_failures(interval: float = EXPORT_WARNING_INTERVAL_SECONDS) -> None:
    """Install one ExportFailureFilter on mlflow's export loggers (once)."""
    loggers = [logging.getLogger(name) for name in EXPORT_LOGGERS]
    if any(isinstance(f, ExportFailureFilter) for f in loggers[0].filters):
        return
    shared = ExportFailureFilter(interval)
    for export_logger in loggers:
        export_logger.addFilter(shared)


def tune_local_store(tracking_uri: str) -> None:
    """Fit mlflow's trace export to a local sqlite store (`sqlite:///<path>`); others untouched.

    sqlite takes one writer at a time, so mlflow's ten export threads only queue for its lock
    and spend CPU doing it: two suffice. Spans are written in batches of up to 50 rather than 5
    (fewer transactions), and the database is put in write-ahead-log mode, which it keeps, so a
    commit appends to one log file instead of creating and deleting a journal. Variables already
    set win.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return
    os.environ.setdefault("MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS", "2")
    os.environ.setdefault("MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE", "50")
    location = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    if location in ("", ":memory:"):
        return
    path = Path(location)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path, timeout=5) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        connection.close()
    except (OSError, sqlite3.Error) as exc:  # mlflow will say what is wrong; still serve
        logger.warning("Could not put %s in write-ahead-log mode: %s", path, exc)


def prepare_local_store() -> None:
    """Create a local sqlite store's tables before uvicorn starts several workers.

    Each worker would otherwise find a new store and run mlflow's schema upgrades on the same
    file at the same time; on sqlite they are not transactional (alembic: "non-transactional
    DDL"), so the loser of that race can leave the store half-upgraded for good. Other stores
    are left alone: their schema is not the app's to create.
    """
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not tracking_uri.startswith("sqlite:///"):
        return
    tune_local_store(tracking_uri)
    try:
        # The store is built, its tables created or upgraded, by its first use.
        mlflow.MlflowClient(tracking_uri).search_experiments(max_results=1)
    except Exception as exc:  # mlflow will say again what is wrong; still serve
        logger.warning("Could not prepare the tracking store %s: %s", tracking_uri, exc)


def flush_traces(timeout: float = TRACE_FLUSH_TIMEOUT_SECONDS) -> bool:
    """Export every finished trace still queued; False if that took longer than `timeout`."""
    if not _enabled:
        return True
    done = run_bounded(lambda: mlflow.flush_trace_async_logging(terminate=True), timeout)
    if done:
        logger.info("Queued traces exported.")
    else:
        logger.warning("Queued traces were not all exported within %g s.", timeout)
    return done


def run_bounded(func: Callable[[], object], timeout: float) -> bool:
    """Run `func` on a daemon thread; True if it returned (or raised) within `timeout` s.

    A call that overruns goes on in the background; as a daemon it never holds up the exit.
    """

    def run() -> None:
        try:
            func()
        except Exception:
            logger.warning("%s failed", getattr(func, "__name__", "call"), exc_info=True)

    thread = threading.Thread(target=run, name="tracing-bounded-call", daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


def git_commit() -> str | None:
    """The deployed commit: AGENT_GIT_COMMIT (set by the bundle), else the local checkout's HEAD.

    Only a commit hash counts: the bundle sets "none" when the deploy passed no commit, and an
    empty value is the same as none."""
    commit = os.environ.get("AGENT_GIT_COMMIT", "").strip()
    if COMMIT_HASH.fullmatch(commit):
        return commit
    git = shutil.which("git")
    if git is None:
        return None
    try:
        result = subprocess.run(
            [git, "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def track_version() -> None:
    """Link traces to a LoggedModel named after the app and its commit.

    Without a known commit no version is recorded, rather than filing every deployment under one
    "no-git" version. Failures are logged, never raised: tracing must not stop the server.
    """
    commit = git_commit()
    if commit is None:
        logger.info(
            "No git commit known (AGENT_GIT_COMMIT unset, no git checkout): version not tracked."
        )
        return
    name = f"{os.environ.get('DATABRICKS_APP_NAME') or 'local'}-git-{commit[:8]}"
    try:
        model = mlflow.set_active_model(name=name)
    except Exception as exc:  # the tracking store may be unreachable; serve anyway
        logger.warning("Could not set the active model %s for version tracking: %s", name, exc)
        return
    # Request threads read the active model from the environment, not this thread's state.
    os.environ["MLFLOW_ACTIVE_MODEL_ID"] = model.model_id
    logger.info("Traces are linked to LoggedModel %s (%s).", name, model.model_id)
