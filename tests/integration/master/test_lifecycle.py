"""A real master on 127.0.0.1:0 with a fake agent and framework over real HTTP.

The whole life of a WASM task: register, heartbeat, command stream, framework
subscription, offers, accept, LAUNCH pushed to the agent, RUNNING and FINISHED
updates forwarded to the framework and acknowledged.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

import aiohttp

from edgerm import messages as m
from edgerm.ids import TaskId
from edgerm.master.main import RunningMaster, start_master
from edgerm.model import TaskInfo, TaskState, WasmSpec
from edgerm.resources import Resources
from tests.support import admin_headers

MODULE = b"\0asm\1\0\0\0"


async def _state(session: aiohttp.ClientSession, master: RunningMaster) -> dict[str, object]:
    async with session.get(master.url + "/api/v1/state", headers=admin_headers(master.url)) as r:
        assert r.status == 200
        state: dict[str, object] = await r.json()
        return state


def _task(state: dict[str, object], task_id: str) -> dict[str, object]:
    tasks = state["tasks"]
    assert isinstance(tasks, list)
    return next(t for t in tasks if t["id"] == task_id)


async def test_wasm_task_lifecycle(
    master: RunningMaster,
    session: aiohttp.ClientSession,
    make_agent: Callable[..., Any],
    make_framework: Callable[..., Any],
) -> None:
    agent = make_agent("edge-1")
    registered = await agent.register()
    assert registered.agent_id == "edge-1" and registered.master_id == "master"
    assert await agent.heartbeat() == m.HeartbeatAck(commands_pending=False)
    await agent.subscribe()

    framework = make_framework("lifecycle")
    subscribed = await framework.subscribe()
    assert subscribed.framework_id, "the master assigns an id"
    assert subscribed.heartbeat_interval > 0
    assert framework.stream_id

    offers = await framework.next_event(m.Offers)
    (offer,) = offers.offers
    assert offer.agent_id == "edge-1" and offer.framework_id == framework.framework_id
    assert Resources.parse("cpus:1;mem:128") <= offer.resources

    task = TaskInfo(
        task_id=TaskId("t1"),
        name="hello",
        agent_id=offer.agent_id,
        resources=Resources.parse("cpus:1;mem:128"),
        container=WasmSpec(module=MODULE),
    )
    await framework.call(m.Accept(framework.framework_id, (offer.id,), (task,)))

    launch = await agent.next_command()
    assert isinstance(launch, m.LaunchCommand)
    assert launch.task.task_id == "t1"
    assert launch.task.framework_id == framework.framework_id
    assert isinstance(launch.task.container, WasmSpec) and launch.task.container.module == MODULE
    assert _task(await _state(session, master), "t1")["state"] == "STAGING"

    ack = await agent.update("t1", TaskState.RUNNING, uuid="u-running")
    assert ack == m.StatusAcknowledged(TaskId("t1"), "u-running")
    running = await framework.next_event(m.Update)
    assert running.status.state is TaskState.RUNNING and running.status.agent_id == "edge-1"
    await framework.call(
        m.Acknowledge(framework.framework_id, running.status.agent_id, TaskId("t1"), running.status.uuid)
    )

    await agent.update("t1", TaskState.FINISHED, uuid="u-finished")
    finished = await framework.next_event(m.Update)
    assert finished.status.state is TaskState.FINISHED
    await framework.call(
        m.Acknowledge(framework.framework_id, finished.status.agent_id, TaskId("t1"), finished.status.uuid)
    )

    state = await _state(session, master)
    assert _task(state, "t1")["state"] == "FINISHED"
    frameworks = state["frameworks"]
    assert isinstance(frameworks, list)
    assert frameworks[0]["unacknowledged"] == []

    # The inline module can be fetched by its content hash.
    digest = hashlib.sha256(MODULE).hexdigest()
    async with session.get(f"{master.url}/api/v1/modules/{digest}", headers=admin_headers(master.url)) as r:
        assert r.status == 200 and r.content_type == "application/wasm"
        assert await r.read() == MODULE

    async with session.get(master.url + "/metrics", headers=admin_headers(master.url)) as r:
        text = await r.text()
    assert 'edgerm_calls_total{api="agent",type="UPDATE"} 2' in text
    assert 'edgerm_calls_total{api="scheduler",type="ACCEPT"} 1' in text
    assert "edgerm_heartbeats_received_total 1" in text
    assert 'edgerm_task_outcomes_total{state="FINISHED",reason="UNSPECIFIED"} 1' in text
    assert 'edgerm_agents{state="active"} 1' in text


async def test_update_is_resent_until_acknowledged_and_on_resubscribe(
    make_agent: Callable[..., Any], make_framework: Callable[..., Any]
) -> None:
    agent = make_agent()
    await agent.register()
    await agent.subscribe()
    framework = make_framework()
    await framework.subscribe()
    offer = (await framework.next_event(m.Offers)).offers[0]
    task = TaskInfo(TaskId("t2"), "t", offer.agent_id, Resources.parse("cpus:0.5"), WasmSpec(module=MODULE))
    await framework.call(m.Accept(framework.framework_id, (offer.id,), (task,)))
    assert isinstance(await agent.next_command(), m.LaunchCommand)
    await agent.update("t2", TaskState.RUNNING, uuid="u1")
    first = await framework.next_event(m.Update)

    # The framework drops its stream without acknowledging, and comes back.
    fid = framework.framework_id
    await framework.close()
    again = await framework.subscribe(fid)
    assert again.framework_id == fid
    resent = await framework.next_event(m.Update)
    assert resent.status == first.status


async def test_agent_command_stream_ends_when_agent_opens_a_new_one(make_agent: Callable[..., Any]) -> None:
    agent = make_agent()
    await agent.register()
    await agent.subscribe()
    stale = agent._stream
    await agent.subscribe()  # the agent re-opens its channel: the old one ends
    assert stale is not None
    await stale.ended.wait()
    await stale.close()


async def test_kill_is_pushed_to_the_agent(make_agent: Callable[..., Any], make_framework: Callable[..., Any]) -> None:
    agent = make_agent()
    await agent.register()
    await agent.subscribe()
    framework = make_framework()
    await framework.subscribe()
    offer = (await framework.next_event(m.Offers)).offers[0]
    task = TaskInfo(TaskId("k1"), "t", offer.agent_id, Resources.parse("mem:64"), WasmSpec(module=MODULE))
    await framework.call(m.Accept(framework.framework_id, (offer.id,), (task,)))
    assert isinstance(await agent.next_command(), m.LaunchCommand)
    await agent.update("k1", TaskState.RUNNING, uuid="r")
    await framework.call(m.Kill(framework.framework_id, TaskId("k1")))
    kill = await agent.next_command()
    assert kill == m.KillCommand(TaskId("k1"), task.kill_grace)


async def test_commands_wait_in_the_outbox_while_the_channel_is_closed(
    make_agent: Callable[..., Any], make_framework: Callable[..., Any]
) -> None:
    agent = make_agent()
    await agent.register()
    framework = make_framework()
    await framework.subscribe()
    offer = (await framework.next_event(m.Offers)).offers[0]
    task = TaskInfo(TaskId("w1"), "t", offer.agent_id, Resources.parse("cpus:1"), WasmSpec(module=MODULE))
    await framework.call(m.Accept(framework.framework_id, (offer.id,), (task,)))
    assert (await agent.heartbeat("w1")).commands_pending is True
    await agent.subscribe()
    launch = await agent.next_command()
    assert isinstance(launch, m.LaunchCommand) and launch.task.task_id == "w1"
    assert (await agent.heartbeat("w1")).commands_pending is False


async def test_teardown_ends_the_stream_and_forgets_the_framework(
    master: RunningMaster, session: aiohttp.ClientSession, make_framework: Callable[..., Any]
) -> None:
    framework = make_framework()
    await framework.subscribe()
    await framework.call(m.Teardown(framework.framework_id))
    await framework.stream_ended()
    assert (await _state(session, master))["frameworks"] == []


async def test_framework_heartbeats(make_framework: Callable[..., Any]) -> None:
    async with start_master(framework_heartbeat=0.05) as fast:
        framework = make_framework("beating", on=fast)
        subscribed = await framework.subscribe()
        assert subscribed.heartbeat_interval == 0.05
        assert isinstance(await framework.raw_event(), m.Heartbeat)
        assert isinstance(await framework.raw_event(), m.Heartbeat)
        await framework.close()


async def test_disconnect_rescinds_offers_and_reoffers_elsewhere(
    master: RunningMaster,
    session: aiohttp.ClientSession,
    make_agent: Callable[..., Any],
    make_framework: Callable[..., Any],
) -> None:
    agent = make_agent()
    await agent.register()
    first = make_framework("first")
    await first.subscribe()
    await first.next_event(m.Offers)
    second = make_framework("second")
    await second.subscribe()
    await first.close()  # the connection drops: the master hears it at once
    offers = await second.next_event(m.Offers)
    assert offers.offers[0].agent_id == agent.agent_id
    state = await _state(session, master)
    frameworks = state["frameworks"]
    assert isinstance(frameworks, list)
    assert {f["name"]: f["active"] for f in frameworks} == {"first": False, "second": True}


async def test_stop_ends_open_streams_promptly(
    make_agent: Callable[..., Any], make_framework: Callable[..., Any]
) -> None:
    running = await start_master()
    try:
        agent = make_agent(on=running)
        await agent.register()
        await agent.subscribe()
        framework = make_framework(on=running)
        await framework.subscribe()
    finally:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await running.stop()
        assert loop.time() - started < 1.5
    await agent.stream_ended()
    await framework.stream_ended()
