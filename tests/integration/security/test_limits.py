"""Abuse limits per principal: calls/s, open streams, live tasks, offers held. Each answers LIMIT_EXCEEDED
(HTTP 429) to that principal, and the others keep being served."""

from __future__ import annotations

import aiohttp
import pytest

from edgerm import messages as m
from edgerm.auth.limits import Limits
from edgerm.auth.principal import Role
from edgerm.errors import LimitExceeded
from edgerm.ids import AgentId, TaskId
from edgerm.master.main import start_master
from edgerm.master.state import MasterConfig
from edgerm.model import TaskInfo, TaskState, WasmSpec
from edgerm.resources import Resources
from tests.integration.master.conftest import FakeAgent, FakeFramework, agent_token
from tests.support import eventually

MODULE = b"\0asm\1\0\0\0"
NO_RATE = {"calls_per_second": 0.0}


def _task(agent_id: AgentId, n: int) -> TaskInfo:
    return TaskInfo(TaskId(f"t{n}"), "t", agent_id, Resources.parse("cpus:0.1;mem:16"), WasmSpec(MODULE))


async def test_a_principal_over_its_call_rate_is_refused_and_others_are_served(
    session: aiohttp.ClientSession,
) -> None:
    async with start_master(limits=Limits(calls_per_second=1, burst=3)) as master:
        noisy = FakeAgent(session, master.url, "noisy", token=agent_token(master, "noisy"))
        quiet = FakeAgent(session, master.url, "quiet", token=agent_token(master, "quiet"))
        await noisy.register()
        await quiet.register()
        refused = 0
        for _ in range(20):
            try:
                await noisy.heartbeat()
            except LimitExceeded as e:
                refused += 1
                assert "calls/s" in e.message and "retry in" in e.message
        assert refused >= 10
        assert await quiet.heartbeat() == m.HeartbeatAck(False)  # its own bucket


async def test_open_streams_per_principal(session: aiohttp.ClientSession) -> None:
    async with start_master(limits=Limits(streams=1, **NO_RATE)) as master:
        token = master.issue_token(Role.FRAMEWORK, "one-stream")
        first = FakeFramework(session, master.url, "first", token)
        second = FakeFramework(session, master.url, "second", token)
        other = FakeFramework(session, master.url, "other", master.issue_token(Role.FRAMEWORK, "other"))
        try:
            await first.subscribe()
            with pytest.raises(LimitExceeded, match="1 streams open"):
                await second.subscribe()
            await other.subscribe()  # another principal is not affected
            await first.close()  # its stream ends: the slot is free again
            await _eventually_subscribes(second)
        finally:
            for f in (first, second, other):
                await f.close()


async def test_resubscribing_replaces_the_old_stream_and_is_not_refused(session: aiohttp.ClientSession) -> None:
    async with start_master(limits=Limits(streams=1, **NO_RATE)) as master:
        token = master.issue_token(Role.FRAMEWORK, "one-stream")
        first = FakeFramework(session, master.url, "f", token)
        again = FakeFramework(session, master.url, "f", token)
        try:
            await first.subscribe()
            await again.subscribe(first.framework_id)  # e.g. after a connection the master has not seen drop
            await first.stream_ended()
            assert master.security is not None and master.security.streams_of("one-stream") == 1
        finally:
            await first.close()
            await again.close()


async def _eventually_subscribes(framework: FakeFramework) -> None:
    async def attempt() -> bool:
        try:
            await framework.subscribe()
        except LimitExceeded:
            return False
        return True

    await eventually(attempt, what="the freed stream slot is usable")


async def test_live_tasks_per_principal(session: aiohttp.ClientSession) -> None:
    config = MasterConfig(offer_timeout=60.0)
    async with start_master(config=config, allocation_interval=0.05, limits=Limits(tasks=1, **NO_RATE)) as master:
        agent = FakeAgent(session, master.url, "edge-1", token=agent_token(master, "edge-1"))
        await agent.register()
        await agent.subscribe()
        greedy = FakeFramework(session, master.url, "greedy", master.issue_token(Role.FRAMEWORK, "greedy"))
        try:
            await greedy.subscribe()
            offer = (await greedy.next_event(m.Offers)).offers[0]
            with pytest.raises(LimitExceeded, match="limit of 1 tasks"):
                await greedy.call(
                    m.Accept(greedy.framework_id, (offer.id,), (_task(offer.agent_id, 1), _task(offer.agent_id, 2)))
                )
            assert master.service.core.snapshot()["tasks"] == []  # nothing launched
            await greedy.call(m.Accept(greedy.framework_id, (offer.id,), (_task(offer.agent_id, 1),)))
            assert isinstance(await agent.next_command(), m.LaunchCommand)
            await agent.update("t1", TaskState.RUNNING, "u1")
        finally:
            await greedy.close()
            await agent.close()


async def test_offers_held_per_principal(session: aiohttp.ClientSession) -> None:
    config = MasterConfig(offer_timeout=60.0)
    async with start_master(config=config, allocation_interval=0.05, limits=Limits(offers=1, **NO_RATE)) as master:
        agents = [FakeAgent(session, master.url, f"edge-{i}", token=agent_token(master, f"edge-{i}")) for i in (1, 2)]
        for agent in agents:
            await agent.register()
        hoarder = FakeFramework(session, master.url, "hoarder", master.issue_token(Role.FRAMEWORK, "hoarder"))
        patient = FakeFramework(session, master.url, "patient", master.issue_token(Role.FRAMEWORK, "patient"))
        try:
            await hoarder.subscribe()
            held = (await hoarder.next_event(m.Offers)).offers
            assert len(held) == 1  # the second agent's offer was declined for it
            await patient.subscribe()
            got = (await patient.next_event(m.Offers)).offers
            assert {o.agent_id for o in got} | {held[0].agent_id} == {"edge-1", "edge-2"}
            assert len(master.service.core.offers_of(hoarder.framework_id)) == 1
        finally:
            for peer in (hoarder, patient, *agents):
                await peer.close()
