"""The master's pure core: one entry point, events in, actions out.

``MasterCore.handle(event, now)`` applies one event (an agent or framework
fact, a scheduler call, or a Tick) and returns the actions the service must
carry out (:mod:`edgerm.master.actions`). Nothing else changes the master's
state; the read-only views (``views``, ``task``, ``free``, ...) only read.
``views`` (:mod:`edgerm.master.readviews`) is refreshed at the end of every
event from the same change marks as the registry; ``snapshot`` formats the
whole state from scratch (the tests' reference; requests use the views).

Rules:

- Pure: no I/O, no clock, no randomness, no asyncio. Time comes only from
  ``now``; offer ids and status uuids come from counters
  (``{master_id}-O{n}``, ``{master_id}-S{n}``); a KILLING status re-issued
  reliably by a restored master gets ``{master_id}-K{its timestamp in µs}``.
- Validate first, mutate after: a call that cannot be honoured raises a
  :class:`edgerm.errors.WireError` before anything changed.
- Resources: an agent's free resources are its total minus what its live
  tasks hold (from STAGING until terminal) minus what is offered. Offers on
  an agent are exclusive to one framework (see :mod:`edgerm.master.allocator`).
- Status updates to frameworks are reliable: each carries a uuid and is
  re-sent (backing off) until the framework acknowledges it, and again on
  re-subscription (:class:`edgerm.master.tasks.UpdateOutbox`).
- Allocation is incremental: it looks only at what changed. The core keeps
  dirty agents (resources freed: a task ended, an offer was declined,
  expired or rescinded, the agent registered or came back, a filter on it
  expired) and dirty frameworks (subscribed, revived, back under its offer
  limit), plus the pool of agents that have free resources nobody could take
  when they were last looked at. An allocation cycle visits the dirty agents,
  and for each dirty framework the pool agents it may take until it is full;
  nothing else (see ``_allocate``). Filters expire from a heap, offers too.
  ``full_reallocation`` restores the old cycle over every agent (the
  benchmark's baseline).
- When allocation runs: after a Tick, an agent (re-)registering, a task
  ending, a framework subscribing, disconnecting, being torn down or
  reviving, and an ACCEPT that launched tasks. A DECLINE (or an ACCEPT
  without tasks) does not allocate at once: the declined resources wait for
  the next cycle, so frameworks cannot bounce an offer between them within
  one instant.
- Placement is DRF over what each framework holds: its live tasks AND its
  outstanding offers, so sitting on offers does not keep a framework first.
  A framework holding ``max_outstanding_offers`` offers gets no more until it
  answers some or they expire.
- ACCEPT filters: the leftovers of an ACCEPT that launched tasks go back to
  the pool at once and are re-offered in the same step (the acceptor
  included: it just showed demand; DRF decides who is first). The ACCEPT's
  ``refuse_seconds`` applies only to an ACCEPT that launched nothing (a
  decline). A framework that wants no more of an agent declines the
  leftover offer with its own filter, or suppresses.
- An offer left unanswered until it expires is rescinded and counts as a
  decline with ``default_refuse_seconds`` (calls carry their own filters).
- Teardown forgets the framework but keeps its tasks (KILLING, reason
  FRAMEWORK_REMOVED) until the agent confirms they ended, so their
  resources are never offered twice.
- Task ids are global: an id the master still remembers (live, or among the
  last ``max_completed_tasks`` ended ones) cannot be launched again.
- Durable state: every change to frameworks, agents and tasks is reported
  in ONE ``Persist`` action at the end of the event's actions (see
  :mod:`edgerm.master.registry`); the service holds the event's other
  actions and its reply until the write is durable. ``restore`` rebuilds
  the core from a loaded registry.
- Partitions are not deaths: an agent silent for ``agent_timeout_factor``
  heartbeat intervals becomes UNREACHABLE (its tasks too, reason
  AGENT_UNREACHABLE; its resources leave the offer pool). If it returns
  within ``unreachable_timeout`` its tasks go back to what they were;
  otherwise they become LOST and the agent is told to kill them when it
  returns.
  Liveness is kept as deadlines (:mod:`edgerm.master.deadlines`): a Tick
  looks only at the agents whose deadline passed, never at the whole fleet;
  a heartbeat only moves its agent's deadline later and touches no heap.
- Settle periods: after ``restore`` and after any gap between Ticks longer
  than the shortest heartbeat interval (the master itself stalled), no agent
  is declared unreachable for ``reregister_grace`` seconds, and a task an
  agent reports that the master does not know is killed only once the
  period is over (with a Notice saying why).
- A framework whose stream closed keeps its tasks for its failover timeout;
  then its tasks are killed (FRAMEWORK_FAILOVER_TIMEOUT) and it is forgotten.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from edgerm import messages as m
from edgerm.errors import Conflict, LimitExceeded, MalformedMessage, UnknownAgent, UnknownCall, UnknownTask
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master import events as ev
from edgerm.master.actions import DropAgent, KillTask, LaunchTask, MasterAction, Notice, Persist, SendEvent
from edgerm.master.allocator import DRFSorter, Grant, Sorter, allocate, offerable
from edgerm.master.deadlines import Deadlines
from edgerm.master.offers import OfferBook
from edgerm.master.readviews import ReadViews, SortedIds
from edgerm.master.registry import AgentRow, Changes, FrameworkRow, ModuleStripper, Registry, TaskRow
from edgerm.master.tasks import TaskChange, TaskRecord, TaskTable, UpdateOutbox, may_follow
from edgerm.master.validation import check_accept, check_offers, require_subscribed
from edgerm.model import AgentInfo, FrameworkInfo, Offer, Reason, Source, TaskState, TaskStatus, WasmSpec
from edgerm.resources import EMPTY, Resources

DEFAULT_KILL_GRACE = 3.0  # for tasks the master does not know (TaskInfo's default)


@dataclass(frozen=True, slots=True)
class MasterConfig:
    master_id: str = "master"
    offer_timeout: float = 10.0  # seconds an offer stays valid
    default_refuse_seconds: float = 5.0  # filter after an offer expired unanswered
    agent_timeout_factor: float = 3.0  # lost after 3 missed heartbeat intervals
    status_retry_interval: float = 2.0  # resend unacknowledged UPDATEs this often (doubling, cap 30 s)
    launch_retry_interval: float = 2.0  # re-send LaunchTask for a STAGING task the heartbeat does not list
    max_completed_tasks: int = 1000  # ended tasks remembered for reconciliation and late reports
    completed_task_ttl: float = 24 * 3600.0  # ... and for at most this long after they ended
    expired_offer_memory: int = 1024  # timed-out offer ids remembered to answer OFFER_EXPIRED
    incarnation: str = ""  # differs per master start, so offer and status ids never repeat across restarts
    reregister_grace: float = 0.0  # settle period; 0 = 3 heartbeat intervals of the slowest known agent
    unreachable_timeout: float = 600.0  # an unreachable agent's tasks become LOST after this
    framework_failover_timeout: float = 24 * 3600.0  # for frameworks that do not set their own
    last_seen_persist_interval: float = 60.0  # how stale an agent's last contact may be in the registry
    max_agents: int = 100_000
    max_frameworks: int = 1_000
    max_tasks_per_agent: int = 1_000
    max_pending_updates: int = 10_000  # unacknowledged updates per framework before its ACCEPTs are refused
    max_outstanding_offers: int = 100  # offers one framework may hold unanswered; 0 = no limit
    full_reallocation: bool = False  # every cycle visits every agent (the pre-incremental allocator; a baseline)

    @property
    def id_prefix(self) -> str:
        return f"{self.master_id}.{self.incarnation}" if self.incarnation else self.master_id


class AgentState(enum.Enum):
    ACTIVE = "ACTIVE"
    UNREACHABLE = "UNREACHABLE"  # missed its heartbeats; may come back
    RECOVERING = "RECOVERING"  # known from the registry, not re-registered since this master started


@dataclass(frozen=True, slots=True)
class AgentRecord:
    info: AgentInfo
    registered_at: float
    last_seen: float
    state: AgentState = AgentState.ACTIVE
    unreachable_since: float | None = None
    reachable_since: float = 0.0  # when it last became ACTIVE
    instance_id: str = ""  # the agent process that registered
    persisted_seen: float = 0.0  # last_seen as the registry has it


@dataclass(frozen=True, slots=True)
class FrameworkRecord:
    info: FrameworkInfo
    active: bool = True  # its event stream is open
    suppressed: bool = False
    disconnected_at: float | None = None


class MasterCore:
    """The master's state machine. See the module docstring for its rules."""

    def __init__(self, config: MasterConfig = MasterConfig(), sorter: Sorter | None = None) -> None:
        self.config = config
        self._sorter: Sorter = sorter if sorter is not None else DRFSorter()
        self._agents: dict[AgentId, AgentRecord] = {}
        self._frameworks: dict[FrameworkId, FrameworkRecord] = {}
        self._tasks = TaskTable()
        self._offers = OfferBook(config.id_prefix, config.expired_offer_memory)
        self._outbox = UpdateOutbox()
        self._status_counter = 0
        self._settle_until = float("-inf")
        self._last_tick: float | None = None
        self._unknown_reported: dict[tuple[AgentId, TaskId], float] = {}  # seen while settling
        self._changed_agents: set[AgentId] = set()
        self._seen_agents: set[AgentId] = set()  # only last_seen is due in the registry (Changes.seen)
        self._changed_frameworks: set[FrameworkId] = set()
        self._new_modules: list[bytes] = []
        self._strip = ModuleStripper()  # the registry's rows of tasks, without inline modules
        # Incremental allocation (see the module docstring).
        self._total = EMPTY  # the scalars of every known agent: what DRF shares are taken of
        # Agents with free resources that nobody could take when last seen, in id order.
        self._pool: SortedIds[AgentId] = SortedIds()
        self._dirty_agents: set[AgentId] = set()  # to look at in the next cycle
        self._dirty_frameworks: set[FrameworkId] = set()  # may take pool agents they could not before
        self._intervals: dict[float, int] = {}  # heartbeat interval -> how many agents state it (min/max per tick)
        #: When each agent must next be looked at for liveness (see ``_liveness_deadline``): a Tick looks
        #: only at the agents whose deadline passed, never at the whole fleet.
        self._liveness: Deadlines[AgentId] = Deadlines()
        self.views = ReadViews(
            self._agents,
            self._frameworks,
            self._tasks,
            self._offers,
            self._outbox,
            self._sorter,
            self._failover_timeout,
        )

    # ------------------------------------------------------------------ entry

    def handle(self, event: ev.MasterEvent, now: float) -> list[MasterAction]:
        """Apply one event. Raises a WireError subclass (edgerm.errors) for a call
        that cannot be honoured, and then NOTHING changed (validate first, mutate after).
        Changes that must survive a restart come last, as one ``Persist``."""
        if self._last_tick is None:
            self._last_tick = now  # the loop's clock starts with the first event
        self._tasks.now = now
        actions = self._dispatch(event, now)
        self.views.refresh(self._changed_agents, self._changed_frameworks, self._tasks.changed)
        changes = self._take_changes()
        if changes:
            actions.append(Persist(changes))
        return actions

    def restore(self, registry: Registry, now: float) -> list[MasterAction]:
        """Rebuild from a loaded registry, before any other event, and start a settle period."""
        if self._agents or self._frameworks or len(self._tasks):
            raise RuntimeError("restore() needs a fresh core")
        for f in registry.frameworks:
            self._sorter.add(f.info.id)
            self._frameworks[f.info.id] = FrameworkRecord(f.info, active=False, disconnected_at=now)
        for a in registry.agents:
            self._total = self._total + _scalars(a.info.resources)
            self._count_interval(a.info, +1)
            self._agents[a.info.id] = AgentRecord(
                a.info,
                registered_at=a.last_seen,
                last_seen=now,
                state=AgentState.RECOVERING,
                unreachable_since=a.unreachable_since,
                persisted_seen=a.last_seen,
            )
            self._watch_agent(a.info.id)
        interval = self.config.status_retry_interval
        self._tasks.now = now
        for t in registry.tasks:
            status = t.status
            if not t.acknowledged and not status.uuid and t.info.framework_id in self._frameworks:
                # The framework had not acknowledged an older update, and the latest status is one the master
                # made without a uuid (KILLING): only the latest is kept, so it goes out reliably instead,
                # under a uuid derived from the status itself, so every later restart sends it under the same.
                status = replace(status, uuid=f"{self.config.master_id}-K{round(status.timestamp * 1e6)}")
            record = TaskRecord(t.info, status, last_sent=now, seen_uuids=frozenset({status.uuid} - {""}))
            self._tasks.put(record)
            if record.framework_id in self._frameworks:
                if record.live:
                    self._sorter.allocated(record.framework_id, record.info.resources)
                if not t.acknowledged and status.uuid:
                    self._outbox.add(record.framework_id, status, now, interval)
        self._settle_until = now + self._grace()
        self._last_tick = now
        self.views.rebuild()
        self._take_changes()  # what was loaded is already durable
        return [
            Notice(
                f"registry restored: {len(registry.frameworks)} frameworks, {len(registry.agents)} agents, "
                f"{len(registry.tasks)} tasks; settling for {self._grace():.1f}s while agents re-register",
                event="registry_restored",
            )
        ]

    def _dispatch(self, event: ev.MasterEvent, now: float) -> list[MasterAction]:
        match event:
            case ev.AgentRegistered():
                return self._agent_registered(event, now)
            case ev.HeartbeatReceived():
                return self._heartbeat(event, now)
            case ev.StatusReceived():
                return self._status_received(event, now)
            case ev.FrameworkSubscribed():
                return self._framework_subscribed(event, now)
            case ev.FrameworkDisconnected():
                return self._framework_disconnected(event, now)
            case ev.Tick():
                return self._tick(now)
            case m.Accept():
                return self._accept(event, now)
            case m.Decline():
                return self._decline(event, now)
            case m.Revive():
                return self._revive(event, now)
            case m.Suppress():
                return self._suppress(event)
            case m.Kill():
                return self._kill(event, now)
            case m.Acknowledge():
                return self._acknowledge(event, now)
            case m.Reconcile():
                return self._reconcile(event, now)
            case m.Teardown():
                return self._teardown(event, now)
            case _:
                raise UnknownCall(f"the master core does not handle {type(event).__name__}")

    # ------------------------------------------------------------ read views

    def snapshot(self) -> dict[str, object]:
        """The cluster state, JSON-ready: ``{"master", "agents", "frameworks", "tasks"}``."""
        c = self.config
        master: dict[str, object] = {
            "id": c.master_id,
            "offer_timeout": c.offer_timeout,
            "agent_timeout_factor": c.agent_timeout_factor,
            "agents": len(self._agents),
            "frameworks": len(self._frameworks),
            "tasks": len(self._tasks),
            "outstanding_offers": len(self._offers),
            "settling_until": self._settle_until if self._settle_until > float("-inf") else None,
            "unreachable_timeout": c.unreachable_timeout,
        }
        agents = [self._agent_json(a) for _, a in sorted(self._agents.items())]
        frameworks = [self._framework_json(f) for _, f in sorted(self._frameworks.items())]
        tasks = [task_json(r) for r in sorted(self._tasks, key=lambda r: r.task_id)]
        return {"master": master, "agents": agents, "frameworks": frameworks, "tasks": tasks}

    @property
    def settling_until(self) -> float | None:
        """When the current settle period ends (None: there has been none)."""
        return self._settle_until if self._settle_until > float("-inf") else None

    @property
    def size(self) -> int:
        """Agents plus tasks held: how large the state is (the GC policy freezes as it grows)."""
        return len(self._agents) + len(self._tasks)

    def agent_known(self, agent_id: AgentId) -> bool:
        return agent_id in self._agents

    def agent_info(self, agent_id: AgentId) -> AgentInfo | None:
        record = self._agents.get(agent_id)
        return record.info if record else None

    def framework_known(self, framework_id: FrameworkId) -> bool:
        return framework_id in self._frameworks

    def framework_active(self, framework_id: FrameworkId) -> bool:
        """Known and its event stream open (not disconnected)."""
        return self._active(framework_id)

    def task(self, task_id: TaskId) -> TaskRecord | None:
        return self._tasks.get(task_id)

    def live_tasks_of(self, framework_id: FrameworkId) -> int:
        """How many of the framework's tasks are live (STAGING until terminal)."""
        return self.views.live_tasks_of(framework_id)

    def offers_of(self, framework_id: FrameworkId) -> list[Offer]:
        return self._offers.of_framework(framework_id)

    # Read views for the service's metrics and dashboard (read only, no copies of state kept).

    def take_task_changes(self) -> list[TaskChange]:
        """Task status changes since the last call, oldest first (see :mod:`edgerm.master.tasks`)."""
        return self._tasks.take_changes()

    def agent_records(self) -> list[AgentRecord]:
        return list(self._agents.values())

    def framework_records(self) -> list[FrameworkRecord]:
        return list(self._frameworks.values())

    def tasks(self) -> list[TaskRecord]:
        """Every task the master remembers (live, and the last ended ones)."""
        return list(self._tasks)

    def used_on(self, agent_id: AgentId) -> Resources:
        return self._tasks.used_on(agent_id)

    def offered_on(self, agent_id: AgentId) -> Resources:
        return self._offers.offered_on(agent_id)

    def dominant_shares(self, total: Resources | None = None) -> dict[FrameworkId, float]:
        """Each framework's DRF dominant share of the cluster ``total`` (held and offered); empty unless DRF.

        ``total``: the agents' summed resources when the caller has them already (else summed here)."""
        if not isinstance(self._sorter, DRFSorter):
            return {}
        if total is None:
            total = self._total
        return {fid: self._sorter.share(fid, total) for fid in self._frameworks}

    def free(self, agent_id: AgentId) -> Resources:
        """An agent's total minus its live tasks minus its offers. Unknown agent: UnknownAgent."""
        if agent_id not in self._agents:
            raise UnknownAgent(f"agent {agent_id!r} is not registered")
        return self._free(agent_id)

    # ----------------------------------------------------------- agent facts

    def _agent_registered(self, e: ev.AgentRegistered, now: float) -> list[MasterAction]:
        info = e.agent
        if not info.id:
            raise MalformedMessage("an agent registered without an id")
        old = self._agents.get(info.id)
        if old is None and len(self._agents) >= self.config.max_agents:
            raise LimitExceeded(f"the master holds its limit of {self.config.max_agents} agents")
        if (
            old is not None
            and old.state is AgentState.ACTIVE
            and old.instance_id
            and e.instance_id != old.instance_id
            and now - old.last_seen <= _interval(old.info)
        ):
            raise Conflict(
                f"agent {info.id!r} is live with another instance; a second agent with this id is refused "
                f"until the first has been silent for {_interval(old.info):g}s"
            )
        actions = self._rescind_agent_offers(info.id)
        if old is not None:
            self._total = self._total - _scalars(old.info.resources)
            self._count_interval(old.info, -1)
        self._total = self._total + _scalars(info.resources)
        self._count_interval(info, +1)
        self._put_agent(
            AgentRecord(
                info,
                registered_at=now,
                last_seen=now,
                reachable_since=now,
                instance_id=e.instance_id,
                persisted_seen=now,
            )
        )
        reported: set[TaskId] = set()
        for status in e.tasks:
            reported.add(status.task_id)
            actions += self._reported(info.id, replace(status, agent_id=info.id), now, kill_if_ended=True)
        # Live tasks the agent no longer holds. STAGING ones may simply not have
        # arrived yet: the heartbeat re-sends their launch.
        for record in self._tasks.live_on(info.id):
            if record.task_id in reported:
                if record.state is TaskState.UNREACHABLE:
                    actions += self._back_from_unreachable(record, now)
                continue
            if record.state is TaskState.STAGING or record.before is TaskState.STAGING:
                if record.state is TaskState.UNREACHABLE:
                    actions += self._back_from_unreachable(record, now)
                continue
            if record.state is TaskState.KILLING or record.before is TaskState.KILLING:
                status = self._master_status(record, TaskState.KILLED, record.status.reason, "gone after kill", now)
            else:
                status = self._master_status(
                    record, TaskState.LOST, Reason.AGENT_RESTARTED, "agent re-registered without this task", now
                )
            actions += self._set_status(record, status, now)
        self._prune(now)
        return actions + self._allocate(now)

    def _heartbeat(self, e: ev.HeartbeatReceived, now: float) -> list[MasterAction]:
        agent = self._agents.get(e.agent_id)
        if agent is None or agent.state is AgentState.RECOVERING:
            # RECOVERING: the master restarted; REGISTER brings the agent's task statuses.
            raise UnknownAgent(f"agent {e.agent_id!r} is not registered")
        actions: list[MasterAction] = []
        listed = dict.fromkeys(e.task_ids)
        back = agent.state is AgentState.UNREACHABLE
        if back:
            agent = replace(agent, state=AgentState.ACTIVE, unreachable_since=None, reachable_since=now)
            self._changed_agents.add(e.agent_id)
            self._dirty_agents.add(e.agent_id)  # its resources are offerable again
            actions.append(
                Notice(
                    f"agent reachable again: agent_id={e.agent_id} hostname={agent.info.hostname}",
                    agent_id=e.agent_id,
                    event="agent_reachable_again",
                )
            )
            for record in self._tasks.live_on(e.agent_id):
                if record.state is TaskState.UNREACHABLE and (
                    record.task_id in listed or record.before is TaskState.STAGING
                ):
                    actions += self._back_from_unreachable(record, now)
        if now - agent.persisted_seen > self.config.last_seen_persist_interval:
            agent = replace(agent, persisted_seen=now)
            self._seen_agents.add(e.agent_id)  # one column, and no view to refresh
        self._agents[e.agent_id] = replace(agent, last_seen=now)
        if back:
            self._watch_agent(e.agent_id)  # its deadline is sooner than its unreachable timeout
        # Otherwise its deadline only moved later: the entry it has comes up first and is re-checked.
        settling = now < self._settle_until
        for task_id in listed:
            known = self._tasks.get(task_id)
            if known is None or known.agent_id != e.agent_id:
                actions += self._unknown_task(e.agent_id, task_id, now)
            elif not known.live:
                actions.append(KillTask(e.agent_id, task_id, known.info.kill_grace, f"task is {known.state.value}"))
        retry = self.config.launch_retry_interval
        back_for = now - agent.reachable_since
        for record in self._tasks.live_on(e.agent_id):
            if record.task_id in listed:
                continue
            if record.state is TaskState.UNREACHABLE:
                # Came back without it: give its last updates time to arrive, then it is lost.
                if not settling and back_for > self.config.agent_timeout_factor * _interval(agent.info):
                    status = self._master_status(
                        record, TaskState.LOST, Reason.AGENT_REREGISTERED, "agent came back without this task", now
                    )
                    actions += self._set_status(record, status, now)
                continue
            if now - record.last_sent <= retry:
                continue
            if record.state is TaskState.STAGING:
                actions.append(LaunchTask(e.agent_id, record.info))
            elif record.state is TaskState.KILLING:
                # The agent answers KILLED for a task it does not hold.
                actions.append(KillTask(e.agent_id, record.task_id, record.info.kill_grace))
            else:
                continue
            self._tasks.put(replace(record, last_sent=now))
        if back or any(isinstance(a, SendEvent) for a in actions):
            actions += self._allocate(now)
        return actions

    def _status_received(self, e: ev.StatusReceived, now: float) -> list[MasterAction]:
        agent = self._agents.get(e.agent_id)
        if agent is None or agent.state is AgentState.RECOVERING:
            raise UnknownAgent(f"agent {e.agent_id!r} is not registered")
        actions: list[MasterAction] = []
        ended = False
        for status in e.statuses:  # a batch: each as if alone, one allocation for all at the end
            if status.agent_id != e.agent_id:
                status = replace(status, agent_id=e.agent_id)
            actions += self._reported(e.agent_id, status, now, kill_if_ended=False)
            ended = ended or status.state.terminal
        if ended:
            self._prune(now)
            actions += self._allocate(now)
        return actions

    def _reported(self, agent_id: AgentId, status: TaskStatus, now: float, kill_if_ended: bool) -> list[MasterAction]:
        """An agent says a task of its own is in ``status``."""
        record = self._tasks.get(status.task_id)
        if record is None or record.agent_id != agent_id:
            if status.state.terminal:
                return []
            return self._unknown_task(agent_id, status.task_id, now)
        if not record.live:
            if kill_if_ended and not status.state.terminal:
                return [KillTask(agent_id, record.task_id, record.info.kill_grace, f"task is {record.state.value}")]
            return []
        if status.uuid and status.uuid in record.seen_uuids:
            return []  # a retry of an update already taken in
        if not may_follow(record.state, status.state) or (not status.uuid and status.state is record.state):
            if status.uuid:  # late, backwards, or no news: remember the uuid only
                self._tasks.put(replace(record, seen_uuids=record.seen_uuids | {status.uuid}))
            return []
        if not status.uuid:
            status = replace(status, uuid=self._new_uuid())
        return self._set_status(record, status, now)  # it remembers the uuid

    def _unknown_task(self, agent_id: AgentId, task_id: TaskId, now: float) -> list[MasterAction]:
        """An agent runs a task the master does not know: kill it, but not while settling
        (the registry may simply not have heard of it yet... it has, or it never will: wait anyway)."""
        if now < self._settle_until:
            if len(self._unknown_reported) < _UNKNOWN_REPORTED_LIMIT:
                self._unknown_reported.setdefault((agent_id, task_id), now)
            return []
        return [KillTask(agent_id, task_id, DEFAULT_KILL_GRACE, "the master does not know this task")]

    def _back_from_unreachable(self, record: TaskRecord, now: float) -> list[MasterAction]:
        """The agent of an UNREACHABLE task is back and holds it: back to what it was."""
        before = record.before or TaskState.RUNNING
        state = before if before in (TaskState.STAGING, TaskState.STARTING, TaskState.KILLING) else TaskState.RUNNING
        status = self._master_status(record, state, Reason.AGENT_REREGISTERED, "agent reachable again", now)
        actions = self._set_status(replace(record, before=None), status, now)
        if state is TaskState.KILLING:
            actions.append(KillTask(record.agent_id, record.task_id, record.info.kill_grace))
        return actions

    # ------------------------------------------------------- framework facts

    def _framework_subscribed(self, e: ev.FrameworkSubscribed, now: float) -> list[MasterAction]:
        info = e.framework
        if not info.id:
            raise MalformedMessage("a framework subscribed without an id")
        old = self._frameworks.get(info.id)
        if old is None and len(self._frameworks) >= self.config.max_frameworks:
            raise LimitExceeded(f"the master holds its limit of {self.config.max_frameworks} frameworks")
        if old is None:
            self._sorter.add(info.id)
            for record in self._tasks.of_framework(info.id):
                if record.live:
                    self._sorter.allocated(info.id, record.info.resources)
        else:
            self._drop_offers_of(info.id)  # made on a stream that is gone
        self._frameworks[info.id] = FrameworkRecord(info, active=True, suppressed=False)
        self._changed_frameworks.add(info.id)
        self._dirty_frameworks.add(info.id)
        interval = self.config.status_retry_interval
        actions: list[MasterAction] = [
            SendEvent(info.id, m.Update(s)) for s in self._outbox.resend_all(info.id, now, interval)
        ]
        return actions + self._allocate(now)

    def _framework_disconnected(self, e: ev.FrameworkDisconnected, now: float) -> list[MasterAction]:
        framework = self._frameworks.get(e.framework_id)
        if framework is None:
            return []
        self._frameworks[e.framework_id] = replace(framework, active=False, disconnected_at=now)
        self._changed_frameworks.add(e.framework_id)
        self._drop_offers_of(e.framework_id)
        return self._allocate(now)

    # ------------------------------------------------------- scheduler calls

    def _accept(self, call: m.Accept, now: float) -> list[MasterAction]:
        plan = check_accept(
            self._offers, call, now, self._active(call.framework_id), self.agent_info, self._tasks.__contains__
        )
        c = self.config
        if plan.tasks and self._tasks.live_count(plan.agent.id) + len(plan.tasks) > c.max_tasks_per_agent:
            raise LimitExceeded(f"agent {plan.agent.id!r} would run more than {c.max_tasks_per_agent} tasks")
        if plan.tasks and self._outbox.count(call.framework_id) >= c.max_pending_updates:
            raise LimitExceeded(
                f"framework {call.framework_id!r} has {c.max_pending_updates} unacknowledged updates: "
                "acknowledge them before launching more"
            )
        for offer in plan.offers:
            self._remove_offer(offer)
        if not plan.tasks:  # an accept without tasks is a decline: its filter holds
            refuse = call.filters.refuse_seconds
            if refuse > 0 and offerable(plan.leftover):
                self._offers.refuse(call.framework_id, plan.agent.id, now + refuse, plan.leftover)
            return []
        # Launched: the leftovers are re-offered at once, with no filter (see the module docstring).
        actions: list[MasterAction] = []
        for task in plan.tasks:
            status = TaskStatus(task.task_id, plan.agent.id, TaskState.STAGING, timestamp=now, source=Source.MASTER)
            self._tasks.put(TaskRecord(task, status, last_sent=now))
            if isinstance(task.container, WasmSpec) and task.container.module:
                self._new_modules.append(task.container.module)
            actions.append(LaunchTask(plan.agent.id, task))
        self._sorter.allocated(call.framework_id, plan.used)
        return actions + self._allocate(now)

    def _decline(self, call: m.Decline, now: float) -> list[MasterAction]:
        require_subscribed(call.framework_id, self._active(call.framework_id))
        offers = check_offers(self._offers, call.framework_id, call.offer_ids, now)
        for offer in offers:
            self._remove_offer(offer)
            if call.filters.refuse_seconds > 0:
                self._offers.refuse(
                    call.framework_id, offer.agent_id, now + call.filters.refuse_seconds, offer.resources
                )
        return []

    def _revive(self, call: m.Revive, now: float) -> list[MasterAction]:
        framework = self._subscribed(call.framework_id)
        self._frameworks[call.framework_id] = replace(framework, suppressed=False)
        self._offers.clear_filters(framework_id=call.framework_id)
        self._dirty_frameworks.add(call.framework_id)
        return self._allocate(now)

    def _suppress(self, call: m.Suppress) -> list[MasterAction]:
        framework = self._subscribed(call.framework_id)
        self._frameworks[call.framework_id] = replace(framework, suppressed=True)
        return []

    def _kill(self, call: m.Kill, now: float) -> list[MasterAction]:
        self._subscribed(call.framework_id)
        record = self._tasks.get(call.task_id)
        if record is None or record.framework_id != call.framework_id:
            raise UnknownTask(f"framework {call.framework_id!r} has no task {call.task_id!r}")
        if not record.live:
            return []
        if record.state is not TaskState.KILLING:
            killing = self._master_status(
                record, TaskState.KILLING, Reason.KILLED_BY_FRAMEWORK, "kill requested", now, reliable=False
            )
            record = replace(record, status=killing)
        self._tasks.put(replace(record, last_sent=now))
        return [KillTask(record.agent_id, record.task_id, record.info.kill_grace)]

    def _acknowledge(self, call: m.Acknowledge, now: float) -> list[MasterAction]:
        self._subscribed(call.framework_id)
        acked = False
        for one in call.each():  # a batch (``more``) is taken in order, as single calls would be
            task_id = self._outbox.acknowledge(one.framework_id, one.uuid, one.task_id or None)
            if task_id is not None:
                self._tasks.changed.add(task_id)  # its status is acknowledged now
                self._tasks.release(task_id)  # if it was kept only for this acknowledgement, it may go now
                acked = True
        if acked:
            self._prune(now)
        return []

    def _reconcile(self, call: m.Reconcile, now: float) -> list[MasterAction]:
        fid = call.framework_id
        self._subscribed(fid)
        asked = call.tasks or tuple((r.task_id, r.agent_id) for r in self._tasks.of_framework(fid))
        actions: list[MasterAction] = []
        for task_id, agent_id in asked:
            record = self._tasks.get(task_id)
            if record is not None and record.framework_id == fid:
                status = replace(
                    record.status, uuid="", reason=Reason.RECONCILIATION, source=Source.MASTER, timestamp=now
                )
            else:
                status = TaskStatus(
                    task_id,
                    agent_id,
                    TaskState.UNKNOWN,
                    reason=Reason.RECONCILIATION,
                    message="the master does not know this task",
                    timestamp=now,
                    source=Source.MASTER,
                )
            actions.append(SendEvent(fid, m.Update(status)))
        return actions

    def _teardown(self, call: m.Teardown, now: float) -> list[MasterAction]:
        fid = call.framework_id
        require_subscribed(fid, fid in self._frameworks)
        return self._remove_framework(fid, Reason.FRAMEWORK_REMOVED, "framework torn down", now)

    def _remove_framework(self, fid: FrameworkId, reason: Reason, message: str, now: float) -> list[MasterAction]:
        """Kill a framework's tasks (kept as KILLING until their agents confirm) and forget it."""
        actions: list[MasterAction] = []
        if reason is not Reason.FRAMEWORK_REMOVED:  # a teardown is logged as such by the event log
            event = "framework_failed_over"
            actions.append(Notice(f"framework removed: framework_id={fid}: {message}", framework_id=fid, event=event))
        for record in self._tasks.of_framework(fid):
            if self._outbox.has(fid, record.task_id):
                self._tasks.changed.add(record.task_id)  # persisted as acknowledged: nobody is left to ack it
            if not record.live:
                continue
            if record.state is not TaskState.KILLING:
                killing = self._master_status(record, TaskState.KILLING, reason, message, now, reliable=False)
                record = replace(record, status=killing)
            self._tasks.put(replace(record, last_sent=now))
            actions.append(KillTask(record.agent_id, record.task_id, record.info.kill_grace))
        self._drop_offers_of(fid)
        self._sorter.remove(fid)
        for task_id in self._outbox.drop_framework(fid):
            self._tasks.release(task_id)  # nobody is left to acknowledge it
        self._offers.clear_filters(framework_id=fid)
        del self._frameworks[fid]
        self._changed_frameworks.add(fid)
        self._prune(now)
        return actions + self._allocate(now)

    # ------------------------------------------------------------------ time

    def _tick(self, now: float) -> list[MasterAction]:
        actions: list[MasterAction] = []
        for offer in self._offers.due(now):
            self._remove_offer(offer, expired=True)
            if self.config.default_refuse_seconds > 0:
                self._offers.refuse(
                    offer.framework_id, offer.agent_id, now + self.config.default_refuse_seconds, offer.resources
                )
            actions.append(SendEvent(offer.framework_id, m.Rescind(offer.id)))
        actions += self._check_stall(now)
        if now >= self._settle_until:
            actions += self._settled(now)
            actions += self._check_agents(now)
        for fid, framework in list(self._frameworks.items()):
            if framework.active:
                actions += [SendEvent(fid, m.Update(s)) for s in self._outbox.due(fid, now)]
            elif framework.disconnected_at is not None:
                timeout = self._failover_timeout(framework.info)
                if now - framework.disconnected_at > timeout:
                    message = f"did not re-subscribe within its failover timeout of {timeout:g}s"
                    actions += self._remove_framework(fid, Reason.FRAMEWORK_FAILOVER_TIMEOUT, message, now)
        self._prune(now)
        return actions + self._allocate(now)

    def _check_stall(self, now: float) -> list[MasterAction]:
        """A gap between Ticks longer than a heartbeat interval means this master stalled
        (a suspended host, a long pause): its silence is not the agents' fault."""
        last, self._last_tick = self._last_tick, now
        threshold = min(self._intervals, default=1.0)
        if last is None or now - last <= threshold:
            return []
        grace = self._grace()
        self._settle_until = max(self._settle_until, now + grace)
        return [
            Notice(
                f"the master's loop stalled for {now - last:.1f}s: no agent is declared unreachable "
                f"for the next {grace:.1f}s",
                level="WARNING",
                event="master_stalled",
            )
        ]

    def _settled(self, now: float) -> list[MasterAction]:
        """The settle period is over: kill what agents reported that nobody knows."""
        actions: list[MasterAction] = []
        unknown, self._unknown_reported = self._unknown_reported, {}
        for agent_id, task_id in unknown:
            record = self._tasks.get(task_id)
            if record is not None and record.agent_id == agent_id and record.live:
                continue  # known by now
            why = "the master does not know this task (reported while the master settled)"
            actions.append(KillTask(agent_id, task_id, DEFAULT_KILL_GRACE, why))
        return actions

    def _check_agents(self, now: float) -> list[MasterAction]:
        """Agents whose liveness deadline passed: silent ACTIVE ones become UNREACHABLE, RECOVERING ones
        too (they did not re-register while the master settled), UNREACHABLE ones past the unreachable
        timeout are lost. Only the agents that came due are looked at; those still known are watched
        again (an ACTIVE agent that heartbeated meanwhile is simply not due yet)."""
        actions: list[MasterAction] = []
        factor = self.config.agent_timeout_factor
        for agent_id in self._liveness.due(now):
            agent = self._agents.get(agent_id)
            if agent is None:
                continue
            if agent.state is AgentState.ACTIVE:
                if now - agent.last_seen > factor * _interval(agent.info):
                    actions += self._agent_unreachable(agent, now)
            elif agent.state is AgentState.RECOVERING:
                actions += self._agent_unreachable(agent, now)
            elif (
                agent.unreachable_since is not None and now - agent.unreachable_since > self.config.unreachable_timeout
            ):
                actions += self._lose_agent(agent_id, now)
            if agent_id in self._agents:
                self._watch_agent(agent_id)
        return actions

    def _liveness_deadline(self, agent: AgentRecord) -> float:
        """When ``_check_agents`` must next look at this agent (it then re-checks the exact condition)."""
        if agent.state is AgentState.ACTIVE:
            return agent.last_seen + self.config.agent_timeout_factor * _interval(agent.info)
        if agent.state is AgentState.RECOVERING:
            return float("-inf")  # as soon as the master has settled
        if agent.unreachable_since is None:
            return float("inf")
        return agent.unreachable_since + self.config.unreachable_timeout

    def _watch_agent(self, agent_id: AgentId) -> None:
        self._liveness.watch(agent_id, self._liveness_deadline(self._agents[agent_id]))

    def _agent_unreachable(self, agent: AgentRecord, now: float) -> list[MasterAction]:
        agent_id = agent.info.id
        since = agent.unreachable_since if agent.unreachable_since is not None else now
        actions = self._rescind_agent_offers(agent_id)
        actions.append(
            Notice(
                f"agent unreachable: agent_id={agent_id} hostname={agent.info.hostname} "
                f"(silent for {now - agent.last_seen:.1f}s; its tasks are LOST unless it returns within "
                f"{self.config.unreachable_timeout:g}s)",
                agent_id=agent_id,
                event="agent_unreachable",
            )
        )
        self._put_agent(replace(agent, state=AgentState.UNREACHABLE, unreachable_since=since))
        for record in self._tasks.live_on(agent_id):
            if record.state is TaskState.UNREACHABLE:
                continue
            status = self._master_status(
                record, TaskState.UNREACHABLE, Reason.AGENT_UNREACHABLE, "agent missed its heartbeats", now
            )
            actions += self._set_status(replace(record, before=record.state), status, now)
        return actions

    def _lose_agent(self, agent_id: AgentId, now: float) -> list[MasterAction]:
        actions = self._rescind_agent_offers(agent_id)
        hostname = self._agents[agent_id].info.hostname
        actions.append(
            Notice(
                f"agent lost: agent_id={agent_id} hostname={hostname} (unreachable past the timeout)",
                agent_id=agent_id,
                event="agent_lost",
            )
        )
        for record in self._tasks.live_on(agent_id):
            status = self._master_status(record, TaskState.LOST, Reason.AGENT_LOST, "agent lost", now)
            actions += self._set_status(record, status, now)
        actions += [SendEvent(fid, m.Failure(agent_id)) for fid, f in self._frameworks.items() if f.active]
        actions.append(DropAgent(agent_id))
        self._total = self._total - _scalars(self._agents[agent_id].info.resources)
        self._count_interval(self._agents[agent_id].info, -1)
        del self._agents[agent_id]
        self._liveness.forget(agent_id)
        self._dirty_agents.discard(agent_id)
        self._pool.discard(agent_id)
        self._changed_agents.add(agent_id)
        self._offers.clear_filters(agent_id=agent_id)
        self._prune(now)
        return actions

    # ------------------------------------------------------------ allocation

    def _allocate(self, now: float) -> list[MasterAction]:
        """One allocation cycle over what changed: one OFFERS event per framework with its new offers.

        First the dirty agents, in id order, each to the first eligible framework in DRF order.
        Then each dirty framework (one that may take agents it could not before): the pool agents
        it may take, in id order, one at a time while it may still be offered more (the pool is
        read lazily, so a framework stops at its limit): the cost is the offers made and the pool
        agents passed over (filtered or held by others), not the whole pool.
        A pool agent that is not dirty had no eligible framework at the end of the last cycle,
        and whatever could make one eligible for it (a filter ending, an offer on it going, its
        free resources growing) marks it dirty; so only the dirty frameworks can take it, and
        DRF chooses among them."""
        for _, agent_id in self._offers.expire_filters(now):
            self._dirty_agents.add(agent_id)
        if not self._agents or not self._frameworks:
            return []  # what is dirty stays dirty until someone can be offered something
        new: dict[FrameworkId, list[Offer]] = {}
        dirty, self._dirty_agents = self._dirty_agents, set()
        frameworks, self._dirty_frameworks = self._dirty_frameworks, set()
        if self.config.full_reallocation:
            dirty = {a for a, r in self._agents.items() if r.state is AgentState.ACTIVE}
            frameworks = set()
        self._offer_agents(sorted(dirty), now, new)
        for fid in sorted(frameworks):
            # The pool in id order, read lazily from a cursor (each offer takes its agent out of the pool):
            # a framework under its limit stops at the limit, not at the end of the pool.
            cursor = ""
            while self._may_be_offered(fid):
                following = next(self._pool.after(cursor), None)
                if following is None:
                    break
                cursor = following
                if self._may_take(fid, following, now):
                    self._offer_agents([following], now, new, among=frameworks)
        return [SendEvent(fid, m.Offers(tuple(offers))) for fid, offers in new.items()]

    def _offer_agents(
        self,
        agents: list[AgentId],
        now: float,
        new: dict[FrameworkId, list[Offer]],
        among: set[FrameworkId] | None = None,
    ) -> None:
        """Offer these agents' free resources (in this order), to frameworks ``among`` these if given,
        and keep the pool up to date."""
        free: list[tuple[AgentId, Resources]] = []
        for agent_id in agents:
            agent = self._agents.get(agent_id)
            resources = self._free(agent_id) if agent is not None and agent.state is AgentState.ACTIVE else EMPTY
            if offerable(resources):
                self._pool.add(agent_id)
                free.append((agent_id, resources))
            else:
                self._pool.discard(agent_id)
        expires_at = now + self.config.offer_timeout

        def granted(g: Grant) -> None:
            offer = self._offers.create(g.framework_id, self._agents[g.agent_id].info, g.resources, expires_at)
            new.setdefault(g.framework_id, []).append(offer)
            self._pool.discard(g.agent_id)  # all of its free resources are offered now

        free_of = dict(free)

        def eligible(framework_id: FrameworkId, agent_id: AgentId) -> bool:  # allocate() keeps to ``among``
            return self._may_be_offered(framework_id) and not self._offers.filtered(
                framework_id, agent_id, now, free_of[agent_id]
            )

        allocate(free, self._total, self._sorter, self._offers.holder, eligible, granted, among)

    def _may_take(self, framework_id: FrameworkId, agent_id: AgentId, now: float) -> bool:
        """Whether the framework may be offered this agent, its limit aside: not filtered, and the
        agent's holder if the agent is held."""
        if self._offers.has_filter(framework_id, agent_id, now) and self._offers.filtered(
            framework_id, agent_id, now, self._free(agent_id)
        ):
            return False
        holder = self._offers.holder(agent_id)
        return holder is None or holder == framework_id

    def _may_be_offered(self, framework_id: FrameworkId) -> bool:
        """Active, not suppressed, and under its limit of outstanding offers."""
        framework = self._frameworks.get(framework_id)
        limit = self.config.max_outstanding_offers
        return (
            framework is not None
            and framework.active
            and not framework.suppressed
            and (limit <= 0 or self._offers.count_of(framework_id) < limit)
        )

    # --------------------------------------------------------------- helpers

    def _active(self, framework_id: FrameworkId) -> bool:
        framework = self._frameworks.get(framework_id)
        return framework is not None and framework.active

    def _subscribed(self, framework_id: FrameworkId) -> FrameworkRecord:
        framework = self._frameworks.get(framework_id)
        require_subscribed(framework_id, framework is not None and framework.active)
        assert framework is not None
        return framework

    def _free(self, agent_id: AgentId) -> Resources:
        total = self._agents[agent_id].info.resources
        return total - self._tasks.used_on(agent_id) - self._offers.offered_on(agent_id)

    def _new_uuid(self) -> str:
        self._status_counter += 1
        return f"{self.config.id_prefix}-S{self._status_counter}"

    def _grace(self) -> float:
        if self.config.reregister_grace > 0:
            return self.config.reregister_grace
        return self.config.agent_timeout_factor * max(self._intervals, default=1.0)

    def _failover_timeout(self, info: FrameworkInfo) -> float:
        return info.failover_timeout if info.failover_timeout > 0 else self.config.framework_failover_timeout

    def _count_interval(self, info: AgentInfo, delta: int) -> None:
        interval = _interval(info)
        count = self._intervals.get(interval, 0) + delta
        if count > 0:
            self._intervals[interval] = count
        else:
            self._intervals.pop(interval, None)

    def _put_agent(self, record: AgentRecord) -> None:
        self._agents[record.info.id] = record
        self._watch_agent(record.info.id)
        self._changed_agents.add(record.info.id)
        self._dirty_agents.add(record.info.id)  # its state or resources changed: look at it again

    def _take_changes(self) -> Changes:
        """What changed since the last call, as registry rows (and forget it)."""
        tasks, self._tasks.changed = self._tasks.changed, set()
        agents, self._changed_agents = self._changed_agents, set()
        frameworks, self._changed_frameworks = self._changed_frameworks, set()
        modules, self._new_modules = self._new_modules, []
        seen, self._seen_agents = self._seen_agents, set()
        if not (tasks or agents or frameworks or modules or seen):
            return _NO_CHANGES
        task_rows: list[TaskRow] = []
        tasks_gone: list[TaskId] = []
        for task_id in tasks:
            record = self._tasks.get(task_id)
            if record is None:
                tasks_gone.append(task_id)
            else:
                acked = not self._outbox.has(record.framework_id, task_id)
                task_rows.append(TaskRow(self._strip(record.info), record.status, acked))
        agent_rows: list[AgentRow] = []
        agents_gone: list[AgentId] = []
        for agent_id in agents:
            agent = self._agents.get(agent_id)
            if agent is None:
                agents_gone.append(agent_id)
            else:
                agent_rows.append(AgentRow(agent.info, agent.persisted_seen, agent.unreachable_since))
        seen_rows: list[tuple[AgentId, float]] = []
        for agent_id in seen:
            agent = self._agents.get(agent_id)
            if agent is not None and agent_id not in agents:  # a changed agent's row carries it already
                seen_rows.append((agent_id, agent.persisted_seen))
        framework_rows: list[FrameworkRow] = []
        frameworks_gone: list[FrameworkId] = []
        for fid in frameworks:
            framework = self._frameworks.get(fid)
            if framework is None:
                frameworks_gone.append(fid)
            else:
                framework_rows.append(FrameworkRow(framework.info, framework.disconnected_at))
        return Changes(
            tuple(framework_rows),
            tuple(frameworks_gone),
            tuple(agent_rows),
            tuple(agents_gone),
            tuple(task_rows),
            tuple(tasks_gone),
            tuple(modules),
            tuple(seen_rows),
        )

    def _master_status(
        self, record: TaskRecord, state: TaskState, reason: Reason, message: str, now: float, reliable: bool = True
    ) -> TaskStatus:
        """A status the master decides on its own (source MASTER)."""
        return TaskStatus(
            task_id=record.task_id,
            agent_id=record.agent_id,
            state=state,
            reason=reason,
            message=message,
            uuid=self._new_uuid() if reliable else "",
            timestamp=now,
            source=Source.MASTER,
        )

    def _set_status(self, record: TaskRecord, status: TaskStatus, now: float) -> list[MasterAction]:
        """Record a new status (it has a uuid), free the resources of an ended
        task, and forward the status reliably to its framework."""
        updated = replace(record, status=status, seen_uuids=record.seen_uuids | {status.uuid})
        self._tasks.put(updated)
        if record.live and not updated.live:
            self._sorter.unallocated(record.framework_id, record.info.resources)
            self._dirty_agents.add(record.agent_id)  # resources freed
        framework = self._frameworks.get(record.framework_id)
        if framework is None:
            return []  # torn down: nobody to tell
        self._outbox.add(record.framework_id, status, now, self.config.status_retry_interval)
        return [SendEvent(record.framework_id, m.Update(status))] if framework.active else []

    def _remove_offer(self, offer: Offer, expired: bool = False) -> None:
        if expired:
            self._offers.expire(offer.id)
        else:
            self._offers.remove(offer.id)
        self._sorter.unallocated(offer.framework_id, offer.resources)
        self._dirty_agents.add(offer.agent_id)  # resources back in the pool
        limit = self.config.max_outstanding_offers
        if limit > 0 and self._offers.count_of(offer.framework_id) == limit - 1:
            self._dirty_frameworks.add(offer.framework_id)  # back under its limit: it may take pool agents

    def _rescind_agent_offers(self, agent_id: AgentId) -> list[MasterAction]:
        actions: list[MasterAction] = []
        for offer in self._offers.on_agent(agent_id):
            self._remove_offer(offer)
            if self._active(offer.framework_id):
                actions.append(SendEvent(offer.framework_id, m.Rescind(offer.id)))
        return actions

    def _drop_offers_of(self, framework_id: FrameworkId) -> None:
        """Remove a framework's offers without telling it (its stream is gone)."""
        for offer in self._offers.of_framework(framework_id):
            self._remove_offer(offer)

    def _prune(self, now: float) -> None:
        c = self.config
        self._tasks.prune(c.max_completed_tasks, self._awaits_ack, now - c.completed_task_ttl)

    def _awaits_ack(self, task_id: TaskId) -> bool:
        """An update of this task waits for its framework's acknowledgement (only its own framework's box
        can hold it: one lookup, not one per framework)."""
        record = self._tasks.get(task_id)
        return record is not None and self._outbox.has(record.framework_id, task_id)

    # ------------------------------------------------------------------ JSON

    def _agent_json(self, agent: AgentRecord) -> dict[str, object]:
        info = agent.info
        return {
            "id": info.id,
            "hostname": info.hostname,
            "resources": str(info.resources),
            "used": str(self._tasks.used_on(info.id)),
            "offered": str(self._offers.offered_on(info.id)),
            "free": str(self._free(info.id)),
            "attributes": {k: v if isinstance(v, str) else sorted(v) for k, v in sorted(info.attributes.items())},
            "heartbeat_interval": info.heartbeat_interval,
            "state": agent.state.value,
            "unreachable_since": agent.unreachable_since,
            "registered_at": agent.registered_at,
            "last_seen": agent.last_seen,
            "tasks": [r.task_id for r in self._tasks.live_on(info.id)],
        }

    def _framework_json(self, framework: FrameworkRecord) -> dict[str, object]:
        fid = framework.info.id
        return {
            "id": fid,
            "name": framework.info.name,
            "active": framework.active,
            "suppressed": framework.suppressed,
            "disconnected_at": framework.disconnected_at,
            "failover_timeout": self._failover_timeout(framework.info),
            "allocation": str(self._sorter.allocation(fid)),
            "offers": [
                {"id": o.id, "agent_id": o.agent_id, "resources": str(o.resources), "expires_at": o.expires_at}
                for o in self._offers.of_framework(fid)
            ],
            "filters": dict(sorted(self._offers.filters_of(fid).items())),
            "unacknowledged": [
                {"uuid": p.status.uuid, "task_id": p.status.task_id, "next_retry": p.next_retry}
                for p in self._outbox.pending(fid)
            ],
            "tasks": sum(1 for r in self._tasks.of_framework(fid) if r.live),
        }


_NO_CHANGES = Changes()
_UNKNOWN_REPORTED_LIMIT = 100_000  # unknown tasks remembered while settling (more are killed after it anyway)


def _scalars(resources: Resources) -> Resources:
    """Only the scalars: the cluster total is a sum of scalars (ranges and sets do not add up)."""
    return Resources(resources.scalars)


def _interval(info: AgentInfo) -> float:
    return info.heartbeat_interval if info.heartbeat_interval > 0 else 1.0


def task_json(record: TaskRecord) -> dict[str, object]:
    """One task as ``/api/v1/state`` (and ``snapshot()``) lists it."""
    s = record.status
    return {
        "id": record.task_id,
        "name": record.info.name,
        "framework_id": record.framework_id,
        "agent_id": record.agent_id,
        "state": s.state.value,
        "reason": s.reason.value,
        "message": s.message,
        "source": s.source.value,
        "updated_at": s.timestamp,
        "executor": record.info.executor,
        "resources": str(record.info.resources),
    }
