"""How many server processes (uvicorn workers) to run: one per CPU the container may use.

A Databricks app runs in a container whose CPU and memory its compute size sets ("by default,
each app can use up to 2 virtual CPUs (vCPUs) and 6 GB of memory", Databricks Apps docs, system
environment; `compute_size` MEDIUM, LARGE, ... in the bundle's app resource). The host behind it
may have more CPUs than the app may use, so the count comes from the container's cgroup: its CPU
quota, capped by its memory limit.

The quota is rounded down (at least 1): with 1.5 CPUs, two busy workers would use up the quota
early in each scheduling period and the kernel would pause the whole container until the next,
stalling every stream; a Python process uses about one CPU at most, so a worker per whole CPU
stays within the quota.

AGENT_WORKERS sets the count outright (start-server's `--workers` wins over it).
"""

import math
import os
from collections.abc import Mapping
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
ENV_VAR = "AGENT_WORKERS"
# Memory to allow each worker: a warmed-up worker holds about 0.4 GB (resident set after
# answering: 425 MB with the defaults and local tracing, 372 MB with an agent memory and MCP
# tools); the rest is for the requests in flight and the server's parent process (about 35 MB).
WORKER_MEMORY_BYTES = 1024**3
# cgroup v1 reports "no limit" as a huge number (the largest page-aligned 64-bit value).
_NO_LIMIT_V1 = 1 << 62


class WorkerSettingError(ValueError):
    """A worker count that is not a positive integer."""


def positive_count(value: str, name: str = ENV_VAR) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise WorkerSettingError(f"{name} must be a positive integer (processes), not {value!r}")
    return count


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the cgroup's quota allows (v2 `cpu.max`, else v1 CFS quota / period); None: no quota."""
    v2 = _read(root / "cpu.max")  # "max 100000" (no quota) or "200000 100000"
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return None if quota == "max" else int(quota) / int(period or 100_000)
    for folder in (root / "cpu", root / "cpu,cpuacct"):
        quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            return None if int(quota) <= 0 else int(quota) / int(period)  # -1: no quota
    return None


def memory_limit(root: Path = CGROUP_ROOT) -> int | None:
    """Bytes the cgroup may use (v2 `memory.max`, else v1 `memory.limit_in_bytes`); None: none."""
    v2 = _read(root / "memory.max")
    if v2 is not None:
        return None if v2 == "max" else int(v2)
    v1 = _read(root / "memory" / "memory.limit_in_bytes")
    return None if v1 is None or int(v1) >= _NO_LIMIT_V1 else int(v1)


def usable_cpus() -> int:
    """CPUs this process may be scheduled on (a container's cpuset, `taskset`)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def available_workers(root: Path = CGROUP_ROOT, cpus: int | None = None) -> int:
    """Whole CPUs of the quota (at least 1), no more than the CPUs usable and the memory allows."""
    count = cpus if cpus is not None else usable_cpus()
    quota = cpu_limit(root)
    if quota is not None:
        count = min(count, max(1, math.floor(quota)))
    memory = memory_limit(root)
    if memory is not None:
        count = min(count, max(1, memory // WORKER_MEMORY_BYTES))
    return max(1, count)


def worker_count(environ: Mapping[str, str], on_apps: bool, root: Path = CGROUP_ROOT) -> int:
    """AGENT_WORKERS if set; on Databricks Apps what the container allows; locally 1, so that
    `--reload` and a debugger see the one process that serves."""
    value = environ.get(ENV_VAR, "").strip()
    if value:
        return positive_count(value)
    return available_workers(root) if on_apps else 1
