"""Baseline for bench/heartbeats.py (CoAP): a bare aiocoap server that parses an AgentCall and answers HEARTBEAT_ACK.

It does what any protobuf-over-CoAP server must do per heartbeat (receive a CON, parse, encode, piggyback the
answer) and nothing more, so the master's extra cost per CoAP heartbeat shows as a ratio against it. Bound to
127.0.0.1 on the given UDP port, like the master.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

import aiocoap
from aiocoap import resource

from edgerm.v1 import agent_pb2

ACK = agent_pb2.AgentEvent(type=agent_pb2.AgentEvent.HEARTBEAT_ACK).SerializeToString()


class Agent(resource.Resource):  # type: ignore[misc]
    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        call = agent_pb2.AgentCall()
        call.ParseFromString(request.payload)
        if call.type == agent_pb2.AgentCall.REGISTER:
            reply = agent_pb2.AgentEvent(type=agent_pb2.AgentEvent.REGISTERED)
            reply.registered.agent_id = call.register.agent.id
            return aiocoap.Message(code=aiocoap.CHANGED, payload=reply.SerializeToString())
        return aiocoap.Message(code=aiocoap.CHANGED, payload=ACK)


async def serve(port: int) -> None:
    site = resource.Site()
    site.add_resource(["agent"], Agent())
    ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port), transports=["udp6"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await ctx.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.getLogger("coap-server").setLevel(logging.WARNING)
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
