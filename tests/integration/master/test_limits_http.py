"""The abuse cases of issue #13 over real HTTP: refused at the wire boundary, typed, and nothing poisoned."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from edgerm import limits, wire
from edgerm.auth.principal import Role
from edgerm.ids import AgentId
from edgerm.master.main import RunningMaster
from edgerm.v1 import agent_pb2, common_pb2

PB = {"Content-Type": "application/x-protobuf"}
AC = agent_pb2.AgentCall


def _token(master: RunningMaster, agent_id: str) -> str:
    """A credential of the agent ``agent_id`` (only that agent may speak for its id)."""
    return master.issue_token(Role.AGENT, f"limits-{agent_id}", agent_id=AgentId(agent_id))


async def _post(session: aiohttp.ClientSession, url: str, body: bytes, token: str) -> tuple[int, bytes]:
    async with session.post(url, data=body, headers={**PB, "Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.read()


async def test_a_heartbeat_listing_too_many_task_ids_is_refused_before_any_work(
    master: RunningMaster, session: aiohttp.ClientSession, make_agent: Callable[..., Any]
) -> None:
    agent = make_agent("edge-1")
    await agent.register()
    before = master.handlers.state()
    ids = [f"t{i}" for i in range(limits.MAX_TASKS_PER_AGENT_CALL + 1)]
    body = AC(agent_id="edge-1", type=AC.HEARTBEAT, heartbeat=AC.Heartbeat(task_ids=ids)).SerializeToString()
    status, reply = await _post(session, master.url + "/api/v1/agent", body, _token(master, "edge-1"))
    assert status == 413 and wire.decode_error(reply).code == "TOO_LARGE"
    assert master.handlers.state() == before
    assert master.service.gauges()["edgerm_agent_commands_queued"] == 0  # no kill was queued


async def test_an_infinite_resource_is_refused_and_state_and_metrics_keep_answering(
    master: RunningMaster, session: aiohttp.ClientSession
) -> None:
    R = common_pb2.Resource
    info = common_pb2.AgentInfo(
        id="edge-inf",
        hostname="h",
        heartbeat_interval_seconds=5,
        resources=[R(name="cpus", type=R.SCALAR, scalar=float("inf"))],
    )
    body = AC(agent_id="edge-inf", type=AC.REGISTER, register=AC.Register(agent=info)).SerializeToString()
    status, reply = await _post(session, master.url + "/api/v1/agent", body, _token(master, "edge-inf"))
    assert status == 400 and wire.decode_error(reply).code == "MALFORMED"
    for path in ("/api/v1/state", "/metrics"):
        async with session.get(master.url + path, headers=master.auth_headers()) as r:
            assert r.status == 200
    assert not master.service.core.agent_known("edge-inf")  # type: ignore[arg-type]
