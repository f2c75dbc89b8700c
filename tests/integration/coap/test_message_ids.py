"""Message-ID wrap: one agent sends more than 65,536 CON requests to one master without a failure.

aiocoap numbers CON messages with 16 bits per client context and the master
remembers each (remote, Message ID) for 247 s, so a single socket sending
faster than ~265 requests/s eventually reuses an ID the master still
remembers and the request silently times out. ``CoapAgentTransport``
replaces its client context before that (edgerm/agent/coap_transport.py).
This test sends 70,000 heartbeats back to back through one transport and
checks that every one was answered and counted by the master.
"""

from __future__ import annotations

import time

import pytest

from edgerm import messages as m
from edgerm.agent.coap_transport import DEFAULT_ROTATE_AFTER, CoapAgentTransport
from edgerm.ids import AgentId
from edgerm.master.main import RunningMaster
from tests.integration.coap.helpers import agent_info

REQUESTS = 70_000


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_seventy_thousand_requests_from_one_agent_without_a_failure(master: RunningMaster) -> None:
    assert master.coap_url is not None
    agent = AgentId("busy-agent")
    transport = CoapAgentTransport(master.coap_url)
    try:
        await transport.call(m.RegisterAgent(agent_info(agent)))
        beat = m.AgentHeartbeat(agent)
        started = time.monotonic()
        for _ in range(REQUESTS):
            assert await transport.call(beat) == m.HeartbeatAck(False)
        elapsed = time.monotonic() - started
    finally:
        await transport.close()
    assert master.service.metrics.heartbeats == REQUESTS
    # More Message IDs than 16 bits hold went out, through contexts rotated in time.
    assert REQUESTS + 1 > 65_536
    assert transport.lanes_opened == 1 + (REQUESTS + 1) // DEFAULT_ROTATE_AFTER
    print(
        f"\n{REQUESTS} CoAP requests in {elapsed:.1f} s ({REQUESTS / elapsed:.0f}/s), {transport.lanes_opened} contexts"
    )
