"""A harness for the master core: a MasterCore, a simulated clock, and helpers
that build events and pick apart the returned action lists. No I/O."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from edgerm import messages as m
from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId
from edgerm.master import events as ev
from edgerm.master.actions import DropAgent, KillTask, LaunchTask, MasterAction, Notice, Persist, SendEvent
from edgerm.master.allocator import Sorter
from edgerm.master.registry import Changes
from edgerm.master.state import MasterConfig, MasterCore
from edgerm.model import (
    AgentInfo,
    DockerSpec,
    Filters,
    FrameworkInfo,
    Offer,
    TaskInfo,
    TaskState,
    TaskStatus,
    WasmSpec,
)
from edgerm.resources import Resources

WASM = WasmSpec(module=b"\x00asm\x01\x00\x00\x00")


TICK = 0.25  # the service's allocation interval


def task_info(task_id: str, resources: str = "cpus:1;mem:128", agent_id: str = "", **kw: Any) -> TaskInfo:
    return TaskInfo(
        task_id=TaskId(task_id),
        name=task_id,
        agent_id=AgentId(agent_id),
        resources=Resources.parse(resources),
        container=kw.pop("container", WASM),
        **kw,
    )


def docker_task(task_id: str, resources: str = "cpus:1;mem:128", image: str = "busybox:1") -> TaskInfo:
    return task_info(task_id, resources, container=DockerSpec(image=image))


class Harness:
    """Drives a MasterCore with a clock the test moves by hand."""

    task = staticmethod(task_info)
    docker_task = staticmethod(docker_task)

    def __init__(self, config: MasterConfig | None = None, sorter: Sorter | None = None) -> None:
        self.core = MasterCore(config or MasterConfig(master_id="m"), sorter)
        self.now = 0.0
        self.uuids = 0
        self.persisted: list[Changes] = []
        self.notices: list[Notice] = []

    # -- driving --------------------------------------------------------------

    def do(self, event: Any) -> list[MasterAction]:
        """The core's actions for ``event``, without its Persist and Notice actions
        (kept in ``persisted`` and ``notices``; tests of those read them there)."""
        actions = self.core.handle(event, self.now)
        self.persisted += [a.changes for a in actions if isinstance(a, Persist)]
        self.notices += [a for a in actions if isinstance(a, Notice)]
        return [a for a in actions if not isinstance(a, Persist | Notice)]

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def tick(self, seconds: float = 0.0) -> list[MasterAction]:
        """Let ``seconds`` pass as the service does, ticking every TICK seconds (a
        longer gap between Ticks would look like a stall of the master itself);
        returns the actions of all those Ticks."""
        actions: list[MasterAction] = []
        end = self.now + seconds
        while end - self.now > TICK:
            self.now += TICK
            actions += self.do(ev.Tick())
        self.now = end
        return actions + self.do(ev.Tick())

    def agent(
        self,
        agent_id: str = "a1",
        resources: str = "cpus:4;mem:1024",
        executors: Iterable[str] = ("wasm", "docker"),
        heartbeat: float = 3600.0,  # long: tests that want timeouts say so
        tasks: tuple[TaskStatus, ...] = (),
    ) -> list[MasterAction]:
        info = AgentInfo(
            id=AgentId(agent_id),
            hostname=f"{agent_id}.local",
            resources=Resources.parse(resources),
            attributes={"executors": frozenset(executors), "os": "linux"},
            heartbeat_interval=heartbeat,
        )
        return self.do(ev.AgentRegistered(info, tasks))

    def framework(self, framework_id: str = "f1") -> list[MasterAction]:
        return self.do(ev.FrameworkSubscribed(FrameworkInfo(FrameworkId(framework_id), framework_id)))

    def heartbeat(self, agent_id: str = "a1", *task_ids: str) -> list[MasterAction]:
        return self.do(ev.HeartbeatReceived(AgentId(agent_id), tuple(TaskId(t) for t in task_ids)))

    def status(
        self, task_id: str, state: TaskState, agent_id: str = "a1", uuid: str | None = None
    ) -> list[MasterAction]:
        if uuid is None:
            self.uuids += 1
            uuid = f"agent-u{self.uuids}"
        status = TaskStatus(TaskId(task_id), AgentId(agent_id), state, uuid=uuid, timestamp=self.now)
        return self.do(ev.StatusReceived(AgentId(agent_id), status))

    def accept(
        self, framework_id: str, offers: Iterable[Offer | str], tasks: Iterable[TaskInfo], refuse: float = 5.0
    ) -> list[MasterAction]:
        ids = tuple(OfferId(o if isinstance(o, str) else o.id) for o in offers)
        return self.do(m.Accept(FrameworkId(framework_id), ids, tuple(tasks), Filters(refuse)))

    def decline(self, framework_id: str, offers: Iterable[Offer | str], refuse: float = 5.0) -> list[MasterAction]:
        ids = tuple(OfferId(o if isinstance(o, str) else o.id) for o in offers)
        return self.do(m.Decline(FrameworkId(framework_id), ids, Filters(refuse)))

    def launch(self, framework_id: str, offer: Offer, *tasks: TaskInfo) -> list[MasterAction]:
        return self.accept(framework_id, [offer], tasks)

    # -- reading actions ------------------------------------------------------

    @staticmethod
    def offers(actions: list[MasterAction], framework_id: str | None = None) -> list[Offer]:
        return [
            o
            for a in actions
            if isinstance(a, SendEvent) and isinstance(a.event, m.Offers)
            if framework_id is None or a.framework_id == framework_id
            for o in a.event.offers
        ]

    @staticmethod
    def events(actions: list[MasterAction], kind: type, framework_id: str | None = None) -> list[Any]:
        return [
            a.event
            for a in actions
            if isinstance(a, SendEvent) and isinstance(a.event, kind)
            if framework_id is None or a.framework_id == framework_id
        ]

    @staticmethod
    def updates(actions: list[MasterAction], framework_id: str | None = None) -> list[TaskStatus]:
        return [e.status for e in Harness.events(actions, m.Update, framework_id)]

    @staticmethod
    def launches(actions: list[MasterAction]) -> list[LaunchTask]:
        return [a for a in actions if isinstance(a, LaunchTask)]

    @staticmethod
    def kills(actions: list[MasterAction]) -> list[KillTask]:
        return [a for a in actions if isinstance(a, KillTask)]

    @staticmethod
    def drops(actions: list[MasterAction]) -> list[DropAgent]:
        return [a for a in actions if isinstance(a, DropAgent)]

    # -- common setups --------------------------------------------------------

    def running(self, task_id: str = "t1", resources: str = "cpus:1;mem:128") -> TaskStatus:
        """Agent a1 and framework f1 with one RUNNING task, all updates acknowledged."""
        if not self.core.agent_known(AgentId("a1")):
            self.agent()
        if not self.core.framework_known(FrameworkId("f1")):
            self.framework()
        offer = self.core.offers_of(FrameworkId("f1"))[0]
        self.accept("f1", [offer], [task_info(task_id, resources)], refuse=0)
        actions = self.status(task_id, TaskState.RUNNING)
        [update] = self.updates(actions)
        self.do(m.Acknowledge(FrameworkId("f1"), AgentId("a1"), TaskId(task_id), update.uuid))
        return update


@pytest.fixture
def h() -> Harness:
    return Harness()


@pytest.fixture
def make_harness() -> type[Harness]:
    return Harness
