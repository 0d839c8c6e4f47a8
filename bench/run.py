"""`make bench`: the generated agents side by side with a minimal relay, on one core each.

What it does (bench/README.md has the details and how to read the results):
1. renders the template for every agent_framework x async and installs each project with uv,
   timing `uv sync` with an empty and a warm cache, and measuring the .venv;
2. starts the fake workspace (tests/fake_workspace of a generated project), streaming --tokens
   tokens --token-delay seconds apart, so no answer can take less than tokens x delay;
3. times the boot of each framework to a healthy /health (median of --boots);
4. for each variant (framework x async x tracing off / to sqlite / to Databricks (the fake), and
   the baseline relay) starts the server pinned to core 0 (one uvicorn worker) and sweeps
   concurrency x streaming with the load generator (bench/load.py) pinned to core 1, reading the
   server's CPU time from /proc; every answer is one tool round (see MESSAGE);
5. writes bench/results/<name>.json, .md and .png (bench/report.py) and prints the table.

Every step is bounded: request counts, a time cap per point, per-request timeouts, boot
timeouts, and an overall budget after which the remaining points are skipped (and marked so).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402  (bench/report.py, next to this file)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
FRAMEWORKS = ("langgraph", "model-serving-migration")
SERVER_CORE = "0"
CLIENT_CORE = "1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ENDPOINT = "bench-llm-endpoint"
# The fake LLM calls a tool named in the prompt, with the JSON after the name as arguments, then
# answers "The tool said: <result>" (tests/fake_workspace/llm.py): every answer is one tool round,
# as a real agent's. The tool is the generated agent's own (agent.py), and the baseline relay's.
TOOL = "get_current_time"
MESSAGE = f'What time is it? Use {TOOL} {{"timezone": "UTC"}}'
TOOL_RESULT = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"  # the time now, in ISO format
FILLER = " lorem"  # the fake's padding token (tests/fake_workspace/core.py FILLER_TOKEN)
# Where the traces go: off, a local sqlite store, or a Databricks workspace (the fake), as on Apps.
TRACING = (None, "sqlite", "databricks")
TRACING_NAMES = {None: "off", "sqlite": "sqlite", "databricks": "databricks (fake)"}
BOOT_TIMEOUT = 300.0  # generous: a busy machine slows the imports down a lot


@dataclass
class Plan:
    """How much to measure: the full run, or --quick for iterating."""

    concurrency: tuple[int, ...]
    modes: tuple[bool, ...]  # stream?
    requests_per_client: dict[int, int]  # concurrency -> requests per client (bounded below)
    point_seconds: float  # no request starts after this, per point
    boots: int
    cold_sync: bool
    budget_seconds: float


FULL = Plan(
    concurrency=(1, 32, 128, 256),
    modes=(True, False),
    requests_per_client={1: 5, 32: 3, 128: 3, 256: 2},
    point_seconds=20,
    boots=5,
    cold_sync=True,
    budget_seconds=25 * 60,
)
QUICK = Plan(
    concurrency=(1, 128),
    modes=(True, False),
    requests_per_client={1: 5, 128: 2},
    point_seconds=10,
    boots=3,
    cold_sync=False,
    budget_seconds=8 * 60,
)


@dataclass
class Variant:
    name: str
    framework: str | None  # None: the baseline relay
    is_async: bool = True
    tracing: str | None = None  # None, "sqlite" or "databricks"
    project: Path | None = None
    points: list[dict[str, Any]] = field(default_factory=list)
    traces: dict[str, Any] | None = None  # tracing on: requests sent and traces stored
    workers: int = 1  # uvicorn workers (AGENT_WORKERS), all on the server's core

    @property
    def expects_answers(self) -> bool:
        """The migration scaffold answers every request 501 until it is migrated."""
        return self.framework != "model-serving-migration"


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_average() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(max_load: float, max_wait: float) -> float:
    """Wait (bounded) until the 1-minute load average is below max_load; return it."""
    deadline = time.monotonic() + max_wait
    while (load := load_average()) >= max_load and time.monotonic() < deadline:
        log(f"load average {load:.2f} >= {max_load}: waiting (up to {max_wait:.0f} s in all)")
        time.sleep(15)
    return load_average()


# --- rendering and installing ---------------------------------------------------------------


def render(template_repo: Path, framework: str, is_async: bool, out: Path, label: str = "") -> Path:
    config = out / f"config-{framework}-{is_async}.json"
    config.write_text(
        json.dumps({"agent_framework": framework, "async": "yes" if is_async else "no"})
    )
    target = out / f"{label}{framework}-{'async' if is_async else 'sync'}"
    subprocess.run(
        [
            str(REPO / "tests" / "bundle-init"),
            str(template_repo),
            "--config-file",
            str(config),
            "--output-dir",
            str(target),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target / "my-agent"


def uv_sync(project: Path, env: dict[str, str] | None = None) -> float:
    # Not the bench's own environment (`uv run` sets these): each project gets its .venv.
    inherited = {
        k: v for k, v in os.environ.items() if k not in ("UV_PROJECT_ENVIRONMENT", "VIRTUAL_ENV")
    }
    started = time.perf_counter()
    subprocess.run(
        ["uv", "sync", "--quiet"],
        cwd=project,
        env={**inherited, **(env or {})},
        check=True,
        timeout=900,
    )
    return time.perf_counter() - started


def venv_footprint(venv: Path) -> dict[str, Any]:
    size = 0
    for path in venv.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                size += path.stat().st_size
    site = next(venv.glob("lib/python*/site-packages"))
    packages = sorted(p.name.split("-")[0] for p in site.glob("*.dist-info"))
    return {"venv_mb": size / 1e6, "packages": len(packages)}


def install_footprint(project: Path, cold: bool, scratch: Path) -> dict[str, Any]:
    """uv sync times (empty cache, then warm) into a throwaway venv, and that venv's size."""
    result: dict[str, Any] = {}
    venv = scratch / f"venv-{project.parent.name}"
    env = {"UV_PROJECT_ENVIRONMENT": str(venv)}
    if cold:
        cache = scratch / f"uv-cache-{project.parent.name}"
        env["UV_CACHE_DIR"] = str(cache)
        shutil.rmtree(venv, ignore_errors=True)
        result["sync_cold_s"] = uv_sync(project, env)
        shutil.rmtree(venv)
    result["sync_warm_s"] = uv_sync(project, env)
    result.update(venv_footprint(venv))
    shutil.rmtree(venv, ignore_errors=True)
    if cold:
        shutil.rmtree(env["UV_CACHE_DIR"], ignore_errors=True)
    return result


# --- processes ------------------------------------------------------------------------------


def agent_env(
    fake_url: str, tracing: str | None, tracing_dir: Path | None = None
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABRICKS_", "MLFLOW_", "VIRTUAL_ENV", "UV_"))
    }
    env.update(
        {
            "DATABRICKS_HOST": fake_url,
            # A service principal signed in with OAuth, as an app on Databricks Apps is
            # (tests/fake_workspace/subagents_api.py answers as the workspace's OIDC endpoints).
            "DATABRICKS_CLIENT_ID": "fake-service-principal",
            "DATABRICKS_CLIENT_SECRET": "fake-client-secret",
            "DATABRICKS_CONFIG_FILE": str(Path(tempfile.gettempdir()) / "bench-no-such-cfg"),
            "SERVING_ENDPOINT": ENDPOINT,
            "AGENT_ENV_FILE": "/dev/null",
            "LOG_LEVEL": "WARNING",
        }
    )
    if tracing == "sqlite":
        assert tracing_dir is not None
        tracing_dir.mkdir(parents=True, exist_ok=True)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tracing_dir / 'mlflow.db'}"
    elif tracing == "databricks":
        # As on Databricks Apps: the workspace's tracking store and the bundle's experiment,
        # with mlflow's export settings left at their defaults.
        env["MLFLOW_TRACKING_URI"] = "databricks"
        env["MLFLOW_EXPERIMENT_ID"] = create_experiment(fake_url)
    if tracing is not None:
        # As on Databricks Apps (databricks.yml passes the bundle's commit): traces are linked
        # to a LoggedModel for this version.
        env["AGENT_GIT_COMMIT"] = "0123456789abcdef0123456789abcdef01234567"
    return env


def fake_call(fake_url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """A JSON call to the fake workspace (a POST with a body, else a GET)."""
    request = urllib.request.Request(
        f"{fake_url}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer dapi-fake-token", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def uploaded_traces(fake_url: str, before: int, sent: int, max_wait: float = 30.0) -> int:
    """Traces the fake took since `before`, once all `sent` are there or none came for a while.

    mlflow batches finished traces for a few seconds before exporting them, without using CPU:
    the server looks idle before the last ones are sent.
    """
    stored, changed = fake_traces(fake_url) - before, time.monotonic()
    while stored < sent and time.monotonic() - changed < max_wait:
        time.sleep(0.5)
        if (now := fake_traces(fake_url) - before) != stored:
            stored, changed = now, time.monotonic()
    return stored


def create_experiment(fake_url: str) -> str:
    name = f"/Users/tester@example.com/bench-{time.monotonic_ns()}"
    return str(
        fake_call(fake_url, "/api/2.0/mlflow/experiments/create", {"name": name})["experiment_id"]
    )


def fake_traces(fake_url: str) -> int:
    """Traces the fake workspace holds with their spans (tests/fake_workspace/traces_api.py)."""
    return int(fake_call(fake_url, "/__fake__/traces")["with_spans"])


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def server(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    boot_timeout: float = BOOT_TIMEOUT,
) -> Iterator[Any]:
    """A server pinned to SERVER_CORE; yields (process, url, boot seconds) once /health is 200."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("ab") as log_file:
        started = time.perf_counter()
        process = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *command, "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + boot_timeout
            while not healthy(url):
                if process.poll() is not None:
                    raise RuntimeError(f"server exited ({process.returncode}); see {log_path}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not healthy after {boot_timeout} s; see {log_path}")
                time.sleep(0.02)
            yield process, url, time.perf_counter() - started
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def fake_workspace(project: Path, tokens: int, delay: float, log_path: Path) -> Iterator[str]:
    """The generated project's fake workspace, as its own process next to the load generator."""
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [
                "taskset",
                "-c",
                CLIENT_CORE,
                str(project / ".venv" / "bin" / "python"),
                "-m",
                "tests.fake_workspace",
                "--port",
                "0",
                "--tokens",
                str(tokens),
                "--token-delay",
                str(delay),
            ],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=log_file,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline().decode().strip()
            if not line.startswith("FAKE_WORKSPACE_URL="):
                raise RuntimeError(f"fake workspace did not start: {line!r}")
            yield line.split("=", 1)[1]
        finally:
            stop(process)


def server_processes(pid: int) -> list[int]:
    """The server and its children: with --workers, uvicorn's workers do the serving."""
    return [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]


def cpu_seconds(pid: int) -> float:
    total = 0
    for process in server_processes(pid):
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """The sum of each server process's peak resident set."""
    total = 0
    for process in server_processes(pid):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{process}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024 or float("nan")


def settled_cpu(pid: int, max_wait: float = 120.0) -> tuple[float, float]:
    """CPU seconds once the server has gone idle, and how long that took.

    mlflow exports traces on background threads after the answers have gone out: under load a
    backlog builds up, and its CPU belongs to the requests that made it.
    """
    started = time.monotonic()
    last = cpu_seconds(pid)
    while time.monotonic() < started + max_wait:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        if now - last < 0.02:
            return now, time.monotonic() - started - 0.5
        last = now
    return last, time.monotonic() - started


def sqlite_traces(tracing_dir: Path) -> int | None:
    """How many traces the local tracking store holds."""
    try:
        with contextlib.closing(sqlite3.connect(tracing_dir / "mlflow.db")) as db:
            return db.execute("SELECT COUNT(*) FROM trace_info").fetchone()[0]
    except sqlite3.Error:
        return None


def run_load(
    url: str,
    concurrency: int,
    requests: int,
    stream: bool,
    seconds: float,
    expected: str | None,
    expected_status: int,
) -> dict[str, Any]:
    command = [
        "taskset",
        "-c",
        CLIENT_CORE,
        sys.executable,
        str(REPO / "bench" / "load.py"),
        "--url",
        f"{url}/invocations",
        "--concurrency",
        str(concurrency),
        "--requests",
        str(requests),
        "--duration",
        str(seconds),
        "--timeout",
        "60",
        "--message",
        MESSAGE,
        "--expected-status",
        str(expected_status),
    ]
    if stream:
        command.append("--stream")
    if expected is not None:
        command += ["--expected-pattern", expected]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 180)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


# --- the measurement ------------------------------------------------------------------------


def expected_answer(tokens: int) -> str:
    """A regular expression for the fake's answer after the tool: its words padded to `tokens`."""
    words = [re.escape("The "), re.escape("tool "), re.escape("said: "), TOOL_RESULT]
    return "".join(words[:tokens]) + re.escape(FILLER) * max(0, tokens - len(words))


def server_command(variant: Variant) -> tuple[list[str], Path]:
    if variant.framework is None:
        return [sys.executable, str(REPO / "bench" / "baseline_relay.py")], REPO
    assert variant.project is not None
    return [str(variant.project / ".venv" / "bin" / "start-server")], variant.project


def measure_variant(
    variant: Variant, plan: Plan, fake_url: str, tokens: int, scratch: Path, deadline: float
) -> None:
    slug = re.sub(r"\W+", "-", variant.name)
    tracing_dir = scratch / f"mlflow-{slug}"
    env = agent_env(fake_url, variant.tracing, tracing_dir)
    if variant.framework is None:  # the relay sends a workspace token of its own
        env["DATABRICKS_TOKEN"] = "dapi-fake-token"
    if variant.workers > 1:
        env["AGENT_WORKERS"] = str(variant.workers)
    command, cwd = server_command(variant)
    expected = expected_answer(tokens) if variant.expects_answers else None
    status = 200 if variant.expects_answers else 501
    log_path = scratch / f"server-{slug}.log"
    # The scaffold streams its 501 as an error event after a 200: only its invoke is measured.
    modes = plan.modes if variant.expects_answers else (False,)
    sent = 0
    traces_before = fake_traces(fake_url) if variant.tracing == "databricks" else 0
    # Several workers boot side by side on the server's one core.
    boot_timeout = BOOT_TIMEOUT * variant.workers
    with server(command, cwd, env, log_path, boot_timeout) as (process, url, _boot):
        # /health answers once one worker is up: wait for all of them (uvicorn logs each).
        ready_by = time.monotonic() + boot_timeout
        while variant.workers > 1 and time.monotonic() < ready_by:
            if log_path.read_text(errors="replace").count("startup complete") >= variant.workers:
                break
            time.sleep(0.2)
        # Warm-up: first requests build the agent and the clients, and create the trace store.
        for stream in modes:
            sent += run_load(url, 4, 12, stream, 30, expected, status)["requests"]
        for stream in modes:
            for concurrency in plan.concurrency:
                point: dict[str, Any] = {"concurrency": concurrency, "stream": stream}
                if time.monotonic() > deadline:
                    point["skipped"] = "time budget exhausted"
                    variant.points.append(point)
                    continue
                requests = max(concurrency * plan.requests_per_client.get(concurrency, 2), 3)
                before, _ = settled_cpu(process.pid)
                result = run_load(
                    url, concurrency, requests, stream, plan.point_seconds, expected, status
                )
                after, drain = settled_cpu(process.pid)
                sent += result["requests"]
                point.update(result)
                point["cpu_ms_per_request"] = 1000 * (after - before) / max(result["requests"], 1)
                point["drain_s"] = drain
                point["peak_rss_mb"] = peak_rss_mb(process.pid)
                variant.points.append(point)
                log(
                    f"{variant.name:<34} {'stream' if stream else 'invoke'} c={concurrency:<3} "
                    f"{result['rps']:6.1f} req/s  p99 {result['latency_p99_s'] or 0:6.2f} s  "
                    f"cpu {point['cpu_ms_per_request']:6.1f} ms/req  errors {result['errors']}"
                )
        if variant.tracing is not None:
            settled_cpu(process.pid)
            if variant.tracing == "databricks":
                stored: int | None = uploaded_traces(fake_url, traces_before, sent)
            else:
                stored = sqlite_traces(tracing_dir)
            variant.traces = {"requests": sent, "stored": stored}


def boot_times(
    project: Path, fake_url: str, tracing: str | None, boots: int, scratch: Path
) -> list:
    times = []
    for index in range(boots):
        tracing_dir = scratch / f"boot-mlflow-{project.parent.name}-{index}"
        env = agent_env(fake_url, tracing, tracing_dir)
        log_path = scratch / f"boot-{project.parent.name}.log"
        with server([str(project / ".venv" / "bin" / "start-server")], project, env, log_path) as (
            _process,
            _url,
            seconds,
        ):
            times.append(seconds)
    return times


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the generated agent servers.")
    parser.add_argument("--quick", action="store_true", help="fewer points, for iterating")
    parser.add_argument("--name", default=None, help="results file name (default: a timestamp)")
    parser.add_argument(
        "--template", type=Path, default=REPO, help="template repository to render (default: this)"
    )
    parser.add_argument("--variants", default="", help="comma-separated substrings to keep")
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--token-delay", type=float, default=0.02)
    parser.add_argument(
        "--max-load",
        type=float,
        default=0.0,
        help="first wait (at most --max-wait s) for a load average below this",
    )
    parser.add_argument("--max-wait", type=float, default=600)
    parser.add_argument("--keep", action="store_true", help="keep the rendered projects")
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="an earlier template repository: its LangGraph variants run too, each next to "
        "the same variant of --template, as 'before: ...'",
    )
    parser.add_argument("--concurrency", default="", help="e.g. 32,128 (default: the plan's)")
    parser.add_argument("--modes", choices=("both", "stream", "invoke"), default="both")
    parser.add_argument("--no-boot", action="store_true", help="skip the boot times")
    parser.add_argument(
        "--workers",
        default="1",
        help="uvicorn worker counts of the generated servers, e.g. 1,2: each variant runs once "
        "per count, all workers pinned to the server's one core",
    )
    return parser.parse_args(argv)


def make_variants(projects: dict[tuple[str, bool], Path], wanted: list[str]) -> list[Variant]:
    variants = [Variant("baseline relay", None)]
    for framework in FRAMEWORKS:
        for is_async in (True, False):
            project = projects[(framework, is_async)]
            kind = "async" if is_async else "sync"
            if framework == "langgraph":
                for tracing in TRACING:
                    name = f"langgraph {kind} tracing {TRACING_NAMES[tracing]}"
                    variants.append(Variant(name, framework, is_async, tracing, project))
            else:
                # Answers 501 at once: the server's own overhead per request, and (async, tracing
                # to sqlite) what exporting one trace costs.
                for tracing in (None, "sqlite") if is_async else (None,):
                    name = f"migration {kind} (501) tracing {TRACING_NAMES[tracing]}"
                    variants.append(Variant(name, framework, is_async, tracing, project))
    if wanted:
        variants = [v for v in variants if any(w in v.name for w in wanted)]
    # The quick ones first, so that a run out of time skips LangGraph points, not all of these.
    return sorted(variants, key=lambda v: v.framework == "langgraph")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.concurrency:
        plan = dataclasses.replace(
            plan, concurrency=tuple(int(c) for c in args.concurrency.split(","))
        )
    if args.modes != "both":
        plan = dataclasses.replace(plan, modes=(args.modes == "stream",))
    if os.cpu_count() is None or os.cpu_count() < 2:  # type: ignore[operator]
        log("warning: fewer than 2 cores: server and load generator share one")
    name = args.name or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    started = time.monotonic()
    deadline = started + plan.budget_seconds
    results: dict[str, Any] = {
        "name": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "template": str(args.template),
        "tokens": args.tokens,
        "token_delay_s": args.token_delay,
        # The tool call comes one delay after the first call's start, the answer's tokens after.
        "ideal_latency_s": (args.tokens + 1) * args.token_delay,
        "tool_round": True,
    }
    if args.max_load:
        results["load_average_waited"] = wait_for_quiet(args.max_load, args.max_wait)
    results["load_average_start"] = load_average()
    scratch = Path(tempfile.mkdtemp(prefix="agent-bench-"))
    log(f"working in {scratch}")
    try:
        projects: dict[tuple[str, bool], Path] = {}
        install: dict[str, Any] = {}
        for framework in FRAMEWORKS:
            for is_async in (True, False):
                project = render(args.template, framework, is_async, scratch)
                log(f"installing {project.parent.name}")
                uv_sync(project)
                projects[(framework, is_async)] = project
            log(f"timing uv sync of {framework} ({'cold and warm' if plan.cold_sync else 'warm'})")
            install[framework] = install_footprint(
                projects[(framework, True)], plan.cold_sync, scratch
            )
        results["install"] = install

        wanted = [w for w in args.variants.split(",") if w]
        variants = make_variants(projects, wanted)
        counts = [int(n) for n in args.workers.split(",")]
        if counts != [1]:
            variants = [
                dataclasses.replace(
                    v, name=f"{v.name} {n} worker{'s' * (n > 1)}", workers=n, points=[]
                )
                for v in variants
                for n in (counts if v.framework else [1])
            ]
        if args.before is not None:
            results["before_template"] = str(args.before)
            earlier: dict[tuple[str, bool], Path] = {}
            for is_async in (True, False):
                project = render(args.before, "langgraph", is_async, scratch, "before-")
                log(f"installing {project.parent.name}")
                uv_sync(project)
                earlier[("langgraph", is_async)] = project
            paired = []
            for variant in variants:
                if variant.framework == "langgraph":
                    project = earlier[("langgraph", variant.is_async)]
                    paired.append(
                        dataclasses.replace(
                            variant, name=f"before: {variant.name}", project=project, points=[]
                        )
                    )
                paired.append(variant)
            variants = paired
        fake_log = scratch / "fake.log"
        with fake_workspace(
            projects[("langgraph", True)], args.tokens, args.token_delay, fake_log
        ) as fake_url:
            for variant in variants:
                log(f"measuring {variant.name}")
                try:
                    measure_variant(variant, plan, fake_url, args.tokens, scratch, deadline)
                except RuntimeError as failed:  # e.g. a server that did not boot: the rest runs
                    log(f"{variant.name}: {failed}")
                    variant.points.append(
                        {"concurrency": 0, "stream": True, "skipped": str(failed)}
                    )
            # Last, so that a slow machine shortens these (3 boots at least), not the load points.
            results["boot"] = {}
            for framework, tracing in (
                ()
                if args.no_boot
                else (
                    ("langgraph", None),
                    ("langgraph", "sqlite"),
                    ("model-serving-migration", None),
                )
            ):
                key = f"{framework} tracing {TRACING_NAMES[tracing]}"
                log(f"boot times: {key}")
                boots = plan.boots if time.monotonic() < deadline else 3
                times = boot_times(projects[(framework, True)], fake_url, tracing, boots, scratch)
                results["boot"][key] = {"median_s": statistics.median(times), "all_s": times}
        results["variants"] = [
            {
                "name": v.name,
                "framework": v.framework,
                "async": v.is_async,
                "tracing": v.tracing,
                "points": v.points,
                "traces": v.traces,
            }
            for v in variants
        ]
        results["load_average_end"] = load_average()
        results["elapsed_s"] = time.monotonic() - started
    finally:
        if args.keep:
            log(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / f"{name}.json"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    markdown = report.write(results, RESULTS / f"{name}.md", RESULTS / f"{name}.png")
    print(markdown)
    log(f"wrote {json_path.with_suffix('.md')} and {json_path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
