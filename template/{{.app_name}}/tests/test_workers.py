"""Several server processes (uvicorn workers): how many, and that each of them serves.

On Databricks Apps the server runs one worker per whole CPU of the app's container quota
(runtime/workers.py), locally one; AGENT_WORKERS or `--workers` sets the count.
"""

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from agent_server.runtime.workers import (
    WORKER_MEMORY_BYTES,
    WorkerSettingError,
    available_workers,
    cpu_limit,
    memory_limit,
    worker_count,
)
from tests.agent_process import (
    WorkerPair,
    agent_env,
    answered_by,
    reached_the_agent,
)
from tests.fake_workspace import FakeWorkspace
from tests.support import PROJECT_ROOT, read_sse, start_server_calls, user_request

GIB = 1024**3


def cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    """A stand-in for /sys/fs/cgroup holding `files`."""
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content + "\n", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("files", "cpus"),
    [
        ({"cpu.max": "max 100000"}, None),
        ({"cpu.max": "200000 100000"}, 2.0),
        ({"cpu.max": "150000 100000"}, 1.5),
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
        ({"cpu/cpu.cfs_quota_us": "400000", "cpu/cpu.cfs_period_us": "100000"}, 4.0),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "50000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 0.5),
        ({}, None),
    ],
    ids=["v2-no-quota", "v2-2", "v2-1.5", "v1-no-quota", "v1-4", "v1-cpuacct-0.5", "no-cgroup"],
)
def test_cpu_quota_from_cgroup_v2_then_v1(
    tmp_path: Path, files: dict[str, str], cpus: float | None
) -> None:
    assert cpu_limit(cgroup(tmp_path, files)) == cpus


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"memory.max": "max"}, None),
        ({"memory.max": str(6 * GIB)}, 6 * GIB),
        ({"memory/memory.limit_in_bytes": "9223372036854771712"}, None),  # v1: no limit
        ({"memory/memory.limit_in_bytes": str(2 * GIB)}, 2 * GIB),
        ({}, None),
    ],
    ids=["v2-no-limit", "v2-6g", "v1-no-limit", "v1-2g", "no-cgroup"],
)
def test_memory_limit_from_cgroup_v2_then_v1(
    tmp_path: Path, files: dict[str, str], limit: int | None
) -> None:
    assert memory_limit(cgroup(tmp_path, files)) == limit


@pytest.mark.parametrize(
    ("files", "usable_cpus", "workers"),
    [
        ({"cpu.max": "200000 100000", "memory.max": str(6 * GIB)}, 8, 2),  # Apps' default
        ({"cpu.max": "150000 100000"}, 8, 1),  # rounded down: never over the quota
        ({"cpu.max": "50000 100000"}, 8, 1),  # under one CPU: still one worker
        ({"cpu.max": "400000 100000"}, 2, 2),  # no more than the CPUs it may run on
        ({"cpu.max": "max 100000"}, 3, 3),  # no quota: the usable CPUs
        ({"cpu.max": "800000 100000", "memory.max": str(2 * WORKER_MEMORY_BYTES + 1)}, 8, 2),
        ({"cpu.max": "800000 100000", "memory.max": str(WORKER_MEMORY_BYTES // 2)}, 8, 1),
    ],
    ids=["2-cpus-6g", "1.5-cpus", "0.5-cpus", "affinity", "no-quota", "memory", "memory-tiny"],
)
def test_workers_fit_the_container(
    tmp_path: Path, files: dict[str, str], usable_cpus: int, workers: int
) -> None:
    assert available_workers(cgroup(tmp_path, files), cpus=usable_cpus) == workers


def test_one_worker_locally_the_container_s_count_on_apps(tmp_path: Path) -> None:
    root = cgroup(tmp_path, {"cpu.max": "200000 100000"})
    assert worker_count({}, on_apps=False, root=root) == 1
    assert worker_count({}, on_apps=True, root=root) == min(2, available_workers(root))
    assert worker_count({"AGENT_WORKERS": ""}, on_apps=False, root=root) == 1  # empty: unset
    assert worker_count({"AGENT_WORKERS": "3"}, on_apps=False, root=root) == 3
    assert worker_count({"AGENT_WORKERS": " 5 "}, on_apps=True, root=root) == 5


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_agent_workers_is_an_error_naming_it(value: str) -> None:
    reason = f"AGENT_WORKERS must be a positive integer.*{re.escape(repr(value))}"
    with pytest.raises(WorkerSettingError, match=reason):
        worker_count({"AGENT_WORKERS": value}, on_apps=True)


def test_start_server_hands_uvicorn_the_worker_count() -> None:
    """What start-server passes to uvicorn (uvicorn.run replaced by a print): locally, on
    Databricks Apps (DATABRICKS_APP_PORT set), with AGENT_WORKERS, and with --workers."""
    script = (
        "import json, os, uvicorn\n"
        "def run(app, **kwargs):\n"
        "    pid_in_log = '%(process)d' in json.dumps(kwargs['log_config'])\n"
        "    print(json.dumps([kwargs['workers'], pid_in_log]))\n"
        "uvicorn.run = run\n"
        "from agent_server import start_server\n"
        "start_server.main([])\n"
        "os.environ['DATABRICKS_APP_PORT'] = '8123'\n"
        "start_server.main([])\n"
        "os.environ['AGENT_WORKERS'] = '3'\n"
        "start_server.main([])\n"
        "start_server.main(['--workers', '5'])\n"
    )
    runs = start_server_calls(script, 4)
    on_apps = available_workers()
    assert runs == [[1, False], [on_apps, on_apps > 1], [3, True], [5, True]]


@pytest.mark.parametrize(
    ("settings", "args", "message"),
    [
        ({"AGENT_WORKERS": "many"}, (), "AGENT_WORKERS must be a positive integer"),
        ({}, ("--workers", "0"), "--workers must be a positive integer"),
    ],
    ids=["env", "flag"],
)
def test_the_server_refuses_a_bad_worker_count_before_serving(
    fake_workspace: FakeWorkspace, settings: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    env = agent_env(fake_workspace, **settings)
    result = subprocess.run(
        [sys.executable, "-m", "agent_server.start_server", "--port", "1", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Started server process" not in result.stderr + result.stdout


def test_two_workers_both_answer(two_worker_server: WorkerPair) -> None:
    """Both answer, tracing into one new local store, whose tables start-server created once
    before the workers started (two workers upgrading one sqlite schema at once can break it)."""
    server = two_worker_server.server

    def ask(index: int) -> bool:
        body = user_request(f"question {index}")
        response = httpx.post(f"{server.url}/invocations", json=body, timeout=60)
        return reached_the_agent(response)

    reached: list[bool] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        # Batches of 8 at once, until both workers have answered: which worker accepts a
        # connection is the kernel's choice.
        for batch in range(10):
            reached += pool.map(ask, range(batch * 8, batch * 8 + 8))
            if len(answered_by(server)) == 2:
                break
    log = server.log()

    assert reached and all(reached), log[-3000:]
    assert len(answered_by(server)) == 2, log[-3000:]
    assert log.count("Creating initial MLflow database tables") == 1, log[-3000:]


def run_readers(log: str, run_id: str) -> set[int]:
    """The workers (pids) that answered a GET of the run with 200, from their access log lines."""
    line = re.compile(rf'\[(\d+)\] [\d.]+:\d+ - "GET /responses/{run_id}\?[^"]*" 200')
    return {int(pid) for pid in line.findall(log)}


def test_a_background_run_is_streamed_through_every_worker(
    two_worker_server: WorkerPair,
) -> None:
    """A run started on one worker streams through either of them, live and once it ended:
    the workers share the server's run store (runtime/run_store.py)."""
    server = two_worker_server.server
    body = user_request("hello", background=True)
    started = httpx.post(f"{server.url}/responses", json=body, timeout=60)
    assert started.status_code == 200, started.text
    run_id = started.json()["id"]

    def read(_: int) -> list:
        # A connection of its own: the kernel hands it to either worker.
        url = f"{server.url}/responses/{run_id}?stream=true"
        with httpx.Client(timeout=60) as http, http.stream("GET", url) as answer:
            assert answer.status_code == 200, answer.read()
            return read_sse(answer)

    streams: list[list] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        # Readers while the run goes on, then after it ended, until both workers served one.
        for _ in range(10):
            streams += pool.map(read, range(8))
            if len(run_readers(server.log(), run_id)) == 2:
                break
    readers = run_readers(server.log(), run_id)
    log = server.log()

    assert len(readers) == 2, log[-3000:]
    assert streams[0][-1] == "[DONE]"
    assert streams[0][0]["type"] == "response.created"
    assert all(stream == streams[0] for stream in streams), "the workers streamed different runs"
