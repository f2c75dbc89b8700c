"""Framework B cannot see, kill, reconcile, acknowledge or tear down framework A's tasks; agents speak for themselves.

Real HTTP against a real master; the peers are the master suite's fakes, which
send exactly what a real agent or framework sends. Each framework has its own
credential. Every refusal is FORBIDDEN (or the core's own OFFER_NOT_YOURS /
UNKNOWN_TASK) and leaves the cluster state exactly as it was.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from edgerm import messages as m
from edgerm.auth.client import bearer
from edgerm.auth.principal import Role
from edgerm.errors import Forbidden, NotSubscribed, OfferNotYours, UnknownTask
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master.main import RunningMaster
from edgerm.model import Filters, Offer, TaskInfo, TaskState, WasmSpec
from edgerm.resources import Resources
from tests.integration.master.conftest import FakeAgent, FakeFramework, agent_token
from tests.support import admin_headers

MODULE = b"\0asm\1\0\0\0"


@dataclass
class Two:
    master: RunningMaster
    session: aiohttp.ClientSession
    agent: FakeAgent
    a: FakeFramework
    b: FakeFramework
    task: TaskInfo  # A's, RUNNING on the agent
    b_offer: Offer

    async def state(self, headers: dict[str, str] | None = None) -> dict[str, object]:
        url = self.master.url + "/api/v1/state"
        async with self.session.get(url, headers=headers or admin_headers(self.master.url)) as r:
            assert r.status == 200
            state: dict[str, object] = await r.json()
            return state


@pytest.fixture
async def two(master: RunningMaster, session: aiohttp.ClientSession) -> AsyncIterator[Two]:
    agent = FakeAgent(session, master.url, "edge-1", resources="cpus:4;mem:4096", token=agent_token(master, "edge-1"))
    await agent.register()
    await agent.subscribe()
    a = FakeFramework(session, master.url, "a", master.issue_token(Role.FRAMEWORK, "alice"))
    b = FakeFramework(session, master.url, "b", master.issue_token(Role.FRAMEWORK, "bob"))
    try:
        await a.subscribe()
        offer = (await a.next_event(m.Offers)).offers[0]
        task = TaskInfo(TaskId("a-task"), "a", offer.agent_id, Resources.parse("cpus:1;mem:128"), WasmSpec(MODULE))
        await a.call(m.Accept(a.framework_id, (offer.id,), (task,)))
        launch = await agent.next_command()
        assert isinstance(launch, m.LaunchCommand)
        await agent.update("a-task", TaskState.RUNNING, uuid="u-run")
        running = await a.next_event(m.Update)
        await a.call(m.Acknowledge(a.framework_id, running.status.agent_id, TaskId("a-task"), running.status.uuid))
        # a's leftovers come back to it at once (no filter after an ACCEPT): it declines them, so b gets them.
        held = tuple(o.id for o in master.service.core.offers_of(a.framework_id))
        if held:
            await a.call(m.Decline(a.framework_id, held, Filters(refuse_seconds=60)))
        await b.subscribe()
        b_offer = (await b.next_event(m.Offers)).offers[0]
        yield Two(master, session, agent, a, b, task, b_offer)
    finally:
        await a.close()
        await b.close()
        await agent.close()


async def test_b_cannot_touch_a(two: Two) -> None:
    a, b = two.a, two.b
    before = await two.state()
    refused: list[tuple[m.SchedulerCall, type[Exception]]] = [
        (m.Kill(a.framework_id, TaskId("a-task")), Forbidden),
        (m.Kill(b.framework_id, TaskId("a-task")), UnknownTask),
        (m.Acknowledge(a.framework_id, AgentId("edge-1"), TaskId("a-task"), "u-run"), Forbidden),
        (m.Reconcile(a.framework_id), Forbidden),
        (m.Teardown(a.framework_id), Forbidden),
        (m.Revive(a.framework_id), Forbidden),
        (m.Decline(a.framework_id, (two.b_offer.id,)), Forbidden),
    ]
    for call, error in refused:
        with pytest.raises(error):
            await b.call(call)  # B's own stream id, B's credential
        assert await two.state() == before, call
    # With A's stream id too: the credential decides, not the stream id.
    with pytest.raises(Forbidden):
        await b.call(m.Kill(a.framework_id, TaskId("a-task")), stream_id=a.stream_id)
    # Subscribing as A (to take its stream over) is refused, and A's stream stays up.
    with pytest.raises(Forbidden):
        await b.subscribe(a.framework_id)
    assert two.master.service.core.framework_active(a.framework_id)
    # A's offer ids are useless to B (and B's to A).
    with pytest.raises(OfferNotYours):
        await a.call(m.Accept(a.framework_id, (two.b_offer.id,), (two.task,)))
    assert await two.state() == before


async def test_reconciling_someone_elses_task_reveals_nothing(two: Two) -> None:
    await two.b.call(m.Reconcile(two.b.framework_id, ((TaskId("a-task"), AgentId("edge-1")),)))
    update = await two.b.next_event(m.Update)
    assert update.status.task_id == "a-task" and update.status.state is TaskState.UNKNOWN


async def test_b_sees_only_its_own_share_of_the_state(two: Two) -> None:
    assert two.master.tokens is not None
    mine = await two.state({"Authorization": two.b.headers["Authorization"]})
    assert [f["id"] for f in mine["frameworks"]] == [two.b.framework_id]  # type: ignore[index, union-attr]
    assert mine["tasks"] == []
    assert all(agent["tasks"] == [] for agent in mine["agents"])  # type: ignore[index, union-attr]
    theirs = await two.state({"Authorization": two.a.headers["Authorization"]})
    assert [t["id"] for t in theirs["tasks"]] == ["a-task"]  # type: ignore[index, union-attr]
    everything = await two.state()
    assert len(everything["frameworks"]) == 2  # type: ignore[arg-type]


async def test_the_admin_tears_any_framework_down(two: Two) -> None:
    assert two.master.tokens is not None
    admin = FakeFramework(two.session, two.master.url, "ops", two.master.tokens.admin)
    await admin.call(m.Teardown(two.a.framework_id), stream_id="")  # no stream: the operator path
    await two.a.stream_ended()
    kill = await two.agent.next_command()
    assert kill == m.KillCommand(TaskId("a-task"), two.task.kill_grace)
    state = await two.state()
    assert [f["id"] for f in state["frameworks"]] == [two.b.framework_id]  # type: ignore[index, union-attr]
    assert two.master.service.core.framework_active(two.b.framework_id)
    # A framework credential has no operator path: without a stream id it is refused.
    with pytest.raises(NotSubscribed):
        await two.b.call(m.Teardown(FrameworkId(two.b.framework_id)), stream_id="")


async def test_an_agent_cannot_take_over_another_agents_id(two: Two) -> None:
    intruder = FakeAgent(two.session, two.master.url, "edge-1", token=agent_token(two.master, "edge-2"))
    before = await two.state()
    for attempt in (intruder.register(), intruder.heartbeat(), intruder.update("a-task", TaskState.FAILED, "u-x")):
        with pytest.raises(Forbidden):
            await attempt
    with pytest.raises(Forbidden):
        await intruder.subscribe()  # the real agent's command stream is not taken over
    assert await two.state() == before
    # A framework credential is no agent either.
    framework_as_agent = FakeAgent(two.session, two.master.url, "edge-1", token=two.master.issue_token(Role.FRAMEWORK))
    with pytest.raises(Forbidden):
        await framework_as_agent.heartbeat()
    assert bearer(None) == {}
