"""Baseline for bench/heartbeats.py: a bare aiohttp server that parses an AgentCall and answers a HEARTBEAT_ACK.

It does what any protobuf-over-HTTP server must do per heartbeat and nothing more, so the master's extra cost per
heartbeat shows as a ratio against it.
"""

from __future__ import annotations

import argparse

from aiohttp import web

from edgerm.v1 import agent_pb2

ACK = agent_pb2.AgentEvent(type=agent_pb2.AgentEvent.HEARTBEAT_ACK)


async def agent(request: web.Request) -> web.Response:
    call = agent_pb2.AgentCall()
    call.ParseFromString(await request.read())
    if call.type == agent_pb2.AgentCall.REGISTER:
        reply = agent_pb2.AgentEvent(type=agent_pb2.AgentEvent.REGISTERED)
        reply.registered.agent_id = call.register.agent.id
    else:
        reply = ACK
    return web.Response(body=reply.SerializeToString(), content_type="application/x-protobuf")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/api/v1/agent", agent)
    app.router.add_get("/", lambda _r: web.Response(text="ok"))
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
