"""Fixtures of the chaos suite: child processes that are always reaped."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.chaos.procs import Processes


@pytest.fixture
async def procs() -> AsyncIterator[Processes]:
    p = Processes()
    try:
        yield p
    finally:
        await p.close()
