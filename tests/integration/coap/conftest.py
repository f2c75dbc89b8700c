"""Fixtures: a real master with its CoAP endpoint on an ephemeral UDP port, and a raw aiocoap client.

``master`` is an ``--insecure`` master: these tests are about the CoAP
protocol (windows, block-wise, Message IDs, typed errors) and speak plain
CoAP with raw clients. OSCORE on a secure master: ``test_oscore.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiocoap
import pytest

from edgerm.master.main import RunningMaster, start_master

MAX_BODY = 4096  # the fixture master's payload limit


@pytest.fixture
async def master() -> AsyncIterator[RunningMaster]:
    async with start_master(coap_port=0, allocation_interval=0.05, max_body=MAX_BODY, insecure=True) as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        yield ctx
    finally:
        await ctx.shutdown()
