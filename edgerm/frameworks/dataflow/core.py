"""The dataflow framework's pure core: one entry point, events in, actions out.

``DataflowCore.handle(event, now)`` applies one fact
(:mod:`edgerm.frameworks.dataflow.events`) and returns the orders the
framework must carry out; nothing else changes the core's state. Phases and
the moves between them are the table in :mod:`~edgerm.frameworks.dataflow.phases`.

- **WAITING.** Every offer is held. After each batch of offers the DAG is
  compiled against them; once every instance has a place, all are launched
  (one :class:`~.events.Accept` per agent, with all of its held offers). If
  the deadline passes first, the framework fails with the scheduler's reasons.
- **RUNNING.** Offers are replanned against the running plan (snapshot = the
  offers plus the agents hosting instances, minus lost agents) and the changes
  carried out; what is not needed is declined, with ``refuse_seconds`` when
  the DAG runs as wanted and ``retry_seconds`` while something is unplaced or
  a fallback runs.
- **Migration.** A task that ends takes its instance out of the running plan;
  offers are revived and the next replan places it again (same env, hence the
  same topics). Make-before-break: a replacement on another agent is
  launched, and the instance it replaces is killed once the master took the
  launch (:class:`~.events.AcceptDone`); on the same agent the old one is
  killed first and the new one waits for the freed resources.
- **Quality.** :class:`~.events.QualityBroken` holds the operator off the
  variant it runs (and every better one) for ``hold_seconds`` (doubling with
  each breach, up to 8x): it switches to its next fallback, make-before-break.
  When the hold ends, main is tried again; the switch back stops the fallback
  only once the main instance reports RUNNING, and with
  ``probe_needs_report`` also published stats (connected to the broker): its
  health probe. A main that cannot start leaves the fallback running.

Invariants (checked by tests/property/test_dataflow_core.py):

- at most one live task per instance; beyond it, only tasks being retired;
- every launched task is live, retiring, or ended by a status update;
- a launch uses only offers the core holds, and each offer at most once;
- nothing is launched outside RUNNING (the first launch enters it).

Rules: pure (no I/O, clock or asyncio; ``now`` is passed in, task ids come
from a counter under ``task_prefix``; module files are read through the
injected ``containers`` function). ``handle`` is all or nothing: if it
raises (an :class:`~edgerm.errors.IllegalTransition`, a bad event), the
state is what it was before. Status updates are idempotent (unknown or stale
task ids are ignored).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from edgerm.errors import ConfigError, UnknownCall
from edgerm.frameworks.dataflow import events as ev
from edgerm.frameworks.dataflow.contract import task_env, task_name
from edgerm.frameworks.dataflow.holds import Hold, hold_after, planning_dag
from edgerm.frameworks.dataflow.phases import Phase, Trigger, next_phase
from edgerm.frameworks.dataflow.views import FrameworkView, Gone, LiveTask, Move, MoveKind, Switch, framework_view
from edgerm.ids import AgentId, OfferId, TaskId
from edgerm.model import Container, Offer, Reason, TaskInfo, TaskState, TaskStatus
from edgerm.resources import EMPTY, Resources
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
from edgerm.scheduler.dag import Executor


@dataclass(frozen=True, slots=True)
class CoreOptions:
    deadline: float | None = None  # seconds to wait for a complete placement; None: forever
    refuse_seconds: float = 30.0
    retry_seconds: float = 2.0
    max_failures: int = 10
    policy: Policy = LOCALITY
    revive_every: float = 5.0
    hold_seconds: float = 30.0  # first quality hold; doubles with each breach of the same operator
    task_prefix: str = "df"
    probe_needs_report: bool = False  # main's probe also waits for its first stats report (InstanceReported)


@dataclass(frozen=True, slots=True)
class _Item:
    placement: Placement
    before: LiveTask | None
    why: str
    probe: bool  # the switch back after a hold: keep ``before`` until the new one runs


@dataclass(frozen=True, slots=True)
class PendingLaunch:
    """An ACCEPT sent and not yet answered: what to undo if it fails, what to record if it is taken."""

    agent_id: AgentId
    tasks: tuple[tuple[LiveTask, LiveTask | None, Gone | None, str], ...]  # new, replaced, gone before, why


class DataflowCore:
    """The dataflow framework's state machine; see the module docstring."""

    def __init__(
        self, dag: Dag, containers: Callable[[Executor], Container], options: CoreOptions = CoreOptions()
    ) -> None:
        self.dag = dag
        self.opts = options
        self._containers = containers
        self.phase = Phase.WAITING
        self.failure = ""
        self.started_at: float | None = None
        self.held: dict[OfferId, Offer] = {}
        self.lost: set[AgentId] = set()
        self.live: dict[Instance, LiveTask] = {}
        self.by_task: dict[TaskId, Instance] = {}
        self.retiring: dict[TaskId, LiveTask] = {}  # replaced or being stopped, not yet ended
        self.gone: dict[Instance, Gone] = {}  # went away; its next placement is a move
        self.failures: dict[Instance, int] = {}
        self.launching: dict[int, PendingLaunch] = {}
        self.holds: dict[str, Hold] = {}
        self.reported: set[TaskId] = set()  # live tasks that published stats (InstanceReported)
        self.moves: list[Move] = []
        self.switches: list[Switch] = []
        self.last_plan: Plan | None = None
        self.unplaced: tuple[Unplaced, ...] = ()
        self.last_revive = 0.0
        self.tasks_launched = 0
        self._launches = 0
        self._task_counter = 0

    # -- entry ------------------------------------------------------------------------

    def handle(self, event: ev.Event, now: float) -> list[ev.Action]:
        """Apply one event; on any exception nothing changed (the state is restored)."""
        saved = self._save()
        try:
            return self._handle(event, now)
        except BaseException:
            self._restore(saved)
            raise

    def _handle(self, event: ev.Event, now: float) -> list[ev.Action]:
        match event:
            case ev.Registered():
                if self.started_at is None:
                    self.started_at = now
                    return []
                return [ev.Reconcile()] if self.live or self.retiring else []
            case ev.OffersReceived():
                return self._offers(event.offers, now)
            case ev.OfferRescinded():
                self.held.pop(event.offer_id, None)
                return []
            case ev.AgentLost():
                self.lost.add(event.agent_id)
                for oid in [oid for oid, o in self.held.items() if o.agent_id == event.agent_id]:
                    del self.held[oid]
                return []
            case ev.StatusUpdated():
                return self._status(event.status, now)
            case ev.Tick():
                return self._tick(now)
            case ev.Shutdown():
                return self._shutdown()
            case ev.AcceptDone():
                return self._accept_done(event.launch, now)
            case ev.AcceptFailed():
                return self._accept_failed(event.launch, event.why, now)
            case ev.KillFailed():
                self.retiring.pop(event.task_id, None)
                self.by_task.pop(event.task_id, None)
                return self._maybe_stopped()
            case ev.QualityBroken():
                return self._quality_broken(event, now)
            case ev.InstanceReported():
                inst = self.by_task.get(event.task_id)
                if inst is None or inst not in self.live or self.live[inst].task_id != event.task_id:
                    return []
                self.reported.add(event.task_id)
                return self._probe(inst, now)
            case _:
                raise UnknownCall(f"the dataflow core does not handle {type(event).__name__}")

    def _save(self) -> dict[str, object]:
        # Values are frozen; one level of copying is a full snapshot.
        return {k: copy.copy(v) for k, v in vars_of(self).items()}

    def _restore(self, saved: Mapping[str, object]) -> None:
        for k, v in saved.items():
            setattr(self, k, v)

    # -- views ------------------------------------------------------------------------

    @property
    def all_ended(self) -> bool:
        return not self.live and not self.retiring

    def live_task_ids(self) -> set[TaskId]:
        return {t.task_id for t in self.live.values()}

    def running_plan(self, leave_out: Iterable[Instance] = ()) -> Plan:
        """The placements of the live instances (less ``leave_out``), as a plan (for ``replan``)."""
        order = {inst: i for i, inst in enumerate(self.dag.instances())}
        out = set(leave_out)
        placements = sorted(
            (t.placement for t in self.live.values() if t.instance not in out), key=lambda p: order[p.instance]
        )
        return Plan(self.dag.name, self.opts.policy.name, tuple(placements))

    def view(self, now: float | None = None) -> FrameworkView:
        """What the status table and the HTTP API show (``now``: for the holds' time left)."""
        return framework_view(
            self.dag, self.phase, self.live, self.retiring, self.unplaced, self.moves, self.failure,
            self.holds, self.switches, now,
        )  # fmt: skip

    # -- phases -------------------------------------------------------------------------

    def _enter(self, trigger: Trigger) -> None:
        self.phase = next_phase(self.phase, trigger)

    def _maybe_stopped(self) -> list[ev.Action]:
        if self.phase is Phase.STOPPING and self.all_ended and not self.launching:
            self._enter(Trigger.ALL_ENDED)
            return [ev.Note(f"dataflow {self.dag.name} stopped"), ev.Finished()]
        return []

    def _shutdown(self) -> list[ev.Action]:
        if self.phase.final or self.phase is Phase.STOPPING:
            return []
        self._enter(Trigger.SHUTDOWN)
        actions: list[ev.Action] = [ev.Note(f"dataflow {self.dag.name} stopping")]
        actions += self._decline(list(self.held), self.opts.refuse_seconds)
        self.held.clear()
        for inst in list(self.live):
            actions += self._retire(inst)
        return actions + self._maybe_stopped()

    def _fail(self, failure: str) -> list[ev.Action]:
        """Give up: stop every task and the framework (teardown)."""
        self._enter(Trigger.GAVE_UP)
        self.failure = failure
        actions: list[ev.Action] = [ev.Note(f"dataflow {self.dag.name} failed: {failure}", warning=True)]
        actions += self._decline(list(self.held), 0.0)
        self.held.clear()
        for inst in list(self.live):
            actions += self._retire(inst)
        return [*actions, ev.Finished(), ev.Teardown()]

    # -- offers and ticks ---------------------------------------------------------------

    def _offers(self, offers: Iterable[Offer], now: float) -> list[ev.Action]:
        offers = list(offers)
        if not self.phase.active:
            return self._decline([o.id for o in offers], self.opts.refuse_seconds)
        for o in offers:
            self.held[o.id] = o
            self.lost.discard(o.agent_id)  # it is back
        return self._step(now)

    def _tick(self, now: float) -> list[ev.Action]:
        actions: list[ev.Action] = []
        for op, h in list(self.holds.items()):
            if now >= h.until and h.floor > 0:
                self.holds[op] = replace(h, floor=0)
                actions.append(ev.Note(f"dataflow {self.dag.name}: {op} may run main again; probing it"))
                actions += self._revive(now)
        if self.phase is Phase.WAITING and self.opts.deadline is not None and self.started_at is not None:
            if now - self.started_at >= self.opts.deadline:
                actions += self._give_up()
        elif self.phase is Phase.RUNNING and self._wants_more() and now - self.last_revive >= self.opts.revive_every:
            actions += self._revive(now)
        return actions

    def _give_up(self) -> list[ev.Action]:
        plan = self.last_plan or compile_dag(self.dag, Snapshot.from_offers(self.held.values()), self.opts.policy)
        self.unplaced = plan.unplaced
        waited = self.opts.deadline or 0.0
        failure = f"the DAG could not be placed within {waited:g}s:\n" + "\n".join(u.explain() for u in plan.unplaced)
        return self._fail(failure)

    def _wants_more(self, placements: Mapping[Instance, Placement] | None = None) -> bool:
        """Something is not running, or runs a fallback: better offers are wanted soon."""
        if placements is None:
            placements = {i: t.placement for i, t in self.live.items()}
        if len(placements) < len(self.dag.instances()):
            return True
        for i, p in placements.items():
            op = self.dag.operator(i.operator)
            hold = self.holds.get(i.operator)
            if p.variant != op.main.name or (hold is not None and op.rank_of(p.variant) < hold.floor):
                return True
        return False

    def _decline_rest(self) -> list[ev.Action]:
        if self.phase is not Phase.RUNNING or not self.held:
            return []
        ids = list(self.held)
        self.held.clear()
        return self._decline(ids, self.opts.retry_seconds if self._wants_more() else self.opts.refuse_seconds)

    @staticmethod
    def _decline(ids: list[OfferId], refuse: float) -> list[ev.Action]:
        return [ev.Decline(tuple(ids), refuse)] if ids else []

    def _revive(self, now: float) -> list[ev.Action]:
        self.last_revive = now
        return [ev.Revive()]

    # -- status updates -----------------------------------------------------------------

    def _status(self, status: TaskStatus, now: float) -> list[ev.Action]:
        old = self.retiring.get(status.task_id)
        if old is not None:
            if not status.state.terminal:
                return []
            del self.retiring[status.task_id]
            self.by_task.pop(status.task_id, None)
            self.reported.discard(status.task_id)
            if self.phase is Phase.RUNNING and self._wants_more():  # a change it held back may go ahead now
                return self._revive(now)
            return self._maybe_stopped()
        inst = self.by_task.get(status.task_id)
        task = self.live.get(inst) if inst is not None else None
        if inst is None or task is None or task.task_id != status.task_id:
            return []  # stale, duplicate, or not ours
        if status.state is TaskState.UNREACHABLE and self.phase is Phase.RUNNING:
            # Its agent went silent: move the operator now (its topics stay the same) and kill the
            # old instance, which its agent hears if it comes back (a partition, not a death).
            why = f"agent {status.agent_id[:8]} unreachable"
            self.gone[inst] = Gone(task.placement, why)
            note: list[ev.Action] = [ev.Note(f"{inst} on {task.placement.agent_id}: {why}; moving it", warning=True)]
            return note + self._retire(inst) + self._revive(now) + self._step(now)
        if not status.state.terminal:
            was_running = task.state is TaskState.RUNNING
            self.live[inst] = replace(task, state=status.state, message=status.message)
            actions: list[ev.Action] = []
            if status.state is TaskState.RUNNING and not was_running:
                actions.append(ev.InstanceResumed(inst))
                actions += self._probe(inst, now)
            return actions
        del self.live[inst]
        self.by_task.pop(status.task_id, None)
        self.reported.discard(status.task_id)
        why = _why_ended(status)
        actions = [ev.Note(f"{inst} on {task.placement.agent_id} ended: {why}", warning=True)]
        kept = task.replaces is not None and self._keep_replaced(inst, task.replaces, why, now)
        if kept:  # the probe failed: the instance it would have replaced runs on
            actions.append(ev.Note(f"{inst}: its better variant did not start ({why}); the running one stays"))
        else:
            self.gone[inst] = Gone(task.placement, why)
            actions.append(ev.InstanceGone(inst))
        if self.phase is not Phase.RUNNING:
            return actions + self._maybe_stopped()
        if status.reason is not Reason.AGENT_LOST and status.state is not TaskState.LOST:
            self.failures[inst] = self.failures.get(inst, 0) + 1
            if self.failures[inst] >= self.opts.max_failures:
                return actions + self._fail(f"{inst} failed {self.failures[inst]} times; last: {why}")
        return actions + self._revive(now) + self._step(now)

    def _probe(self, inst: Instance, now: float) -> list[ev.Action]:
        """Main's probe passes once it runs (and, with ``probe_needs_report``, published stats): stop the fallback."""
        task = self.live[inst]
        if task.replaces is None or task.replaces not in self.retiring or task.state is not TaskState.RUNNING:
            return []
        if self.opts.probe_needs_report and task.task_id not in self.reported:
            return []
        old = self.retiring[task.replaces]
        self.live[inst] = replace(task, replaces=None)
        figure = "probe passed: it runs again after the hold"
        self.switches.append(Switch(inst.operator, old.placement.variant, task.placement.variant, figure, now))
        return [ev.Note(f"dataflow {self.dag.name} operator {inst.operator}: {figure}"), *self._kill(old)]

    def _keep_replaced(self, inst: Instance, old_id: TaskId, why: str, now: float) -> bool:
        """Put the instance a failed probe would have replaced back in the running plan; hold again."""
        old = self.retiring.pop(old_id, None)
        if old is None or inst in self.live:
            return False
        self.live[inst] = old
        self.by_task[old_id] = inst
        floor = self.dag.operator(inst.operator).rank_of(old.placement.variant)
        prev = self.holds.get(inst.operator)
        self.holds[inst.operator] = hold_after(prev, floor, now, self.opts.hold_seconds, f"probe: {why}")
        return True

    # -- quality ------------------------------------------------------------------------

    def _quality_broken(self, event: ev.QualityBroken, now: float) -> list[ev.Action]:
        if event.operator is not None and self.dag.get(event.operator) is None:
            raise UnknownCall(f"quality breach for unknown operator {event.operator!r}")
        if self.phase is not Phase.RUNNING:
            return []
        names = [event.operator] if event.operator is not None else [op.name for op in self.dag.operators]
        actions: list[ev.Action] = []
        switched = False
        for name in names:
            op = self.dag.operator(name)
            running = [t for t in self.live.values() if t.instance.operator == name]
            if not running or len(op.variants) < 2:
                continue
            rank = min(op.rank_of(t.placement.variant) for t in running)
            if rank + 1 >= len(op.variants):
                actions.append(ev.Note(f"{name}: {event.figure}, but it runs its last variant; staying"))
                continue
            hold = hold_after(self.holds.get(name), rank + 1, now, self.opts.hold_seconds, event.figure)
            self.holds[name] = hold
            current = op.variants[rank].name
            self.switches.append(Switch(name, current, op.variants[rank + 1].name, event.figure, now))
            actions.append(
                ev.Note(
                    f"dataflow {self.dag.name} operator {name}: quality broken ({event.figure}); "
                    f"leaving {current} for {hold.until - now:g}s"
                )
            )
            switched = True
        if switched:  # the switch happens with the offers this brings (make-before-break where they leave room)
            actions += self._revive(now)
        return actions

    def _held_off(self, task: LiveTask) -> bool:
        """The task runs a variant its operator is held off (a quality breach), waiting for a fallback's place."""
        hold = self.holds.get(task.instance.operator)
        return (
            hold is not None and self.dag.operator(task.instance.operator).rank_of(task.placement.variant) < hold.floor
        )

    # -- planning -----------------------------------------------------------------------

    def _step(self, now: float) -> list[ev.Action]:
        dag = planning_dag(self.dag, self.holds)
        if self.phase is Phase.WAITING:
            plan = compile_dag(dag, Snapshot.from_offers(self.held.values()), self.opts.policy)
            self.last_plan = plan
            self.unplaced = plan.unplaced
            if not plan.complete:
                return []  # keep holding offers until it fits (or the deadline passes)
            self._enter(Trigger.PLACED)
            placed: list[ev.Action] = [
                ev.Note(f"dataflow {self.dag.name} placed: launching {len(plan.placements)} instance(s)")
            ]
            return placed + self._launch([_Item(p, None, "", False) for p in plan.placements]) + self._decline_rest()
        if self.phase is not Phase.RUNNING:
            return []
        # An instance held off its variant (a quality breach) is planned as if it were not running, on
        # offered room only: its fallback is launched beside it (make-before-break), never in its place.
        held_off = {i: t for i, t in self.live.items() if self._held_off(t)}
        live_before = self.running_plan(leave_out=held_off)
        hosts = self.running_plan().hosts()
        snapshot = Snapshot.from_offers(self.held.values(), hosts=hosts).without(*self.lost)
        step = replan(dag, live_before, snapshot, self.opts.policy)
        self.last_plan = step.plan
        self.unplaced = step.plan.unplaced
        items: list[_Item] = []
        actions: list[ev.Action] = []
        room: dict[AgentId, Resources] = {}
        for o in self.held.values():
            room[o.agent_id] = room.get(o.agent_id, EMPTY) + o.resources
        offered = set(room)
        busy = {t.instance for t in self.retiring.values()}
        for change in step.changes:
            before = self.live.get(change.instance) if change.before is not None else None
            if change.before is None and change.instance in held_off:
                before = held_off[change.instance]  # the switch away from the held-off variant
            if before is not None and change.instance in busy:
                continue  # one replacement at a time: its last one has not ended yet (revived when it does)
            reason = change.why
            if before is not None and self._held_off(before):
                reason = f"quality: {self.holds[change.instance.operator].figure}"
            if change.after is None:
                if before is not None and self._held_off(before):
                    continue  # held off after a breach, but no fallback fits yet: it runs on until one does
                if before is not None:  # cannot run anywhere now: stop it, report it unplaced
                    self.gone[change.instance] = Gone(before.placement, reason or "no longer fits")
                    actions += self._retire(change.instance)
                continue
            if change.after.agent_id not in offered and before is None:
                continue  # placed on room no offer holds; it is placed again with the next offers
            if before is not None and (
                change.after.agent_id not in offered
                or (
                    change.after.agent_id == before.placement.agent_id
                    and not change.after.resources <= room[change.after.agent_id]
                )
            ):
                # The new place needs what the old instance holds: stop it first, place it again later.
                self.gone[change.instance] = Gone(before.placement, reason or change.kind.value)
                actions += self._retire(change.instance)
                continue
            op = self.dag.operator(change.instance.operator)
            probe = (
                before is not None
                and op.rank_of(change.after.variant) < op.rank_of(before.placement.variant)
                and change.instance.operator in self.holds
            )
            items.append(_Item(change.after, before, reason, probe))
        return actions + self._launch(items) + self._decline_rest()

    def _launch(self, items: Iterable[_Item]) -> list[ev.Action]:
        """One ACCEPT per agent; the instances they replace are killed once it is taken."""
        by_agent: dict[AgentId, list[_Item]] = {}
        for item in items:
            by_agent.setdefault(item.placement.agent_id, []).append(item)
        after = {i: t.placement for i, t in self.live.items()}
        after.update({it.placement.instance: it.placement for group in by_agent.values() for it in group})
        refuse = self.opts.retry_seconds if self._wants_more(after) else self.opts.refuse_seconds
        actions: list[ev.Action] = []
        for agent_id, group in by_agent.items():
            offer_ids = tuple(oid for oid, o in self.held.items() if o.agent_id == agent_id)
            infos: list[TaskInfo] = []
            for it in group:
                try:
                    infos.append(self._task(it.placement))
                except ConfigError as e:
                    return actions + self._fail(f"{it.placement.instance}: {e}")
            for oid in offer_ids:
                del self.held[oid]
            self._launches += 1
            entries = []
            for it, info in zip(group, infos, strict=True):
                inst = it.placement.instance
                replaces = it.before.task_id if it.probe and it.before is not None else None
                new = LiveTask(inst, info.task_id, it.placement, replaces=replaces)
                entries.append((new, it.before, self.gone.pop(inst, None), it.why))
                if it.before is not None:  # retiring from now; killed once the launch is taken
                    self.live.pop(inst, None)
                    self.retiring[it.before.task_id] = it.before
                self.live[inst] = new
                self.by_task[info.task_id] = inst
            self.launching[self._launches] = PendingLaunch(agent_id, tuple(entries))
            actions.append(ev.Accept(self._launches, agent_id, offer_ids, tuple(infos), refuse))
        return actions

    def _accept_done(self, launch: int, now: float) -> list[ev.Action]:
        pending = self.launching.pop(launch, None)
        if pending is None:
            return []
        actions: list[ev.Action] = []
        for new, before, gone, why in pending.tasks:
            self.tasks_launched += 1
            move = self._move(new.placement, before, gone, why, now)
            if move is not None:
                self.moves.append(move)
                actions.append(ev.Moved(move))
            if before is not None:
                actions.append(ev.InstanceGone(new.instance))
                if new.replaces is None and before.task_id in self.retiring:
                    actions += self._kill(before)
        return actions + self._maybe_stopped()

    def _accept_failed(self, launch: int, why: str, now: float) -> list[ev.Action]:
        pending = self.launching.pop(launch, None)
        if pending is None:
            return []
        actions: list[ev.Action] = [ev.Note(f"launching on {pending.agent_id} failed ({why}); will place again")]
        for new, before, gone, _ in pending.tasks:
            inst = new.instance
            self.by_task.pop(new.task_id, None)
            self.retiring.pop(new.task_id, None)  # stopped meanwhile: it never existed
            if self.live.get(inst) is not None and self.live[inst].task_id == new.task_id:
                del self.live[inst]
            if gone is not None:
                self.gone[inst] = gone
            if before is not None and before.task_id in self.retiring:  # never killed: it runs on
                del self.retiring[before.task_id]
                if inst not in self.live and self.phase.active:
                    self.live[inst] = before
                    self.by_task[before.task_id] = inst
                else:
                    actions += self._kill(before)
                    self.retiring[before.task_id] = before
        if self.phase is Phase.RUNNING:
            actions += self._revive(now)
        return actions + self._maybe_stopped()

    def _task(self, p: Placement) -> TaskInfo:
        op = self.dag.operator(p.instance.operator)
        variant = op.variant(p.variant) or op.main
        self._task_counter += 1
        return TaskInfo(
            task_id=TaskId(f"{self.opts.task_prefix}-{self._task_counter}"),
            name=task_name(self.dag.name, p.instance),
            agent_id=p.agent_id,
            resources=p.resources,
            container=self._containers(variant.executor),
            args=variant.args,
            env=task_env(self.dag, p.instance, variant),
        )

    def _move(self, p: Placement, before: LiveTask | None, gone: Gone | None, why: str, now: float) -> Move | None:
        if before is not None:
            old, why = before.placement, why or "a better place fits"
        elif gone is not None:
            old, why = gone.placement, gone.why
        else:
            return None
        kind = MoveKind.MOVED if old.variant == p.variant else MoveKind.SWITCHED
        if kind is MoveKind.SWITCHED and p.variant == self.dag.operator(p.instance.operator).main.name:
            why = why if "main fits again" in why else f"{why}; main fits again"
        return Move(p.instance, kind, old.agent_id, old.variant, p.agent_id, p.variant, why, now)

    # -- stopping -----------------------------------------------------------------------

    def _retire(self, inst: Instance) -> list[ev.Action]:
        task = self.live.pop(inst, None)
        if task is None:
            return []
        self.retiring[task.task_id] = task
        actions: list[ev.Action] = [ev.InstanceGone(inst)] if self.phase is Phase.RUNNING else []
        if task.replaces is not None and task.replaces in self.retiring:  # its probe never finished
            actions += self._kill(self.retiring[task.replaces])
        return actions + self._kill(task)

    @staticmethod
    def _kill(task: LiveTask) -> list[ev.Action]:
        return [ev.Kill(task.task_id, task.placement.agent_id)]


def vars_of(core: DataflowCore) -> dict[str, object]:
    """The core's mutable fields (for the all-or-nothing ``handle``)."""
    return {k: v for k, v in core.__dict__.items() if k not in ("dag", "opts", "_containers")}


def _why_ended(status: TaskStatus) -> str:
    if status.reason is Reason.AGENT_LOST or status.state is TaskState.LOST:
        return f"agent {status.agent_id[:8]} lost"
    detail = f": {status.message}" if status.message else ""
    return f"task {status.state.value.lower()} ({status.reason.value.lower()}){detail}"


__all__ = ["CoreOptions", "DataflowCore", "Hold", "PendingLaunch"]
