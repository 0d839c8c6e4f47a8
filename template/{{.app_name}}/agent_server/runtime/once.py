"""A value built once per process, on first use: for the agent, whose build contacts the workspace.

The first callers wait for one build together (under a lock) rather than each starting their own.
A build that fails is not kept: the next call builds again, so a workspace that was briefly
unreachable does not break the process for good.
"""

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Once(Generic[T]):
    """`get()` returns build()'s value, built by the first call; for sync code (threads)."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: T | None = None

    @property
    def done(self) -> bool:
        """Whether the value is built."""
        return self._value is not None

    def get(self) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
        return self._value


class AsyncOnce(Generic[T]):
    """`await get()` returns build()'s value, built by the first call; for async code."""

    def __init__(self, build: Callable[[], Awaitable[T]]) -> None:
        self._build = build
        self._lock = asyncio.Lock()
        self._value: T | None = None

    @property
    def done(self) -> bool:
        """Whether the value is built."""
        return self._value is not None

    async def get(self) -> T:
        if self._value is None:
            async with self._lock:
                if self._value is None:
                    self._value = await self._build()
        return self._value
