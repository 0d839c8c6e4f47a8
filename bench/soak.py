"""Soak test: thousands of mixed requests at high concurrency, with faults, against a generated
agent; fails on any unexpected error, a leak, or resident memory growth of 10 % or more.

    make soak                       # or: uv run python bench/soak.py [--requests N ...]

What it does, all offline (the generated project's fake workspace stands in for Databricks):
1. renders the template (default: langgraph, async) and installs the project with uv;
2. starts the fake workspace and the generated server (bench/soak_server.py: the server as
   generated, plus a stats dump of its asyncio tasks and threads on SIGUSR1), with tracing into
   a local sqlite store, as on Apps with tracing on;
3. injects LLM faults for the whole run, each on every N-th LLM call: 503 and 429 with
   Retry-After (retried by the LLM client, invisible to clients), a slow first token, a stream
   dropped mid-answer and a malformed chunk (visible: a stream ends with an error event);
4. warm-up, then the soak: a closed loop of `--concurrency` clients on keep-alive connections,
   half streaming, with a pause longer than uvicorn's default keep-alive halfway through (the
   reference app's clients saw read errors when the server closed idle connections);
5. compares the server's resident memory, open file descriptors, asyncio tasks and threads
   after the warm-up and at the end (both measured idle), then stops the server with SIGTERM.

Every answer is checked. Expected: the full answer ("You said: <question>"), or for a request
that met a fault the LLM client could not retry, a well-formed failure (a stream's error event
with a 5xx status then `[DONE]`, or a 502/503/504 with a JSON reason). Anything else (a client
read error, a 500, a wrong text, a stream without `[DONE]`) is unexpected. The count of visible
failures is checked against the faults the fake applied.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
BUNDLE_INIT = REPO / "tests" / "bundle-init"
DELTA = "response.output_text.delta"
FAULTS = [
    {"kind": "status", "status": 503, "every": 40, "times": None},
    {"kind": "status", "status": 429, "retry_after": 0.2, "every": 53, "times": None},
    {"kind": "drop", "after": 3, "every": 67, "times": None},
    {"kind": "malformed", "after": 3, "every": 89, "times": None},
    {"kind": "slow_first_token", "delay": 0.5, "every": 97, "times": None},
]
KEEP_ALIVE_PAUSE_SECONDS = 7.0  # longer than uvicorn's default keep-alive timeout (5 s)
MAX_RSS_GROWTH = 0.10


@dataclass
class Tally:
    ok: int = 0
    expected_failures: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    failed: set[int] = field(default_factory=set)  # requests answered with a failure

    def add(self, index: int, outcome: str, kind: str, latency: float) -> None:
        if outcome == "ok":
            self.ok += 1
            self.latencies.append(latency)
            return
        self.failed.add(index)
        if outcome == "expected":
            self.expected_failures[kind] += 1
        else:
            self.unexpected[kind] += 1


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def _is_expected_error_event(event: dict[str, Any]) -> bool:
    return (
        event.get("type") == "error"
        and event.get("status") in (502, 503, 504)
        and str(event.get("code", "")).startswith("upstream_")
        and isinstance(event.get("message"), str)
    )


async def one_request(http: httpx.AsyncClient, url: str, index: int) -> tuple[str, str]:
    """(outcome, kind): outcome is ok, expected or unexpected."""
    question = f"question {index}"
    expected = f"You said: {question}"
    body = {"input": [{"role": "user", "content": question}]}
    try:
        if index % 2:
            response = await http.post(url, json=body)
            if response.status_code == 200:
                output = response.json().get("output", [])
                text = "".join(
                    part.get("text", "")
                    for item in output
                    if item.get("type") == "message"
                    for part in item.get("content", [])
                )
                return ("ok", "") if text == expected else ("unexpected", "wrong text")
            detail = response.json().get("detail") if response.content else None
            if response.status_code in (502, 503, 504) and isinstance(detail, str):
                return "expected", f"invoke {response.status_code}"
            return "unexpected", f"invoke {response.status_code}"
        async with http.stream("POST", url, json={**body, "stream": True}) as response:
            if response.status_code != 200:
                await response.aread()
                return "unexpected", f"stream {response.status_code}"
            events: list[Any] = []
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    payload = line[6:]
                    events.append(payload if payload == "[DONE]" else json.loads(payload))
        if not events or events[-1] != "[DONE]":
            return "unexpected", "stream without [DONE]"
        errors = [e for e in events[:-1] if e.get("type") == "error" or "error" in e]
        if errors:
            if len(errors) == 1 and errors[0] is events[-2] and _is_expected_error_event(errors[0]):
                return "expected", f"stream error event {errors[0]['code']}"
            return "unexpected", f"stream error: {str(errors[0])[:80]}"
        text = "".join(e["delta"] for e in events[:-1] if e.get("type") == DELTA)
        return ("ok", "") if text == expected else ("unexpected", "wrong streamed text")
    except httpx.TimeoutException:
        return "unexpected", "client timeout"
    except httpx.HTTPError as exc:  # read errors, connection resets: the reference's failure
        return "unexpected", f"client {type(exc).__name__}"
    except (ValueError, KeyError) as exc:
        return "unexpected", f"unparsable answer: {type(exc).__name__}"


async def load(
    http: httpx.AsyncClient, url: str, first: int, count: int, concurrency: int, tally: Tally
) -> None:
    """Requests `first` to `first + count - 1`, sent by `concurrency` clients at once."""
    next_index = first

    async def worker() -> None:
        nonlocal next_index
        while next_index < first + count:
            index = next_index
            next_index += 1
            began = time.perf_counter()
            outcome, kind = await one_request(http, url, index)
            tally.add(index, outcome, kind, time.perf_counter() - began)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def soak(
    url: str, first: int, count: int, concurrency: int, pause: float, tally: Tally
) -> float:
    """`count` requests on one pool of keep-alive connections, in two halves separated by
    `pause` seconds of silence; returns the seconds spent sending requests."""
    limits = httpx.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=60
    )
    half = count // 2
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        started = time.perf_counter()
        await load(http, url, first, half, concurrency, tally)
        busy = time.perf_counter() - started
        await asyncio.sleep(pause)  # the connections wait in the pool, then are reused
        started = time.perf_counter()
        await load(http, url, first + half, count - half, concurrency, tally)
        return busy + time.perf_counter() - started


def proc_stats(pid: int, server_port: int, fake_port: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "fd_kinds": fd_kinds(pid),
        "os_threads": int(fields["Threads"]),
        **socket_counts(pid, server_port, fake_port),
    }


def fd_kinds(pid: int) -> dict[str, int]:
    """Open file descriptors by kind: sockets, pipes, ..., and files by name."""
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kinds[Path(target).name if target.startswith("/") else target.split(":")[0]] += 1
    return dict(sorted(kinds.items()))


def socket_counts(pid: int, server_port: int, fake_port: int) -> dict[str, int]:
    """The server's TCP sockets: from clients, to the fake workspace (the LLM client's pool)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    counts = Counter()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            parts = line.split()
            if parts[9] not in inodes:
                continue
            local, remote = int(parts[1].split(":")[1], 16), int(parts[2].split(":")[1], 16)
            if parts[3] == "0A":
                counts["listening_sockets"] += 1
            elif local == server_port:
                counts["client_sockets"] += 1
            elif remote == fake_port:
                counts["upstream_sockets"] += 1
            else:
                counts["other_tcp_sockets"] += 1
    return {
        key: counts[key]
        for key in ("listening_sockets", "client_sockets", "upstream_sockets", "other_tcp_sockets")
    }


def settled_stats(url: str, pid: int, stats_file: Path, fake_port: int) -> dict[str, int]:
    """The server's stats once idle: after the LLM client's idle connections have expired (5 s)
    and one more request has let its pool drop them (httpx expires them when next used)."""
    time.sleep(6)
    httpx.post(
        f"{url}/invocations", json={"input": [{"role": "user", "content": "settle"}]}, timeout=60
    )
    time.sleep(1)
    return server_stats(pid, stats_file, int(url.rsplit(":", 1)[1]), fake_port)


def server_stats(pid: int, stats_file: Path, server_port: int, fake_port: int) -> dict[str, int]:
    stats_file.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not stats_file.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not write its stats")
        time.sleep(0.05)
    return {**proc_stats(pid, server_port, fake_port), **json.loads(stats_file.read_text())}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def render(out: Path, framework: str, is_async: str) -> Path:
    config = out.parent / "soak-config.json"
    config.write_text(json.dumps({"agent_framework": framework, "async": is_async}))
    subprocess.run(
        [str(BUNDLE_INIT), str(REPO), "--config-file", str(config), "--output-dir", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    project = next(out.iterdir())
    subprocess.run(["uv", "sync", "-q"], cwd=project, check=True, timeout=900)
    return project


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not become healthy")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_"))}


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    project = render(work / "render", args.framework, args.async_)
    python = str(project / ".venv" / "bin" / "python")
    fake = subprocess.Popen(
        [python, "-m", "tests.fake_workspace", "--token-delay", "0.005"],
        cwd=project,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=(work / "fake.log").open("wb"),
        text=True,
    )
    server = None
    try:
        assert fake.stdout is not None
        fake_url = fake.stdout.readline().strip().split("=", 1)[1]
        fake_port = int(fake_url.rsplit(":", 1)[1])
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        stats_file = work / "stats.json"
        env = {
            **clean_env(),
            "DATABRICKS_HOST": fake_url,
            "DATABRICKS_TOKEN": "dapi-fake-token",
            "DATABRICKS_CONFIG_FILE": str(work / "no-databrickscfg"),
            "SERVING_ENDPOINT": "soak-endpoint",
            "AGENT_ENV_FILE": os.devnull,
            "LOG_LEVEL": "WARNING",
        }
        if args.tracing:
            env["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
        server = subprocess.Popen(
            [python, str(REPO / "bench" / "soak_server.py"), "--stats", str(stats_file)]
            + ["--port", str(port)],
            cwd=project,
            env=env,
            stdout=(work / "server.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_healthy(url, server)
        httpx.post(f"{fake_url}/__fake__/config", json={"faults": FAULTS}, timeout=10)

        warm = Tally()
        asyncio.run(soak(f"{url}/invocations", 0, args.warmup, args.concurrency, 0, warm))
        before = settled_stats(url, server.pid, stats_file, fake_port)
        httpx.delete(f"{fake_url}/__fake__/llm-calls", timeout=10)

        tally = Tally()
        seconds = asyncio.run(
            soak(
                f"{url}/invocations",
                args.warmup,
                args.requests,
                args.concurrency,
                KEEP_ALIVE_PAUSE_SECONDS,
                tally,
            )
        )
        calls = httpx.get(f"{fake_url}/__fake__/llm-calls", timeout=30).json()
        after = settled_stats(url, server.pid, stats_file, fake_port)
        health = httpx.get(f"{url}/health", timeout=10).status_code

        server.send_signal(signal.SIGTERM)
        exit_status = server.wait(timeout=60)
    finally:
        for process in (server, fake):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()

    faults_applied = Counter(
        f"{c['fault']} ({'stream' if c['stream'] else 'plain'})" for c in calls if c["fault"]
    )
    # Each request's LLM calls (the fake logs the question): a request must fail exactly when
    # its last LLM call met a fault the LLM client does not retry (a broken stream or answer),
    # or met a fault once its retries were used up; a slow first token only delays.
    last_call: dict[int, dict[str, Any]] = {}
    for call in calls:
        if call["prompt"].startswith("question "):
            last_call[int(call["prompt"].split()[1])] = call
    should_fail = {
        index
        for index, call in last_call.items()
        if call["fault"] in ("status", "drop", "malformed")
    }
    unexplained = sorted(tally.failed ^ should_fail)[:10]
    growth = (after["rss_kib"] - before["rss_kib"]) / before["rss_kib"]
    result = {
        "config": {
            "framework": args.framework,
            "async": args.async_,
            "requests": args.requests,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "tracing": args.tracing,
            "faults": FAULTS,
        },
        "seconds": round(seconds, 1),
        "requests_per_second": round(args.requests / seconds, 1),
        "ok": tally.ok,
        "expected_failures": dict(tally.expected_failures),
        "unexpected": dict(tally.unexpected),
        "warmup_unexpected": dict(warm.unexpected),
        "latency_p50_s": percentile(tally.latencies, 50),
        "latency_p99_s": percentile(tally.latencies, 99),
        "llm_calls": len(calls),
        "llm_faults_applied": dict(faults_applied),
        "requests_failed_by_faults": len(should_fail),
        "failures_not_explained_by_faults": unexplained,
        "idle_after_warmup": before,
        "idle_at_end": after,
        "rss_growth": round(growth, 4),
        "health_at_end": health,
        "exit_status_after_sigterm": exit_status,
    }
    problems = []
    if tally.unexpected or warm.unexpected:
        problems.append("unexpected errors")
    if unexplained or len(last_call) != args.requests:
        problems.append("the failures do not match the faults applied")
    if growth >= MAX_RSS_GROWTH:
        problems.append(f"resident memory grew by {growth:.1%}")
    if after["tasks"] > before["tasks"] or after["threads"] > before["threads"]:
        problems.append("asyncio tasks or threads leaked")
    if after["client_sockets"] or after["upstream_sockets"] > before["upstream_sockets"] + 2:
        problems.append("connections leaked")
    # The tracking store's sqlite connections come from SQLAlchemy's pool (at most 5 + 10 when
    # busy): not a leak. Every other file descriptor must be back where it was.
    if _fds_besides_store(after) > _fds_besides_store(before) + 2:
        problems.append("file descriptors leaked")
    if health != 200:
        problems.append("unhealthy at the end")
    result["problems"] = problems
    return result


def _fds_besides_store(stats: dict[str, Any]) -> int:
    return stats["fds"] - stats["fd_kinds"].get("mlflow.db", 0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--warmup", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--framework", default="langgraph", choices=["langgraph"])
    parser.add_argument("--async", dest="async_", default="yes", choices=["yes", "no"])
    parser.add_argument("--no-tracing", dest="tracing", action="store_false")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak-") as folder:
        result = run(args, Path(folder))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if result["problems"]:
        print("SOAK FAILED: " + "; ".join(result["problems"]), file=sys.stderr)
        return 1
    print("soak passed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
