"""The agent behaves the same over HTTP and over CoAP: every case runs on both transports.

A real master (``start_master`` with its CoAP endpoint on an ephemeral
port), real agents (``start_agent`` with the URL of the transport under
test: ``http://`` or ``coap://``, nothing else differs), real WebAssembly
tasks (examples/wasm) and a real framework over the HTTP scheduler API.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgerm import messages as m
from edgerm.agent.http_transport import HttpAgentTransport
from edgerm.agent.main import RunningAgent, start_agent
from edgerm.agent.transport import AgentTransport
from edgerm.auth.principal import Role
from edgerm.errors import MalformedMessage, UnknownAgent, UnknownOffer
from edgerm.frameworks import load_module, wasm_task
from edgerm.ids import AgentId, OfferId, TaskId
from edgerm.master.main import RunningMaster, start_master
from edgerm.master.state import MasterConfig
from edgerm.model import Filters, Offer, Reason, TaskInfo, TaskState, TaskStatus
from tests.contract.cluster import FAST, TRANSPORTS, WASM, Recorder, agent_url, running
from tests.support import oscore_transport

HELLO = load_module(WASM / "hello.wat")
TRAP = load_module(WASM / "trap.wat")
LOOP = load_module(WASM / "loop.wat")


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def master() -> AsyncIterator[RunningMaster]:
    config = MasterConfig(unreachable_timeout=1.0)
    async with start_master(coap_port=0, allocation_interval=0.05, config=config) as running_master:
        yield running_master


def task(offer: Offer, task_id: str, module: bytes, *, time_limit: float = 0.0) -> TaskInfo:
    t = wasm_task(offer, task_id, module, "cpus:0.5;mem:64", time_limit=time_limit)
    return dataclasses.replace(t, task_id=TaskId(task_id))


async def launch(fw: Recorder, agent: RunningAgent, *tasks: tuple[str, bytes, float]) -> Offer:
    """Accept an offer of ``agent`` for these tasks; what they leave free is offered again at once."""
    offer = await fw.take_offer(agent.agent_id)
    tasks_ = [task(offer, tid, module, time_limit=limit) for tid, module, limit in tasks]
    await fw.act().accept([offer.id], tasks_, Filters(refuse_seconds=0.0))
    return offer


# -- tasks ---------------------------------------------------------------------------------


async def test_a_wasm_task_runs_to_finished(master: RunningMaster, transport: str, tmp_path: Path) -> None:
    fw = Recorder()
    async with start_agent(agent_url(master, transport), FAST, tmp_path) as agent, running(fw, master):
        await launch(fw, agent, ("hello", HELLO, 0.0))
        finished = await fw.wait_state("hello", TaskState.FINISHED)
        assert fw.states("hello") == [TaskState.RUNNING, TaskState.FINISHED]
        assert finished.exit_code == 0 and finished.agent_id == agent.agent_id
        assert (tmp_path / "tasks" / "hello" / "stdout").read_text() == "hello from edgerm\n"


async def test_a_trap_fails_the_task_with_the_trap_message(
    master: RunningMaster, transport: str, tmp_path: Path
) -> None:
    fw = Recorder()
    async with start_agent(agent_url(master, transport), FAST, tmp_path) as agent, running(fw, master):
        await launch(fw, agent, ("trap", TRAP, 0.0))
        failed = await fw.wait_state("trap", TaskState.FAILED)
        assert failed.reason is Reason.TRAP
        assert "unreachable" in failed.message


async def test_a_runaway_loop_is_stopped_at_its_time_limit(
    master: RunningMaster, transport: str, tmp_path: Path
) -> None:
    fw = Recorder()
    async with start_agent(agent_url(master, transport), FAST, tmp_path) as agent, running(fw, master):
        await launch(fw, agent, ("loop", LOOP, 0.3))
        await fw.wait_state("loop", TaskState.RUNNING)
        failed = await fw.wait_state("loop", TaskState.FAILED)
        assert failed.reason is Reason.TIME_LIMIT


async def test_kill_reaches_a_running_task(master: RunningMaster, transport: str, tmp_path: Path) -> None:
    fw = Recorder()
    async with start_agent(agent_url(master, transport), FAST, tmp_path) as agent, running(fw, master):
        await launch(fw, agent, ("long", LOOP, 30.0))
        await fw.wait_state("long", TaskState.RUNNING)
        await fw.act().kill(TaskId("long"), agent.agent_id)
        killed = await fw.wait_state("long", TaskState.KILLED)
        assert killed.reason is Reason.KILLED_BY_FRAMEWORK
        await fw.until(lambda: agent.service.core.task_ids() == ())


# -- agent loss ----------------------------------------------------------------------------


async def test_an_agent_that_stops_heartbeating_is_unreachable_then_lost_with_its_tasks_and_offers(
    master: RunningMaster, transport: str, tmp_path: Path
) -> None:
    fw = Recorder()
    async with running(fw, master):
        agent = await start_agent(agent_url(master, transport), FAST, tmp_path)
        try:
            await launch(fw, agent, ("doomed", LOOP, 30.0))
            await fw.wait_state("doomed", TaskState.RUNNING)
            # What the task left free comes back as a new offer, held by the framework.
            held: Offer = await fw.until(
                lambda: next((o for o in fw.offers.values() if o.agent_id == agent.agent_id), None)
            )
        finally:
            await agent.stop()  # silent: no status, no goodbye; its heartbeats just stop
        unreachable = await fw.wait_state("doomed", TaskState.UNREACHABLE)
        assert unreachable.reason is Reason.AGENT_UNREACHABLE
        lost = await fw.wait_state("doomed", TaskState.LOST)  # the master's unreachable timeout is 1 s here
        assert lost.reason is Reason.AGENT_LOST
        await fw.until(lambda: held.id in fw.rescinded)
        await fw.until(lambda: agent.agent_id in fw.lost)
        assert not master.service.core.agent_known(agent.agent_id)


# -- offers --------------------------------------------------------------------------------


async def test_decline_filters_are_honoured(master: RunningMaster, transport: str, tmp_path: Path) -> None:
    fw = Recorder()
    url = agent_url(master, transport)
    async with (
        start_agent(url, FAST, tmp_path / "a") as refused,
        start_agent(url, FAST, tmp_path / "b") as clock,
        running(fw, master),
    ):
        first = await fw.take_offer(refused.agent_id)
        await fw.act().decline([first.id], refuse_seconds=60.0)
        tick = await fw.take_offer(clock.agent_id)
        await fw.act().decline([tick.id], refuse_seconds=0.2)
        # The short filter expiring and the other agent being offered again
        # proves allocation ran many times since; the refused agent never came back.
        again = await fw.take_offer(clock.agent_id)
        assert again.id != tick.id
        assert [o for o in fw.offered if o.agent_id == refused.agent_id] == [first]


# -- bad input -----------------------------------------------------------------------------


async def _transport_as(master: RunningMaster, url: str, agent_id: AgentId, work_dir: Path) -> AgentTransport:
    """A transport speaking for ``agent_id`` (HTTP: a credential bound to it; CoAP: an OSCORE context from a join)."""
    if url.startswith("http"):
        return HttpAgentTransport(url, token=master.issue_token(Role.AGENT, agent_id=agent_id))
    transport: AgentTransport = await oscore_transport(url, work_dir, agent_id)
    return transport


async def test_bad_input_gets_the_same_typed_errors(master: RunningMaster, transport: str, tmp_path: Path) -> None:
    fw = Recorder()
    url = agent_url(master, transport)
    async with start_agent(url, FAST, tmp_path / "agent") as agent, running(fw, master):
        other = await _transport_as(master, url, AgentId("never-registered"), tmp_path / "other")
        # Over CoAP the agent's own id already joined: speak through its own transport.
        own = agent.service.transport
        mine = own if transport == "coap" else await _transport_as(master, url, agent.agent_id, tmp_path)
        try:
            with pytest.raises(UnknownAgent):
                await other.call(m.AgentHeartbeat(AgentId("never-registered")))
            status = TaskStatus(TaskId("t"), AgentId("someone-else"), TaskState.RUNNING, uuid="u")
            with pytest.raises(MalformedMessage):
                await mine.call(m.StatusUpdate(agent.agent_id, status))
            with pytest.raises(UnknownAgent):
                async for _ in other.commands(AgentId("never-registered")):
                    pass
        finally:
            await other.close()
            if mine is not own:
                await mine.close()
        with pytest.raises(UnknownOffer):
            await fw.act().accept([OfferId("no-such-offer")], [])
        # The master kept serving: the real agent still runs a task to the end.
        await launch(fw, agent, ("after", HELLO, 0.0))
        await fw.wait_state("after", TaskState.FINISHED)


# -- reconnection --------------------------------------------------------------------------


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_agent_comes_back_after_a_master_restart(transport: str, tmp_path: Path) -> None:
    http_port, coap_port = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    first = await start_master(port=http_port, coap_port=coap_port, allocation_interval=0.05)
    agent = await start_agent(agent_url(first, transport), FAST, tmp_path)
    try:
        await first.stop()
        async with start_master(port=http_port, coap_port=coap_port, allocation_interval=0.05) as second:
            fw = Recorder()
            async with running(fw, second):
                # A new master forgot the agent: UNKNOWN_AGENT, REGISTER again, and
                # the command channel (stream or observation) is opened again.
                # While the agent settles (a second REGISTER may race the first)
                # an offer can be rescinded under our feet: then take the next.
                for _ in range(5):
                    try:
                        await launch(fw, agent, ("again", HELLO, 0.0))
                        break
                    except UnknownOffer:
                        continue
                await fw.wait_state("again", TaskState.FINISHED)
    finally:
        await agent.stop()


async def test_a_restarted_master_with_a_registry_keeps_the_agents_tasks_running(
    transport: str, tmp_path: Path
) -> None:
    http_port, coap_port = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    ports = {"port": http_port, "coap_port": coap_port, "allocation_interval": 0.05, "state_dir": str(tmp_path / "m")}
    first = await start_master(**ports)  # type: ignore[arg-type]
    agent = await start_agent(agent_url(first, transport), FAST, tmp_path / "agent")
    fw = Recorder()
    try:
        async with running(fw, first, teardown=False) as driver:
            await launch(fw, agent, ("kept", LOOP, 60.0))
            await fw.wait_state("kept", TaskState.RUNNING)
            framework_id = driver.framework_id
        await first.stop()
        async with start_master(**ports) as second:  # type: ignore[arg-type]
            again = Recorder()
            async with running(again, second, framework_id=framework_id):
                await again.until(lambda: second.service.core.agent_known(agent.agent_id))
                record = second.service.core.task(TaskId("kept"))
                assert record is not None and record.state is TaskState.RUNNING
                await again.act().reconcile([(TaskId("kept"), agent.agent_id)])
                answer = await again.wait_state("kept", TaskState.RUNNING)
                assert answer.reason is Reason.RECONCILIATION
                await again.act().kill(TaskId("kept"), agent.agent_id)
                await again.wait_state("kept", TaskState.KILLED)
                assert [s for s in again.statuses if s.state in (TaskState.LOST, TaskState.FAILED)] == []
    finally:
        await agent.stop()


# -- a mixed cluster -------------------------------------------------------------------------


async def test_one_framework_uses_an_http_agent_and_a_coap_agent(master: RunningMaster, tmp_path: Path) -> None:
    fw = Recorder()
    async with (
        start_agent(agent_url(master, "http"), FAST, tmp_path / "http") as over_http,
        start_agent(agent_url(master, "coap"), FAST, tmp_path / "coap") as over_coap,
        running(fw, master),
    ):
        await launch(fw, over_http, ("on-http", HELLO, 0.0))
        await launch(fw, over_coap, ("on-coap", HELLO, 0.0))
        done_http = await fw.wait_state("on-http", TaskState.FINISHED)
        done_coap = await fw.wait_state("on-coap", TaskState.FINISHED)
        assert (done_http.agent_id, done_coap.agent_id) == (over_http.agent_id, over_coap.agent_id)
        await fw.act().kill(TaskId("on-coap"), over_coap.agent_id)  # already ended: answered, not crashed
        assert master.service.core.agent_known(over_http.agent_id)
        assert master.service.core.agent_known(over_coap.agent_id)
