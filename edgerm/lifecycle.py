"""Start/stop plumbing shared by ``start_master`` and ``start_agent``.

Both return a :class:`Starting`: awaiting it gives the running object (the caller stops it), and ``async with``
gives it and stops it on exit.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar


class _HasStop(Protocol):
    async def stop(self) -> None: ...


T = TypeVar("T", bound=_HasStop)


class Starting(Generic[T]):
    """Awaitable, or usable in ``async with`` (which stops what it started)."""

    def __init__(self, start: Callable[[], Coroutine[Any, Any, T]]) -> None:
        self._start = start
        self._started: T | None = None

    def __await__(self) -> Generator[Any, None, T]:
        return self._start().__await__()

    async def __aenter__(self) -> T:
        self._started = await self._start()
        return self._started

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._started is not None:
            await self._started.stop()
