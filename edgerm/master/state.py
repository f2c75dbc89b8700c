"""The master's pure core: one entry point, events in, actions out.

``MasterCore.handle(event, now)`` applies one event (an agent or framework
fact, a scheduler call, or a Tick) and returns the actions the service must
carry out (:mod:`edgerm.master.actions`). Nothing else changes the master's
state; the read-only views (``snapshot``, ``task``, ``free``, ...) only read.

Rules:

- Pure: no I/O, no clock, no randomness, no asyncio. Time comes only from
  ``now``; offer ids and status uuids come from counters
  (``{master_id}-O{n}``, ``{master_id}-S{n}``).
- Validate first, mutate after: a call that cannot be honoured raises a
  :class:`edgerm.errors.WireError` before anything changed.
- Resources: an agent's free resources are its total minus what its live
  tasks hold (from STAGING until terminal) minus what is offered. Offers on
  an agent are exclusive to one framework (see :mod:`edgerm.master.allocator`).
- Status updates to frameworks are reliable: each carries a uuid and is
  re-sent (backing off) until the framework acknowledges it, and again on
  re-subscription (:class:`edgerm.master.tasks.UpdateOutbox`).
- When allocation runs: after a Tick, an agent (re-)registering, a task
  ending, a framework subscribing, disconnecting, being torn down or
  reviving, and an ACCEPT that launched tasks. A DECLINE (or an ACCEPT
  without tasks) does not allocate at once: the declined resources wait for
  the next cycle, so frameworks cannot bounce an offer between them within
  one instant.
- An offer left unanswered until it expires is rescinded and counts as a
  decline with ``default_refuse_seconds`` (calls carry their own filters).
- Teardown forgets the framework but keeps its tasks (KILLING, reason
  FRAMEWORK_REMOVED) until the agent confirms they ended, so their
  resources are never offered twice.
- Task ids are global: an id the master still remembers (live, or among the
  last ``max_completed_tasks`` ended ones) cannot be launched again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edgerm import messages as m
from edgerm.errors import MalformedMessage, UnknownAgent, UnknownCall, UnknownTask
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master import events as ev
from edgerm.master.actions import DropAgent, KillTask, LaunchTask, MasterAction, SendEvent
from edgerm.master.allocator import DRFSorter, Sorter, allocate, offerable
from edgerm.master.offers import OfferBook
from edgerm.master.tasks import TaskChange, TaskRecord, TaskTable, UpdateOutbox, may_follow
from edgerm.master.validation import check_accept, check_offers, require_subscribed
from edgerm.model import AgentInfo, FrameworkInfo, Offer, Reason, Source, TaskState, TaskStatus
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
    expired_offer_memory: int = 1024  # timed-out offer ids remembered to answer OFFER_EXPIRED


@dataclass(frozen=True, slots=True)
class AgentRecord:
    info: AgentInfo
    registered_at: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class FrameworkRecord:
    info: FrameworkInfo
    active: bool = True  # its event stream is open
    suppressed: bool = False


class MasterCore:
    """The master's state machine. See the module docstring for its rules."""

    def __init__(self, config: MasterConfig = MasterConfig(), sorter: Sorter | None = None) -> None:
        self.config = config
        self._sorter: Sorter = sorter if sorter is not None else DRFSorter()
        self._agents: dict[AgentId, AgentRecord] = {}
        self._frameworks: dict[FrameworkId, FrameworkRecord] = {}
        self._tasks = TaskTable()
        self._offers = OfferBook(config.master_id, config.expired_offer_memory)
        self._outbox = UpdateOutbox()
        self._status_counter = 0

    # ------------------------------------------------------------------ entry

    def handle(self, event: ev.MasterEvent, now: float) -> list[MasterAction]:
        """Apply one event. Raises a WireError subclass (edgerm.errors) for a call
        that cannot be honoured, and then NOTHING changed (validate first, mutate after)."""
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
                return self._acknowledge(event)
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
        }
        agents = [self._agent_json(a) for _, a in sorted(self._agents.items())]
        frameworks = [self._framework_json(f) for _, f in sorted(self._frameworks.items())]
        tasks = [_task_json(r) for r in sorted(self._tasks, key=lambda r: r.task_id)]
        return {"master": master, "agents": agents, "frameworks": frameworks, "tasks": tasks}

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
            total = EMPTY
            for agent in self._agents.values():
                total = total + agent.info.resources
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
        actions = self._rescind_agent_offers(info.id)
        self._agents[info.id] = AgentRecord(info, registered_at=now, last_seen=now)
        reported: set[TaskId] = set()
        for status in e.tasks:
            reported.add(status.task_id)
            actions += self._reported(info.id, replace(status, agent_id=info.id), now, kill_if_ended=True)
        # Live tasks the agent no longer holds. STAGING ones may simply not have
        # arrived yet: the heartbeat re-sends their launch.
        for record in self._tasks.live_on(info.id):
            if record.task_id in reported or record.state is TaskState.STAGING:
                continue
            if record.state is TaskState.KILLING:
                status = self._master_status(record, TaskState.KILLED, record.status.reason, "gone after kill", now)
            else:
                status = self._master_status(
                    record, TaskState.LOST, Reason.AGENT_RESTARTED, "agent re-registered without this task", now
                )
            actions += self._set_status(record, status, now)
        self._prune()
        return actions + self._allocate(now)

    def _heartbeat(self, e: ev.HeartbeatReceived, now: float) -> list[MasterAction]:
        agent = self._agents.get(e.agent_id)
        if agent is None:
            raise UnknownAgent(f"agent {e.agent_id!r} is not registered")
        self._agents[e.agent_id] = replace(agent, last_seen=now)
        actions: list[MasterAction] = []
        listed = dict.fromkeys(e.task_ids)
        for task_id in listed:
            record = self._tasks.get(task_id)
            if record is None or record.agent_id != e.agent_id or not record.live:
                grace = record.info.kill_grace if record else DEFAULT_KILL_GRACE
                actions.append(KillTask(e.agent_id, task_id, grace))
        retry = self.config.launch_retry_interval
        for record in self._tasks.live_on(e.agent_id):
            if record.task_id in listed or now - record.last_sent <= retry:
                continue
            if record.state is TaskState.STAGING:
                actions.append(LaunchTask(e.agent_id, record.info))
            elif record.state is TaskState.KILLING:
                # The agent answers KILLED for a task it does not hold.
                actions.append(KillTask(e.agent_id, record.task_id, record.info.kill_grace))
            else:
                continue
            self._tasks.put(replace(record, last_sent=now))
        return actions

    def _status_received(self, e: ev.StatusReceived, now: float) -> list[MasterAction]:
        if e.agent_id not in self._agents:
            raise UnknownAgent(f"agent {e.agent_id!r} is not registered")
        status = replace(e.status, agent_id=e.agent_id)
        actions = self._reported(e.agent_id, status, now, kill_if_ended=False)
        if status.state.terminal:
            self._prune()
            actions += self._allocate(now)
        return actions

    def _reported(self, agent_id: AgentId, status: TaskStatus, now: float, kill_if_ended: bool) -> list[MasterAction]:
        """An agent says a task of its own is in ``status``."""
        record = self._tasks.get(status.task_id)
        if record is None or record.agent_id != agent_id:
            if status.state.terminal:
                return []
            return [KillTask(agent_id, status.task_id, DEFAULT_KILL_GRACE)]
        if not record.live:
            if kill_if_ended and not status.state.terminal:
                return [KillTask(agent_id, record.task_id, record.info.kill_grace)]
            return []
        if status.uuid and status.uuid in record.seen_uuids:
            return []  # a retry of an update already taken in
        if status.uuid:
            record = replace(record, seen_uuids=record.seen_uuids | {status.uuid})
        if not may_follow(record.state, status.state) or (not status.uuid and status.state is record.state):
            self._tasks.put(record)  # late, backwards, or no news: remember the uuid only
            return []
        return self._set_status(record, replace(status, uuid=status.uuid or self._new_uuid()), now)

    # ------------------------------------------------------- framework facts

    def _framework_subscribed(self, e: ev.FrameworkSubscribed, now: float) -> list[MasterAction]:
        info = e.framework
        if not info.id:
            raise MalformedMessage("a framework subscribed without an id")
        old = self._frameworks.get(info.id)
        if old is None:
            self._sorter.add(info.id)
            for record in self._tasks.of_framework(info.id):
                if record.live:
                    self._sorter.allocated(info.id, record.info.resources)
        else:
            self._drop_offers_of(info.id)  # made on a stream that is gone
        self._frameworks[info.id] = FrameworkRecord(info, active=True, suppressed=False)
        interval = self.config.status_retry_interval
        actions: list[MasterAction] = [
            SendEvent(info.id, m.Update(s)) for s in self._outbox.resend_all(info.id, now, interval)
        ]
        return actions + self._allocate(now)

    def _framework_disconnected(self, e: ev.FrameworkDisconnected, now: float) -> list[MasterAction]:
        framework = self._frameworks.get(e.framework_id)
        if framework is None:
            return []
        self._frameworks[e.framework_id] = replace(framework, active=False)
        self._drop_offers_of(e.framework_id)
        return self._allocate(now)

    # ------------------------------------------------------- scheduler calls

    def _accept(self, call: m.Accept, now: float) -> list[MasterAction]:
        plan = check_accept(
            self._offers, call, now, self._active(call.framework_id), self.agent_info, self._tasks.__contains__
        )
        for offer in plan.offers:
            self._remove_offer(offer)
        refuse = call.filters.refuse_seconds
        if refuse > 0 and offerable(plan.leftover):
            self._offers.refuse(call.framework_id, plan.agent.id, now + refuse)
        if not plan.tasks:
            return []  # an accept without tasks is a decline
        actions: list[MasterAction] = []
        for task in plan.tasks:
            status = TaskStatus(task.task_id, plan.agent.id, TaskState.STAGING, timestamp=now, source=Source.MASTER)
            self._tasks.put(TaskRecord(task, status, last_sent=now))
            actions.append(LaunchTask(plan.agent.id, task))
        self._sorter.allocated(call.framework_id, plan.used)
        return actions + self._allocate(now)

    def _decline(self, call: m.Decline, now: float) -> list[MasterAction]:
        require_subscribed(call.framework_id, self._active(call.framework_id))
        offers = check_offers(self._offers, call.framework_id, call.offer_ids, now)
        for offer in offers:
            self._remove_offer(offer)
            if call.filters.refuse_seconds > 0:
                self._offers.refuse(call.framework_id, offer.agent_id, now + call.filters.refuse_seconds)
        return []

    def _revive(self, call: m.Revive, now: float) -> list[MasterAction]:
        framework = self._subscribed(call.framework_id)
        self._frameworks[call.framework_id] = replace(framework, suppressed=False)
        self._offers.clear_filters(framework_id=call.framework_id)
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

    def _acknowledge(self, call: m.Acknowledge) -> list[MasterAction]:
        self._subscribed(call.framework_id)
        if self._outbox.acknowledge(call.framework_id, call.uuid, call.task_id or None):
            self._prune()
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
        actions: list[MasterAction] = []
        for record in self._tasks.of_framework(fid):
            if not record.live:
                continue
            if record.state is not TaskState.KILLING:
                killing = self._master_status(
                    record, TaskState.KILLING, Reason.FRAMEWORK_REMOVED, "framework torn down", now, reliable=False
                )
                record = replace(record, status=killing)
            self._tasks.put(replace(record, last_sent=now))
            actions.append(KillTask(record.agent_id, record.task_id, record.info.kill_grace))
        self._drop_offers_of(fid)
        self._sorter.remove(fid)
        self._outbox.drop_framework(fid)
        self._offers.clear_filters(framework_id=fid)
        del self._frameworks[fid]
        self._prune()
        return actions + self._allocate(now)

    # ------------------------------------------------------------------ time

    def _tick(self, now: float) -> list[MasterAction]:
        actions: list[MasterAction] = []
        for offer in self._offers.due(now):
            self._remove_offer(offer, expired=True)
            if self.config.default_refuse_seconds > 0:
                self._offers.refuse(offer.framework_id, offer.agent_id, now + self.config.default_refuse_seconds)
            actions.append(SendEvent(offer.framework_id, m.Rescind(offer.id)))
        factor = self.config.agent_timeout_factor
        for agent in list(self._agents.values()):
            interval = agent.info.heartbeat_interval if agent.info.heartbeat_interval > 0 else 1.0
            if now - agent.last_seen > factor * interval:
                actions += self._lose_agent(agent.info.id, now)
        self._offers.purge_filters(now)
        for fid, framework in self._frameworks.items():
            if framework.active:
                actions += [SendEvent(fid, m.Update(s)) for s in self._outbox.due(fid, now)]
        return actions + self._allocate(now)

    def _lose_agent(self, agent_id: AgentId, now: float) -> list[MasterAction]:
        actions = self._rescind_agent_offers(agent_id)
        for record in self._tasks.live_on(agent_id):
            status = self._master_status(record, TaskState.LOST, Reason.AGENT_LOST, "agent lost", now)
            actions += self._set_status(record, status, now)
        actions += [SendEvent(fid, m.Failure(agent_id)) for fid, f in self._frameworks.items() if f.active]
        actions.append(DropAgent(agent_id))
        del self._agents[agent_id]
        self._offers.clear_filters(agent_id=agent_id)
        self._prune()
        return actions

    # ------------------------------------------------------------ allocation

    def _allocate(self, now: float) -> list[MasterAction]:
        """One allocation cycle: one OFFERS event per framework with its new offers."""
        if not self._agents or not self._frameworks:
            return []
        total = EMPTY
        for agent in self._agents.values():
            total = total + agent.info.resources
        free = [(agent_id, self._free(agent_id)) for agent_id in sorted(self._agents)]
        grants = allocate(free, total, self._sorter, self._offers.holder, lambda f, a: self._eligible(f, a, now))
        new: dict[FrameworkId, list[Offer]] = {}
        expires_at = now + self.config.offer_timeout
        for g in grants:
            offer = self._offers.create(g.framework_id, self._agents[g.agent_id].info, g.resources, expires_at)
            new.setdefault(g.framework_id, []).append(offer)
        return [SendEvent(fid, m.Offers(tuple(offers))) for fid, offers in new.items()]

    def _eligible(self, framework_id: FrameworkId, agent_id: AgentId, now: float) -> bool:
        framework = self._frameworks.get(framework_id)
        return (
            framework is not None
            and framework.active
            and not framework.suppressed
            and not self._offers.filtered(framework_id, agent_id, now)
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
        return f"{self.config.master_id}-S{self._status_counter}"

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

    def _prune(self) -> None:
        self._tasks.prune(self.config.max_completed_tasks, self._outbox.holds_task)

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


def _task_json(record: TaskRecord) -> dict[str, object]:
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
