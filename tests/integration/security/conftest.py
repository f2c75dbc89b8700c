"""Fixtures for the security suite: a master with auth on (the default) and the fake peers of the master suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from edgerm.master.main import RunningMaster, start_master
from edgerm.master.state import MasterConfig


@pytest.fixture
async def master() -> AsyncIterator[RunningMaster]:
    async with start_master(config=MasterConfig(offer_timeout=60.0), allocation_interval=0.05) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s
