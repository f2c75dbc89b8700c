"""Bad input over real HTTP: a typed error reply, the state unchanged, the master still serving.

Each case sends one bad request to a master holding a registered agent, a
framework with an outstanding offer and a second framework, then checks the
reply's status and ``edgerm.v1.Error`` code, that ``GET /api/v1/state`` is
identical before and after, and that the master still answers a heartbeat.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from edgerm import messages as m
from edgerm import wire
from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId
from edgerm.master.main import RunningMaster
from edgerm.model import DockerSpec, Offer, TaskInfo, TaskState, TaskStatus, WasmSpec
from edgerm.resources import Resources
from edgerm.v1 import agent_pb2, scheduler_pb2
from tests.integration.master.conftest import agent_token
from tests.support import admin_headers

PB = {"Content-Type": "application/x-protobuf"}
MODULE = b"\0asm\1\0\0\0"
MAX_BODY = 64 * 1024  # the fixture master's limit (conftest.MAX_BODY)


@dataclass
class Cluster:
    master: RunningMaster
    session: aiohttp.ClientSession
    agent: Any  # conftest.FakeAgent
    owner: Any  # conftest.FakeFramework holding `offer`
    other: Any  # conftest.FakeFramework with no offer
    offer: Offer
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def agent_url(self) -> str:
        return self.master.url + "/api/v1/agent"

    @property
    def scheduler_url(self) -> str:
        return self.master.url + "/api/v1/scheduler"

    async def post(self, url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """POST with the credential of the fake agent or of the frameworks, unless ``headers`` name one."""
        headers = dict(PB if headers is None else headers)
        if "Authorization" not in headers:
            peer = self.agent if url == self.agent_url else self.owner
            headers["Authorization"] = peer.headers["Authorization"]
        async with self.session.post(url, data=body, headers=headers) as r:
            return r.status, await r.read()

    def as_agent(self, agent_id: str) -> dict[str, str]:
        """Headers with a credential bound to ``agent_id`` (made once per id)."""
        if agent_id not in self.tokens:
            self.tokens[agent_id] = agent_token(self.master, agent_id)
        return dict(PB, Authorization=f"Bearer {self.tokens[agent_id]}")

    async def schedule(self, call: m.SchedulerCall, stream_id: str | None = None) -> tuple[int, bytes]:
        sid = self.owner.stream_id if stream_id is None else stream_id
        headers = dict(PB, **({"Edgerm-Stream-Id": sid} if sid else {}))
        return await self.post(self.scheduler_url, wire.encode_call(call), headers)

    def task(self, resources: str = "cpus:1;mem:128", **kwargs: Any) -> TaskInfo:
        fields: dict[str, Any] = {"container": WasmSpec(module=MODULE), **kwargs}
        return TaskInfo(TaskId("bad-1"), "bad", self.offer.agent_id, Resources.parse(resources), **fields)


@pytest.fixture
async def cluster(
    master: RunningMaster,
    session: aiohttp.ClientSession,
    make_agent: Callable[..., Any],
    make_framework: Callable[..., Any],
) -> AsyncIterator[Cluster]:
    agent = make_agent("edge-1")
    await agent.register()
    await agent.subscribe()
    owner = make_framework("owner")
    await owner.subscribe()
    offer = (await owner.next_event(m.Offers)).offers[0]
    other = make_framework("other")
    await other.subscribe()
    yield Cluster(master, session, agent, owner, other, offer)


# -- the cases: each sends one bad request and returns (status, body) --------------------


async def malformed_agent_call(c: Cluster) -> tuple[int, bytes]:
    return await c.post(c.agent_url, b"\xff\xff\xff\xff")


async def malformed_scheduler_call(c: Cluster) -> tuple[int, bytes]:
    return await c.post(c.scheduler_url, b"\x0a\x05ab")  # a field cut short


async def unknown_agent_call_type(c: Cluster) -> tuple[int, bytes]:
    return await c.post(c.agent_url, agent_pb2.AgentCall(agent_id="edge-1", type=42).SerializeToString())


async def missing_agent_call_type(c: Cluster) -> tuple[int, bytes]:
    return await c.post(c.agent_url, agent_pb2.AgentCall(agent_id="edge-1").SerializeToString())


async def unknown_scheduler_call_type(c: Cluster) -> tuple[int, bytes]:
    body = scheduler_pb2.Call(framework_id=c.owner.framework_id, type=42).SerializeToString()
    return await c.post(c.scheduler_url, body, dict(PB, **{"Edgerm-Stream-Id": c.owner.stream_id}))


async def oversized_body(c: Cluster) -> tuple[int, bytes]:
    return await c.post(c.agent_url, b"\0" * (MAX_BODY + 1))


async def oversized_chunked_body(c: Cluster) -> tuple[int, bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"\0" * (MAX_BODY // 2)

    async with c.session.post(c.scheduler_url, data=chunks(), headers=c.owner.headers) as r:
        assert "Content-Length" not in r.request_info.headers
        return r.status, await r.read()


async def wrong_content_type(c: Cluster) -> tuple[int, bytes]:
    body = wire.encode_agent_call(m.AgentHeartbeat(AgentId("edge-1")))
    return await c.post(c.agent_url, body, {"Content-Type": "application/json"})


async def unknown_offer(c: Cluster) -> tuple[int, bytes]:
    return await c.schedule(m.Accept(c.owner.framework_id, (OfferId("no-such-offer"),), (c.task(),)))


async def someone_elses_offer(c: Cluster) -> tuple[int, bytes]:
    call = m.Accept(c.other.framework_id, (c.offer.id,), (c.task(),))
    return await c.schedule(call, c.other.stream_id)


async def resources_beyond_the_offer(c: Cluster) -> tuple[int, bytes]:
    return await c.schedule(m.Accept(c.owner.framework_id, (c.offer.id,), (c.task("cpus:1000;mem:128"),)))


async def executor_absent_on_the_agent(c: Cluster) -> tuple[int, bytes]:
    task = c.task(container=DockerSpec(image="busybox"))
    return await c.schedule(m.Accept(c.owner.framework_id, (c.offer.id,), (task,)))


async def wasm_task_without_module(c: Cluster) -> tuple[int, bytes]:
    call = wire.call_to_pb(m.Accept(c.owner.framework_id, (c.offer.id,), (c.task(),)))
    call.accept.operations[0].launch.tasks[0].container.wasm.module = b""
    headers = dict(PB, **{"Edgerm-Stream-Id": c.owner.stream_id})
    return await c.post(c.scheduler_url, call.SerializeToString(), headers)


async def unknown_agent_heartbeat(c: Cluster) -> tuple[int, bytes]:
    body = wire.encode_agent_call(m.AgentHeartbeat(AgentId("stranger")))
    return await c.post(c.agent_url, body, c.as_agent("stranger"))


async def unknown_agent_update(c: Cluster) -> tuple[int, bytes]:
    status = TaskStatus(TaskId("x"), AgentId("stranger"), TaskState.RUNNING, uuid="u")
    body = wire.encode_agent_call(m.StatusUpdate(AgentId("stranger"), status))
    return await c.post(c.agent_url, body, c.as_agent("stranger"))


async def unknown_agent_subscribe(c: Cluster) -> tuple[int, bytes]:
    body = wire.encode_agent_call(m.SubscribeAgent(AgentId("stranger")))
    return await c.post(c.agent_url, body, c.as_agent("stranger"))


async def heartbeat_for_another_agent(c: Cluster) -> tuple[int, bytes]:
    return await c.post(c.agent_url, wire.encode_agent_call(m.AgentHeartbeat(AgentId("edge-1"))), c.as_agent("edge-2"))


async def register_as_another_agent(c: Cluster) -> tuple[int, bytes]:
    body = wire.encode_agent_call(m.RegisterAgent(c.agent.info))
    return await c.post(c.agent_url, body, c.as_agent("edge-2"))


async def agent_call_without_credential(c: Cluster) -> tuple[int, bytes]:
    return await c.post(
        c.agent_url, wire.encode_agent_call(m.AgentHeartbeat(AgentId("edge-1"))), {**PB, "Authorization": ""}
    )


async def scheduler_call_with_a_made_up_token(c: Cluster) -> tuple[int, bytes]:
    headers = {**PB, "Authorization": "Bearer edgerm_framework_made-up", "Edgerm-Stream-Id": c.owner.stream_id}
    return await c.post(c.scheduler_url, wire.encode_call(m.Revive(c.owner.framework_id)), headers)


async def agent_credential_on_the_scheduler_api(c: Cluster) -> tuple[int, bytes]:
    headers = {**c.agent.headers, "Edgerm-Stream-Id": c.owner.stream_id}
    return await c.post(c.scheduler_url, wire.encode_call(m.Revive(c.owner.framework_id)), headers)


async def update_for_another_agent(c: Cluster) -> tuple[int, bytes]:
    status = TaskStatus(TaskId("x"), AgentId("someone-else"), TaskState.RUNNING, uuid="u")
    return await c.post(c.agent_url, wire.encode_agent_call(m.StatusUpdate(AgentId("edge-1"), status)))


async def call_without_stream_id(c: Cluster) -> tuple[int, bytes]:
    return await c.schedule(m.Decline(c.owner.framework_id, (c.offer.id,)), stream_id="")


async def call_with_wrong_stream_id(c: Cluster) -> tuple[int, bytes]:
    return await c.schedule(m.Decline(c.owner.framework_id, (c.offer.id,)), stream_id=c.other.stream_id)


async def call_from_unsubscribed_framework(c: Cluster) -> tuple[int, bytes]:
    return await c.schedule(m.Revive(FrameworkId("nobody")), stream_id="whatever")


async def kill_of_unknown_task(c: Cluster) -> tuple[int, bytes]:
    return await c.schedule(m.Kill(c.owner.framework_id, TaskId("never-launched")))


Case = Callable[[Cluster], Awaitable[tuple[int, bytes]]]

CASES: list[tuple[Case, int, str]] = [
    (malformed_agent_call, 400, "MALFORMED"),
    (malformed_scheduler_call, 400, "MALFORMED"),
    (unknown_agent_call_type, 400, "UNKNOWN_CALL"),
    (missing_agent_call_type, 400, "UNKNOWN_CALL"),
    (unknown_scheduler_call_type, 400, "UNKNOWN_CALL"),
    (oversized_body, 413, "TOO_LARGE"),
    (oversized_chunked_body, 413, "TOO_LARGE"),
    (wrong_content_type, 400, "MALFORMED"),
    (unknown_offer, 404, "UNKNOWN_OFFER"),
    (someone_elses_offer, 403, "OFFER_NOT_YOURS"),
    (resources_beyond_the_offer, 422, "INSUFFICIENT_RESOURCES"),
    (executor_absent_on_the_agent, 422, "INVALID_TASK"),
    (wasm_task_without_module, 400, "MALFORMED"),
    (unknown_agent_heartbeat, 404, "UNKNOWN_AGENT"),
    (unknown_agent_update, 404, "UNKNOWN_AGENT"),
    (unknown_agent_subscribe, 404, "UNKNOWN_AGENT"),
    (update_for_another_agent, 400, "MALFORMED"),
    (heartbeat_for_another_agent, 403, "FORBIDDEN"),
    (register_as_another_agent, 403, "FORBIDDEN"),
    (agent_call_without_credential, 401, "UNAUTHENTICATED"),
    (scheduler_call_with_a_made_up_token, 401, "UNAUTHENTICATED"),
    (agent_credential_on_the_scheduler_api, 403, "FORBIDDEN"),
    (call_without_stream_id, 403, "NOT_SUBSCRIBED"),
    (call_with_wrong_stream_id, 403, "NOT_SUBSCRIBED"),
    (call_from_unsubscribed_framework, 403, "NOT_SUBSCRIBED"),
    (kill_of_unknown_task, 404, "UNKNOWN_TASK"),
]


async def _state(c: Cluster) -> object:
    async with c.session.get(c.master.url + "/api/v1/state", headers=admin_headers(c.master.url)) as r:
        assert r.status == 200
        return await r.json()


@pytest.mark.parametrize(("case", "status", "code"), CASES, ids=[c[0].__name__ for c in CASES])
async def test_bad_input_is_refused_with_a_typed_error(cluster: Cluster, case: Case, status: int, code: str) -> None:
    before = await _state(cluster)
    got_status, body = await case(cluster)
    assert got_status == status, body
    error = wire.decode_error(body)
    assert error.code == code, error
    assert error.message
    assert await _state(cluster) == before, "a refused call changed the state"

    # The master still serves: the agent heartbeats, the offer is still good.
    assert await cluster.agent.heartbeat() == m.HeartbeatAck(False)
    task = cluster.task()
    await cluster.owner.call(m.Accept(cluster.owner.framework_id, (cluster.offer.id,), (task,)))
    launch = await cluster.agent.next_command()
    assert isinstance(launch, m.LaunchCommand) and launch.task.task_id == task.task_id

    async with cluster.session.get(cluster.master.url + "/metrics", headers=admin_headers(cluster.master.url)) as r:
        assert f'edgerm_errors_total{{code="{code}"}} 1' in await r.text()


async def test_module_requests(cluster: Cluster) -> None:
    auth = admin_headers(cluster.master.url)
    async with cluster.session.get(cluster.master.url + "/api/v1/modules/not-a-hash", headers=auth) as r:
        assert r.status == 400
        assert wire.decode_error(await r.read()).code == "MALFORMED"
    async with cluster.session.get(cluster.master.url + "/api/v1/modules/" + "0" * 64, headers=auth) as r:
        assert r.status == 404
        assert "no module" in wire.decode_error(await r.read()).message


async def test_dashboard_is_served(cluster: Cluster) -> None:
    async with cluster.session.get(cluster.master.url + "/", headers=admin_headers(cluster.master.url)) as r:
        assert r.status == 200 and r.content_type == "text/html"
        text = await r.text()
    assert "<h1>Cluster</h1>" in text and 'href="/ui/tasks"' in text
