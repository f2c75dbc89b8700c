"""Helpers shared by the agent's integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

WAIT = 10.0  # generous bound on loopback; tests wait for conditions, never for fixed times


async def eventually(check: Callable[[], Any], within: float = WAIT) -> None:
    """Poll ``check`` (sync or async) until it is true, or fail with TimeoutError."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.01)
