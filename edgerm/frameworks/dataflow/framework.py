"""``DataflowFramework``: places a DAG's operators with the scheduler library and keeps them placed.

Written against the public framework API like any user framework. Phases::

    WAITING --plan complete--> RUNNING --shutdown()--> STOPPING --all ended--> STOPPED
       |                          |
       +--deadline passed--> FAILED <--an operator failed max_failures times

- **WAITING.** Every offer is held. After each batch of offers the DAG is
  compiled against them (:func:`~edgerm.scheduler.compile_dag`); once every
  instance has a place, all are launched (one ACCEPT per agent, with all of
  that agent's held offers). If the deadline passes first, the framework
  fails with the scheduler's reasons for what could not be placed.
- **RUNNING.** Offers are replanned against the running plan
  (:func:`~edgerm.scheduler.replan`, snapshot = the offers plus the agents
  hosting instances, minus lost agents) and the changes carried out; what
  is not needed is declined, with ``refuse_seconds`` when the DAG runs as
  wanted and ``retry_seconds`` while something is unplaced or a fallback
  runs (so a better place is noticed soon).
- **Migration.** A task that ends (LOST with its agent, FAILED, ...) takes
  its instance out of the running plan; the framework revives offers and
  the next replan places the instance again. The new instance gets the same
  environment, hence the same topics. A replacement is launched before the
  instance it replaces is killed (a switch back to main on another agent);
  on the same agent the old one is killed first and the new one waits for
  the offer of the freed resources.
- Moves are recorded (:class:`Move`) and reported to an optional listener
  (the stream watch opens and closes its loss windows with them).

Rules: callbacks and :meth:`tick` run under one lock, so a replan never
interleaves with another; status updates are idempotent (unknown or stale
task ids are ignored); the clock is injected (tests pass their own).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from edgerm.errors import ConfigError, WireError
from edgerm.frameworks.base import Framework
from edgerm.frameworks.dataflow.contract import task_env, task_name
from edgerm.frameworks.dataflow.modules import ModuleResolver
from edgerm.frameworks.driver import FrameworkDriver
from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId, new_id
from edgerm.model import Filters, Offer, Reason, TaskInfo, TaskState, TaskStatus
from edgerm.scheduler import (
    LOCALITY,
    Dag,
    Instance,
    Placement,
    Plan,
    Policy,
    Snapshot,
    Unplaced,
    compile_dag,
    replan,
)

log = logging.getLogger(__name__)


class Phase(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class MoveKind(enum.Enum):
    MOVED = "moved"  # same variant, another agent (or the same one again after a failure)
    SWITCHED = "switched"  # another variant: to a fallback, or back to main


@dataclass(frozen=True, slots=True)
class Move:
    """One re-placement of an instance, from the agent and variant it left to the new ones."""

    instance: Instance
    kind: MoveKind
    from_agent: AgentId
    from_variant: str
    to_agent: AgentId
    to_variant: str
    why: str
    at: float

    def __str__(self) -> str:
        return (
            f"{self.kind.value} {self.instance}: {self.from_agent[:8]}[{self.from_variant}] -> "
            f"{self.to_agent[:8]}[{self.to_variant}] ({self.why})"
        )


@dataclass(slots=True)
class LiveTask:
    """A launched instance (mutable bookkeeping of the framework)."""

    instance: Instance
    task_id: TaskId
    placement: Placement
    state: TaskState = TaskState.STAGING
    message: str = ""


@dataclass(frozen=True, slots=True)
class InstanceView:
    instance: Instance
    variant: str
    agent_id: AgentId
    hostname: str
    state: str
    task_id: TaskId


@dataclass(frozen=True, slots=True)
class FrameworkView:
    """A snapshot of the framework's state, for status displays."""

    dag: str
    phase: Phase
    instances: tuple[InstanceView, ...]
    pending: tuple[str, ...]
    unplaced: tuple[str, ...]
    moves: tuple[Move, ...]
    error: str

    @property
    def switches(self) -> int:
        return sum(1 for m in self.moves if m.kind is MoveKind.SWITCHED)

    def to_json(self) -> dict[str, object]:
        return {
            "dag": self.dag,
            "phase": self.phase.value,
            "instances": [
                {
                    "instance": str(i.instance),
                    "variant": i.variant,
                    "agent": i.agent_id,
                    "hostname": i.hostname,
                    "state": i.state,
                    "task": i.task_id,
                }
                for i in self.instances
            ],
            "pending": list(self.pending),
            "unplaced": list(self.unplaced),
            "moves": [str(m) for m in self.moves],
            "move_count": len(self.moves),
            "switch_count": self.switches,
            "error": self.error,
        }


class MoveListener:
    """Told when an instance goes away and when its replacement runs (no-ops by default)."""

    def instance_gone(self, instance: Instance) -> None:
        """The instance stopped (or is being replaced): its records may be lost from now."""

    def instance_resumed(self, instance: Instance) -> None:
        """The instance's replacement reported RUNNING."""


@dataclass(slots=True)
class _Gone:
    placement: Placement
    why: str


@dataclass(slots=True)
class _Options:
    deadline: float | None
    refuse_seconds: float
    retry_seconds: float
    max_failures: int
    policy: Policy
    clock: Callable[[], float]
    revive_every: float = 5.0


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
    ) -> None:
        self.dag = dag
        self.opts = _Options(deadline, refuse_seconds, retry_seconds, max_failures, policy, clock)
        self.listener = listener or MoveListener()
        self.resolver = resolver or ModuleResolver(dag)
        self.phase = Phase.WAITING
        self.failure = ""
        self.started_at: float | None = None
        self.held: dict[OfferId, Offer] = {}
        self.lost: set[AgentId] = set()
        self.live: dict[Instance, LiveTask] = {}
        self.by_task: dict[TaskId, Instance] = {}
        self.retiring: dict[TaskId, LiveTask] = {}  # replaced or being stopped, not yet ended
        self.gone: dict[Instance, _Gone] = {}  # went away; its next placement is a move
        self.failures: dict[Instance, int] = {}
        self.moves: list[Move] = []
        self.last_plan: Plan | None = None
        self.unplaced: tuple[Unplaced, ...] = ()
        self._last_revive = 0.0
        self._lock = asyncio.Lock()
        self.done = asyncio.Event()  # set on STOPPED or FAILED

    # -- views ----------------------------------------------------------------------

    def running_plan(self) -> Plan:
        """The placements of the live instances, as a plan (for ``replan``)."""
        order = {inst: i for i, inst in enumerate(self.dag.instances())}
        placements = sorted((t.placement for t in self.live.values()), key=lambda p: order[p.instance])
        return Plan(self.dag.name, self.opts.policy.name, tuple(placements))

    def view(self) -> FrameworkView:
        order = self.dag.instances()
        instances = tuple(
            InstanceView(i, t.placement.variant, t.placement.agent_id, t.placement.hostname, t.state.value, t.task_id)
            for i in order
            if (t := self.live.get(i)) is not None
        )
        if self.phase is Phase.STOPPING:  # show what is being stopped
            instances += tuple(
                InstanceView(
                    t.instance, t.placement.variant, t.placement.agent_id, t.placement.hostname, "KILLING", t.task_id
                )
                for t in self.retiring.values()
            )
        active = self.phase in (Phase.WAITING, Phase.RUNNING)
        pending = tuple(str(i) for i in order if i not in self.live) if active else ()
        return FrameworkView(
            self.dag.name,
            self.phase,
            instances,
            pending,
            tuple(u.explain() for u in self.unplaced),
            tuple(self.moves),
            self.failure,
        )

    @property
    def all_ended(self) -> bool:
        return not self.live and not self.retiring

    # -- callbacks ------------------------------------------------------------------

    async def registered(self, driver: FrameworkDriver, framework_id: FrameworkId, master_id: str) -> None:
        async with self._lock:
            if self.started_at is None:
                self.started_at = self.opts.clock()
            elif self.live or self.retiring:
                await driver.reconcile()  # after a reconnection: what became of our tasks?

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        async with self._lock:
            if self.phase not in (Phase.WAITING, Phase.RUNNING):
                await self._decline(driver, [o.id for o in offers], self.opts.refuse_seconds)
                return
            for o in offers:
                self.held[o.id] = o
                self.lost.discard(o.agent_id)  # it is back
            await self._step(driver)

    async def offer_rescinded(self, driver: FrameworkDriver, offer_id: OfferId) -> None:
        async with self._lock:
            self.held.pop(offer_id, None)

    async def agent_lost(self, driver: FrameworkDriver, agent_id: AgentId) -> None:
        async with self._lock:
            self.lost.add(agent_id)
            for oid in [oid for oid, o in self.held.items() if o.agent_id == agent_id]:
                del self.held[oid]

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        async with self._lock:
            await self._status(driver, status)

    async def tick(self, driver: FrameworkDriver) -> None:
        """Periodic work (the runner calls it about every 0.25 s): the deadline, and revives."""
        async with self._lock:
            now = self.opts.clock()
            if self.phase is Phase.WAITING and self.opts.deadline is not None and self.started_at is not None:
                if now - self.started_at >= self.opts.deadline:
                    await self._give_up(driver)
            elif (
                self.phase is Phase.RUNNING and self._wants_more() and now - self._last_revive >= self.opts.revive_every
            ):
                await self._revive(driver)

    async def shutdown(self, driver: FrameworkDriver) -> None:
        """Kill every task of the DAG; STOPPED follows once they all ended (``done`` is set)."""
        async with self._lock:
            if self.phase in (Phase.STOPPED, Phase.STOPPING):
                return
            if self.phase is not Phase.FAILED:
                self.phase = Phase.STOPPING
            await self._decline(driver, list(self.held), self.opts.refuse_seconds)
            self.held.clear()
            for inst in list(self.live):
                await self._retire(driver, inst)
            if self.all_ended:
                self._finished()

    def _finished(self) -> None:
        if self.phase is not Phase.FAILED:
            self.phase = Phase.STOPPED
        self.done.set()

    # -- status updates -----------------------------------------------------------------

    async def _status(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        old = self.retiring.get(status.task_id)
        if old is not None:
            if status.state.terminal:
                del self.retiring[status.task_id]
                self.by_task.pop(status.task_id, None)
                if self.phase is Phase.STOPPING and self.all_ended:
                    self._finished()
            return
        inst = self.by_task.get(status.task_id)
        task = self.live.get(inst) if inst is not None else None
        if inst is None or task is None or task.task_id != status.task_id:
            return  # stale, duplicate, or not ours
        if status.state is TaskState.UNREACHABLE and self.phase is Phase.RUNNING:
            # Its agent went silent: move the operator now (the data plane's topics stay the
            # same) and kill the old instance, which its agent hears if it comes back.
            log.warning("%s on %s unreachable: moving it", inst, task.placement.agent_id)
            self.gone[inst] = _Gone(task.placement, f"agent {status.agent_id[:8]} unreachable")
            await self._retire(driver, inst)
            self.by_task[status.task_id] = inst
            await self._revive(driver)
            await self._step(driver)
            return
        if not status.state.terminal:
            was_running = task.state is TaskState.RUNNING
            task.state, task.message = status.state, status.message
            if status.state is TaskState.RUNNING and not was_running:
                self.listener.instance_resumed(inst)
            return
        del self.live[inst]
        self.by_task.pop(status.task_id, None)
        why = _why_ended(status)
        log.warning("%s on %s ended: %s", inst, task.placement.agent_id, why)
        self.gone[inst] = _Gone(task.placement, why)
        self.listener.instance_gone(inst)
        if self.phase is not Phase.RUNNING:
            if self.phase is Phase.STOPPING and self.all_ended:
                self._finished()
            return
        if status.reason is not Reason.AGENT_LOST and status.state is not TaskState.LOST:
            self.failures[inst] = self.failures.get(inst, 0) + 1
            if self.failures[inst] >= self.opts.max_failures:
                self.failure = f"{inst} failed {self.failures[inst]} times; last: {why}"
                await self._fail(driver)
                return
        await self._revive(driver)
        await self._step(driver)

    # -- planning -------------------------------------------------------------------------

    async def _step(self, driver: FrameworkDriver) -> None:
        if self.phase is Phase.WAITING:
            plan = compile_dag(self.dag, Snapshot.from_offers(self.held.values()), self.opts.policy)
            self.last_plan = plan
            self.unplaced = plan.unplaced
            if not plan.complete:
                return  # keep holding offers until it fits (or the deadline passes)
            self.phase = Phase.RUNNING
            await self._launch(driver, [(p, None, "") for p in plan.placements])
        else:
            live_before = self.running_plan()
            snapshot = Snapshot.from_offers(self.held.values(), hosts=live_before.hosts()).without(*self.lost)
            step = replan(self.dag, live_before, snapshot, self.opts.policy)
            self.last_plan = step.plan
            self.unplaced = step.plan.unplaced
            launches: list[tuple[Placement, LiveTask | None, str]] = []
            offered = self._offered()
            for change in step.changes:
                before = self.live.get(change.instance) if change.before is not None else None
                if change.after is None:
                    if before is not None:  # cannot run anywhere now: stop it, report it unplaced
                        self.gone[change.instance] = _Gone(before.placement, change.why or "no longer fits")
                        await self._retire(driver, change.instance)
                    continue
                if change.after.agent_id not in offered and before is None:
                    continue  # placed on room no offer holds; it is placed again with the next offers
                if before is not None and (
                    change.after.agent_id == before.placement.agent_id or change.after.agent_id not in offered
                ):
                    # The new place needs what the old instance holds: stop it first, place it again later.
                    self.gone[change.instance] = _Gone(before.placement, change.why or change.kind.value)
                    await self._retire(driver, change.instance)
                    continue
                launches.append((change.after, before, change.why))
            await self._launch(driver, launches)
        await self._decline_rest(driver)

    def _offered(self) -> set[AgentId]:
        return {o.agent_id for o in self.held.values()}

    async def _launch(self, driver: FrameworkDriver, items: Iterable[tuple[Placement, LiveTask | None, str]]) -> None:
        """Launch placements, one ACCEPT per agent; then stop the instances they replace."""
        by_agent: dict[AgentId, list[tuple[Placement, LiveTask | None, str]]] = {}
        for p, before, why in items:
            by_agent.setdefault(p.agent_id, []).append((p, before, why))
        after = {i: t.placement for i, t in self.live.items()}
        after.update({p.instance: p for group in by_agent.values() for p, _, _ in group})
        refuse = self.opts.retry_seconds if self._wants_more(after) else self.opts.refuse_seconds
        for agent_id, group in by_agent.items():
            offer_ids = [oid for oid, o in self.held.items() if o.agent_id == agent_id]
            tasks: list[TaskInfo] = []
            for p, _, _ in group:
                try:
                    tasks.append(self._task(p))
                except ConfigError as e:
                    self.failure = f"{p.instance}: {e}"
                    await self._fail(driver)
                    return
            try:
                await driver.accept(offer_ids, tasks, Filters(refuse))
            except WireError as e:
                log.warning("launching on %s failed (%s); will place again", agent_id, e)
                for oid in offer_ids:
                    self.held.pop(oid, None)
                continue
            for oid in offer_ids:
                self.held.pop(oid, None)
            for (p, before, why), task in zip(group, tasks, strict=True):
                self._record_move(p, before, why)
                self.live[p.instance] = LiveTask(p.instance, task.task_id, p)
                self.by_task[task.task_id] = p.instance
                if before is not None:  # make-before-break: the old instance stops once the new one is launched
                    self.retiring[before.task_id] = before
                    await self._kill(driver, before)

    def _task(self, p: Placement) -> TaskInfo:
        op = self.dag.operator(p.instance.operator)
        variant = op.variant(p.variant) or op.main
        return TaskInfo(
            task_id=TaskId(new_id()),
            name=task_name(self.dag.name, p.instance),
            agent_id=p.agent_id,
            resources=p.resources,
            container=self.resolver.container(variant.executor),
            args=variant.args,
            env=task_env(self.dag, p.instance, variant),
        )

    def _record_move(self, p: Placement, before: LiveTask | None, why: str) -> None:
        gone = self.gone.pop(p.instance, None)
        if before is not None:
            old, why = before.placement, why or "a better place fits"
            self.listener.instance_gone(p.instance)
        elif gone is not None:
            old, why = gone.placement, gone.why
        else:
            return
        kind = MoveKind.MOVED if old.variant == p.variant else MoveKind.SWITCHED
        if kind is MoveKind.SWITCHED and p.variant == self.dag.operator(p.instance.operator).main.name:
            why = why if "main fits again" in why else f"{why}; main fits again"
        move = Move(p.instance, kind, old.agent_id, old.variant, p.agent_id, p.variant, why, self.opts.clock())
        self.moves.append(move)
        log.info("%s", move)

    # -- offers ---------------------------------------------------------------------------

    def _wants_more(self, placements: Mapping[Instance, Placement] | None = None) -> bool:
        """Something is not running, or runs a fallback: better offers are wanted soon."""
        if placements is None:
            placements = {i: t.placement for i, t in self.live.items()}
        if len(placements) < len(self.dag.instances()):
            return True
        return any(p.variant != self.dag.operator(i.operator).main.name for i, p in placements.items())

    def _refuse(self) -> float:
        return self.opts.retry_seconds if self._wants_more() else self.opts.refuse_seconds

    async def _decline_rest(self, driver: FrameworkDriver) -> None:
        if self.phase is not Phase.RUNNING or not self.held:
            return
        ids = list(self.held)
        self.held.clear()
        await self._decline(driver, ids, self._refuse())

    async def _decline(self, driver: FrameworkDriver, ids: list[OfferId], refuse: float) -> None:
        if not ids:
            return
        try:
            await driver.decline(ids, refuse_seconds=refuse)
        except WireError as e:  # the offers went away meanwhile: nothing to give back
            log.info("decline failed: %s", e)

    async def _revive(self, driver: FrameworkDriver) -> None:
        self._last_revive = self.opts.clock()
        try:
            await driver.revive()
        except WireError as e:
            log.info("revive failed: %s", e)

    # -- stopping -------------------------------------------------------------------------

    async def _retire(self, driver: FrameworkDriver, inst: Instance) -> None:
        task = self.live.pop(inst, None)
        if task is None:
            return
        self.retiring[task.task_id] = task
        if self.phase is Phase.RUNNING:
            self.listener.instance_gone(inst)
        await self._kill(driver, task)

    async def _kill(self, driver: FrameworkDriver, task: LiveTask) -> None:
        try:
            await driver.kill(task.task_id, task.placement.agent_id)
        except WireError as e:  # already gone at the master: it will not report again
            log.info("kill %s failed: %s", task.instance, e)
            self.retiring.pop(task.task_id, None)

    async def _give_up(self, driver: FrameworkDriver) -> None:
        plan = self.last_plan or compile_dag(self.dag, Snapshot.from_offers(self.held.values()), self.opts.policy)
        self.unplaced = plan.unplaced
        waited = self.opts.deadline or 0.0
        self.failure = f"the DAG could not be placed within {waited:g}s:\n" + "\n".join(
            u.explain() for u in plan.unplaced
        )
        await self._fail(driver)

    async def _fail(self, driver: FrameworkDriver) -> None:
        """Give up: stop every task and the framework (teardown)."""
        self.phase = Phase.FAILED
        await self._decline(driver, list(self.held), 0.0)
        self.held.clear()
        for inst in list(self.live):
            await self._retire(driver, inst)
        self.done.set()
        try:
            await driver.stop(teardown=True)
        except WireError as e:
            log.warning("teardown failed: %s", e)


def _why_ended(status: TaskStatus) -> str:
    if status.reason is Reason.AGENT_LOST or status.state is TaskState.LOST:
        return f"agent {status.agent_id[:8]} lost"
    detail = f": {status.message}" if status.message else ""
    return f"task {status.state.value.lower()} ({status.reason.value.lower()}){detail}"


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
