"""``DataflowFramework``: the async shell of :class:`~edgerm.frameworks.dataflow.core.DataflowCore`.

Written against the public framework API like any user framework. Every
callback turns into one core event (:mod:`edgerm.frameworks.dataflow.events`);
the framework carries out the actions the core returns, in order, through
its driver, and reports back what came of those that can fail (an ACCEPT
taken or refused, a KILL refused) as further events, whose actions run
next. What the framework decides (phases, placement, migration, fallbacks,
quality switches) is the core's: see its docstring.

Rules: callbacks and :meth:`tick` run under one lock, so events never
interleave; a ``WireError`` from the driver is an expected condition (logged
at INFO, or fed back to the core), never a crash; the clock is injected
(tests pass their own).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from edgerm.errors import WireError
from edgerm.frameworks.base import Framework
from edgerm.frameworks.dataflow import events as ev
from edgerm.frameworks.dataflow.core import CoreOptions, DataflowCore, Hold
from edgerm.frameworks.dataflow.modules import ModuleResolver
from edgerm.frameworks.dataflow.phases import Phase
from edgerm.frameworks.dataflow.views import FrameworkView, InstanceView, LiveTask, Move, MoveKind, Switch
from edgerm.frameworks.driver import FrameworkDriver
from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId, new_id
from edgerm.model import Filters, Offer, TaskStatus
from edgerm.scheduler import LOCALITY, Dag, Instance, Plan, Policy

log = logging.getLogger(__name__)


class MoveListener:
    """Told when an instance goes away and when its replacement runs (no-ops by default)."""

    def instance_gone(self, instance: Instance) -> None:
        """The instance stopped (or is being replaced): its records may be lost from now."""

    def instance_resumed(self, instance: Instance) -> None:
        """The instance's replacement reported RUNNING."""


class DataflowFramework(Framework):
    """Runs one DAG; see the module docstring."""

    name = "dataflow"

    def __init__(
        self,
        dag: Dag,
        *,
        deadline: float | None = None,
        refuse_seconds: float = 30.0,
        retry_seconds: float = 2.0,
        max_failures: int = 10,
        policy: Policy = LOCALITY,
        clock: Callable[[], float] = time.monotonic,
        listener: MoveListener | None = None,
        resolver: ModuleResolver | None = None,
        hold_seconds: float = 30.0,
        probe_needs_report: bool = False,
    ) -> None:
        self.dag = dag
        self.clock = clock
        self.listener = listener or MoveListener()
        self.resolver = resolver or ModuleResolver(dag)
        options = CoreOptions(
            deadline=deadline,
            refuse_seconds=refuse_seconds,
            retry_seconds=retry_seconds,
            max_failures=max_failures,
            policy=policy,
            hold_seconds=hold_seconds,
            probe_needs_report=probe_needs_report,
            task_prefix=f"df-{new_id()[:12]}",
        )
        self.core = DataflowCore(dag, self.resolver.container, options)
        self._lock = asyncio.Lock()
        self.done = asyncio.Event()  # set on STOPPED or FAILED

    # -- read-only views of the core ------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self.core.phase

    @property
    def failure(self) -> str:
        return self.core.failure

    @property
    def live(self) -> Mapping[Instance, LiveTask]:
        return self.core.live

    @property
    def retiring(self) -> Mapping[TaskId, LiveTask]:
        return self.core.retiring

    @property
    def failures(self) -> Mapping[Instance, int]:
        return self.core.failures

    @property
    def lost(self) -> frozenset[AgentId]:
        return frozenset(self.core.lost)

    @property
    def held(self) -> Mapping[OfferId, Offer]:
        return self.core.held

    @property
    def holds(self) -> Mapping[str, Hold]:
        return self.core.holds

    @property
    def moves(self) -> list[Move]:
        return list(self.core.moves)

    @property
    def switches(self) -> list[Switch]:
        return list(self.core.switches)

    @property
    def all_ended(self) -> bool:
        return self.core.all_ended

    def running_plan(self) -> Plan:
        return self.core.running_plan()

    def view(self) -> FrameworkView:
        return self.core.view(self.clock())

    # -- callbacks: one event each ---------------------------------------------------------

    async def registered(self, driver: FrameworkDriver, framework_id: FrameworkId, master_id: str) -> None:
        await self.handle(driver, ev.Registered())

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        await self.handle(driver, ev.OffersReceived(tuple(offers)))

    async def offer_rescinded(self, driver: FrameworkDriver, offer_id: OfferId) -> None:
        await self.handle(driver, ev.OfferRescinded(offer_id))

    async def agent_lost(self, driver: FrameworkDriver, agent_id: AgentId) -> None:
        await self.handle(driver, ev.AgentLost(agent_id))

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        await self.handle(driver, ev.StatusUpdated(status))

    async def tick(self, driver: FrameworkDriver) -> None:
        """Periodic work (the runner calls it about every 0.25 s): the deadline, revives, quality holds."""
        await self.handle(driver, ev.Tick())

    async def shutdown(self, driver: FrameworkDriver) -> None:
        """Kill every task of the DAG; STOPPED follows once they all ended (``done`` is set)."""
        await self.handle(driver, ev.Shutdown())

    async def instances_reported(self, driver: FrameworkDriver, task_ids: Iterable[TaskId]) -> None:
        """These live tasks published stats (the runner tells, for main's probe after a hold)."""
        for task_id in task_ids:
            await self.handle(driver, ev.InstanceReported(task_id))

    async def quality_broken(self, driver: FrameworkDriver, operator: str | None, figure: str) -> None:
        """A quality condition was broken for its period: switch to the next fallback."""
        await self.handle(driver, ev.QualityBroken(operator, figure))

    # -- carrying out ----------------------------------------------------------------------

    async def handle(self, driver: FrameworkDriver, event: ev.Event) -> None:
        """Feed one event to the core and carry out its actions (and their follow-ups) in order."""
        async with self._lock:
            todo = deque(self.core.handle(event, self.clock()))
            while todo:
                follow = await self._carry_out(driver, todo.popleft())
                if follow is not None:
                    todo.extendleft(reversed(self.core.handle(follow, self.clock())))

    async def _carry_out(self, driver: FrameworkDriver, action: ev.Action) -> ev.Event | None:
        match action:
            case ev.Accept():
                try:
                    await driver.accept(action.offer_ids, action.tasks, Filters(action.refuse_seconds))
                except WireError as e:
                    return ev.AcceptFailed(action.launch, str(e))
                return ev.AcceptDone(action.launch)
            case ev.Kill():
                try:
                    await driver.kill(action.task_id, action.agent_id)
                except WireError as e:  # already gone at the master: it will not report again
                    log.info("kill %s failed: %s", action.task_id, e)
                    return ev.KillFailed(action.task_id, str(e))
            case ev.Decline():
                try:
                    await driver.decline(list(action.offer_ids), refuse_seconds=action.refuse_seconds)
                except WireError as e:  # the offers went away meanwhile: nothing to give back
                    log.info("decline failed: %s", e)
            case ev.Revive():
                try:
                    await driver.revive()
                except WireError as e:
                    log.info("revive failed: %s", e)
            case ev.Reconcile():
                await driver.reconcile()  # after a reconnection: what became of our tasks?
            case ev.Teardown():
                try:
                    await driver.stop(teardown=True)
                except WireError as e:
                    log.warning("teardown failed: %s", e)
            case ev.InstanceGone():
                self.listener.instance_gone(action.instance)
            case ev.InstanceResumed():
                self.listener.instance_resumed(action.instance)
            case ev.Moved():
                log.info("dataflow %s: %s", self.dag.name, action.move)
            case ev.Note():
                (log.warning if action.warning else log.info)("%s", action.text)
            case ev.Finished():
                self.done.set()
        return None


__all__ = [
    "DataflowFramework",
    "FrameworkView",
    "InstanceView",
    "LiveTask",
    "Move",
    "MoveKind",
    "MoveListener",
    "Phase",
]
