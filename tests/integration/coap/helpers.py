"""Test-side helpers for the CoAP tests: a raw aiocoap client, polling, agent infos.

The raw client sends exactly what a constrained device would: protobuf
payloads in CON requests, built with :mod:`edgerm.wire`. No mocks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiocoap

from edgerm import messages as m
from edgerm import wire
from edgerm.ids import AgentId
from edgerm.model import AgentInfo
from edgerm.resources import Resources
from tests.support import WAIT, eventually

__all__ = ["WAIT", "eventually"]


async def request(
    ctx: Any, code: aiocoap.Code, uri: str, payload: bytes = b"", *, blockwise: bool = True, **options: Any
) -> aiocoap.Message:
    """One CON request, its response within ``WAIT`` seconds."""
    message = aiocoap.Message(code=code, uri=uri, payload=payload, **options)
    async with asyncio.timeout(WAIT):
        response: aiocoap.Message = await ctx.request(message, handle_blockwise=blockwise).response
    return response


def agent_info(agent_id: str, heartbeat: float = 30.0) -> AgentInfo:
    return AgentInfo(
        AgentId(agent_id),
        f"host-{agent_id}",
        Resources.parse("cpus:2;mem:1024"),
        {"os": "linux", "executors": frozenset({"wasm"})},
        heartbeat_interval=heartbeat,
    )


async def register(ctx: Any, coap_url: str, agent_id: str, heartbeat: float = 30.0) -> None:
    reply = await request(
        ctx, aiocoap.POST, coap_url + "/agent", wire.encode_agent_call(m.RegisterAgent(agent_info(agent_id, heartbeat)))
    )
    assert reply.code == aiocoap.CHANGED, reply
    assert isinstance(wire.decode_agent_event(reply.payload), m.AgentRegistered)


def error_of(reply: aiocoap.Message) -> m.ErrorEvent:
    return wire.decode_error(reply.payload)
