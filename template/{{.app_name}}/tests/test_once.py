"""runtime/once.py: the agent is built once per process, even by requests that come together."""

import asyncio
import threading
import time

import pytest

from agent_server.runtime.once import AsyncOnce, Once


def test_concurrent_first_calls_build_once() -> None:
    builds: list[int] = []

    def build() -> str:
        builds.append(1)
        time.sleep(0.05)  # long enough for the other threads to arrive mid-build
        return "agent"

    once = Once(build)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(once.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["agent"] * 8
    assert len(builds) == 1


def test_a_failed_build_is_not_kept() -> None:
    attempts: list[int] = []

    def build() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("workspace unreachable")
        return "agent"

    once = Once(build)
    with pytest.raises(ConnectionError):
        once.get()
    assert once.get() == "agent"
    assert once.get() == "agent"
    assert len(attempts) == 2


def test_async_concurrent_first_calls_build_once() -> None:
    builds: list[int] = []

    async def build() -> str:
        builds.append(1)
        await asyncio.sleep(0.05)
        return "agent"

    async def main() -> list[str]:
        once = AsyncOnce(build)
        return await asyncio.gather(*(once.get() for _ in range(8)))

    assert asyncio.run(main()) == ["agent"] * 8
    assert len(builds) == 1


def test_async_failed_build_is_not_kept() -> None:
    attempts: list[int] = []

    async def build() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("workspace unreachable")
        return "agent"

    async def main() -> str:
        once = AsyncOnce(build)
        with pytest.raises(ConnectionError):
            await once.get()
        await once.get()
        return await once.get()

    assert asyncio.run(main()) == "agent"
    assert len(attempts) == 2
