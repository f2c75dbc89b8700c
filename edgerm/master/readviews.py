"""The master's read side: typed views the core keeps up to date as it changes.

Role: :class:`ReadViews` indexes what ``/api/v1/state``, ``/metrics`` and the
dashboard read, so that a request costs what it returns, not what the
cluster holds. The core calls :meth:`ReadViews.refresh` once at the end of
every ``handle()`` with the ids it marked changed (the same marks that feed
the registry), and :meth:`ReadViews.rebuild` after ``restore``.

What is kept (all of it derived; the core's own records stay the truth):

- sorted ids of agents, frameworks and tasks, and of tasks per agent, per
  framework and per state, and of agents per state, for keyset paging
  (``after`` an id, ``limit`` rows) without sorting per request;
- per agent an :class:`AgentLoad` row (total, used by live tasks, offered)
  and its outstanding offers; per framework its live task count and offers;
- cluster totals: agents and tasks by state, active frameworks, live tasks,
  and resources summed per (resource, kind) in integer thousandths, so
  adding and removing an agent's figures never drifts.

Rules:
- Pure bookkeeping: no I/O, no clock. Read only from outside the core.
- Fields that change on every heartbeat (an agent's ``last_seen``) are not
  copied: rows join the core's current record at read time, so heartbeats
  cost the read side nothing.
- After every event the views equal :meth:`rebuild` from scratch (the
  property tests check it, which also catches a mutation path added later
  without its mark).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId
from edgerm.model import FrameworkInfo, Offer, TaskState
from edgerm.resources import Resources

if TYPE_CHECKING:  # the core imports this module; these are for annotations only
    from edgerm.master.allocator import Sorter
    from edgerm.master.offers import OfferBook
    from edgerm.master.state import AgentRecord, AgentState, FrameworkRecord
    from edgerm.master.tasks import PendingUpdate, TaskRecord, TaskTable, UpdateOutbox

K = TypeVar("K", bound=str)
K2 = TypeVar("K2", bound=str)

KINDS = ("total", "used", "offered")


class SortedIds(Generic[K]):
    """Ids in sorted order with O(log n) lookup and keyset pages (insert/remove are a memmove)."""

    __slots__ = ("_ids",)

    def __init__(self, ids: Iterable[K] = ()) -> None:
        self._ids: list[K] = sorted(set(ids))

    def add(self, key: K) -> None:
        i = bisect_left(self._ids, key)
        if i == len(self._ids) or self._ids[i] != key:
            self._ids.insert(i, key)

    def discard(self, key: K) -> None:
        i = bisect_left(self._ids, key)
        if i < len(self._ids) and self._ids[i] == key:
            del self._ids[i]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        i = bisect_left(self._ids, key)
        return i < len(self._ids) and self._ids[i] == key

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[K]:
        return iter(self._ids)

    def after(self, cursor: str) -> Iterator[K]:
        """The ids greater than ``cursor``, in order (lazily: O(log n) to start)."""
        ids = self._ids
        return (ids[i] for i in range(bisect_right(ids, cursor), len(ids)))

    def as_list(self) -> list[K]:
        return list(self._ids)


def resource_samples(res: Resources) -> Iterator[tuple[str, float]]:
    """The figures exported per resource bag: cpus, mem, disk, other scalars, device and port counts."""
    for name in ("cpus", "mem", "disk"):
        yield name, res.get(name)
    for name, amount in sorted(res.scalars.items()):
        if name not in ("cpus", "mem", "disk"):
            yield name, amount
    yield "devices", float(len(res.devices))
    if res.ranges:
        yield "ports", float(sum(len(r) for ranges in res.ranges.values() for r in ranges))


def _milli(res: Resources) -> tuple[tuple[str, int], ...]:
    """``resource_samples`` in thousandths (hot: written out for the common bag of cpus, mem and disk only)."""
    scalars = res.scalars
    if res.ranges or len(scalars) > 3 or not scalars.keys() <= _BASIC:
        return tuple((name, round(amount * 1000)) for name, amount in resource_samples(res))
    get = scalars.get
    return (
        ("cpus", round(get("cpus", 0.0) * 1000)),
        ("mem", round(get("mem", 0.0) * 1000)),
        ("disk", round(get("disk", 0.0) * 1000)),
        ("devices", len(res.devices) * 1000),
    )


_BASIC = frozenset(("cpus", "mem", "disk"))


@dataclass(frozen=True, slots=True)
class AgentLoad:
    """What an agent holds: its total, what its live tasks use, what is offered. Replaced when any changes."""

    total: Resources
    used: Resources
    offered: Resources

    @property
    def free(self) -> Resources:
        return self.total - self.used - self.offered

    def samples(self) -> Iterator[tuple[str, tuple[tuple[str, int], ...]]]:
        """(kind, its figures in thousandths) for the cluster sums."""
        yield "total", _milli(self.total)
        yield "used", _milli(self.used)
        yield "offered", _milli(self.offered)


@dataclass(frozen=True, slots=True)
class AgentView:
    """One agent as the state API shows it: its record (current), its load, its live tasks (oldest first)."""

    record: AgentRecord
    load: AgentLoad
    tasks: tuple[TaskId, ...]


@dataclass(frozen=True, slots=True)
class FrameworkView:
    """One framework as the state API shows it."""

    record: FrameworkRecord
    failover_timeout: float
    allocation: Resources
    offers: tuple[Offer, ...]
    filters: tuple[tuple[AgentId, float], ...]  # refused agents and until when, by agent
    unacknowledged: tuple[PendingUpdate, ...]
    live_tasks: int


@dataclass(frozen=True, slots=True)
class Totals:
    """Cluster totals, kept incrementally (a copy; O(states + resource names) to take)."""

    agents: int
    agents_by_state: Mapping[str, int]
    frameworks: int
    frameworks_active: int
    tasks: int
    tasks_by_state: Mapping[str, int]
    tasks_live: int
    offers: int
    resources: Mapping[tuple[str, str], float]  # (resource, kind) -> amount; kind: total, used, offered


class ReadViews:
    """Indexes over the core's records; see the module docstring."""

    def __init__(
        self,
        agents: Mapping[AgentId, AgentRecord],
        frameworks: Mapping[FrameworkId, FrameworkRecord],
        tasks: TaskTable,
        offers: OfferBook,
        outbox: UpdateOutbox,
        sorter: Sorter,
        failover_timeout: Callable[[FrameworkInfo], float],
    ) -> None:
        self._agents = agents
        self._frameworks = frameworks
        self._tasks = tasks
        self._offers = offers
        self._outbox = outbox
        self._sorter = sorter
        self._failover_timeout = failover_timeout
        self._reset()

    def _reset(self) -> None:
        self.agent_ids: SortedIds[AgentId] = SortedIds()
        self.framework_ids: SortedIds[FrameworkId] = SortedIds()
        self.task_ids: SortedIds[TaskId] = SortedIds()
        self._agents_by_state: dict[str, SortedIds[AgentId]] = {}
        self._agent_state: dict[AgentId, str] = {}
        self._loads: dict[AgentId, AgentLoad] = {}
        self._agent_offers: dict[AgentId, tuple[Offer, ...]] = {}
        self._fw_active: dict[FrameworkId, bool] = {}
        self._fw_live: dict[FrameworkId, int] = {}
        self._fw_offers: dict[FrameworkId, dict[OfferId, Offer]] = {}
        self._seen: dict[TaskId, TaskRecord] = {}
        self._by_agent: dict[AgentId, SortedIds[TaskId]] = {}
        self._by_framework: dict[FrameworkId, SortedIds[TaskId]] = {}
        self._by_state: dict[str, SortedIds[TaskId]] = {}
        self._tasks_live = 0
        self._resources: dict[tuple[str, str], list[int]] = {}  # -> [thousandths, contributing agents]

    # -- upkeep (called by the core) ------------------------------------------------

    def rebuild(self) -> None:
        """Recompute everything from the core's records (after ``restore``)."""
        self._offers.touched.clear()
        self._reset()
        self._take(list(self._agents), list(self._frameworks), [r.task_id for r in self._tasks])

    def recomputed(self) -> ReadViews:
        """New views over the same records, computed from scratch (the tests' reference); changes nothing."""
        fresh = ReadViews(
            self._agents,
            self._frameworks,
            self._tasks,
            self._offers,
            self._outbox,
            self._sorter,
            self._failover_timeout,
        )
        fresh._take(list(self._agents), list(self._frameworks), [r.task_id for r in self._tasks])
        return fresh

    def refresh(
        self, agent_ids: Iterable[AgentId], framework_ids: Iterable[FrameworkId], task_ids: Iterable[TaskId]
    ) -> None:
        """Take in the records the core marked changed (and the agents whose offers changed)."""
        touched = self._offers.touched
        self._offers.touched = set()
        self._take(touched.union(agent_ids), framework_ids, task_ids)

    def _take(
        self, agent_ids: Iterable[AgentId], framework_ids: Iterable[FrameworkId], task_ids: Iterable[TaskId]
    ) -> None:
        touched: set[AgentId] = set(agent_ids)
        for task_id in task_ids:
            new = self._tasks.get(task_id)
            old = self._seen.get(task_id)
            if new is old:
                continue
            if old is not None and new is not None:
                self._move_task(old, new)
            elif old is not None:
                self._unindex_task(old)
            elif new is not None:
                self._index_task(new)
            if old is not None:
                touched.add(old.agent_id)
            if new is not None:
                touched.add(new.agent_id)
        for fid in framework_ids:
            self._refresh_framework(fid)
        for aid in touched:
            self._refresh_agent(aid)

    def _index_task(self, record: TaskRecord) -> None:
        tid = record.task_id
        self._seen[tid] = record
        self.task_ids.add(tid)
        self._by_agent.setdefault(record.agent_id, SortedIds()).add(tid)
        self._by_framework.setdefault(record.framework_id, SortedIds()).add(tid)
        self._by_state.setdefault(record.state.value, SortedIds()).add(tid)
        if record.live:
            self._tasks_live += 1
            self._count_live(record.framework_id, 1)

    def _move_task(self, old: TaskRecord, new: TaskRecord) -> None:
        """A known task changed: move it only in the indexes whose key changed (most changes are a state)."""
        tid = new.task_id
        self._seen[tid] = new
        if old.agent_id != new.agent_id:
            _drop(self._by_agent, old.agent_id, tid)
            self._by_agent.setdefault(new.agent_id, SortedIds()).add(tid)
        if old.framework_id != new.framework_id:
            _drop(self._by_framework, old.framework_id, tid)
            self._by_framework.setdefault(new.framework_id, SortedIds()).add(tid)
        if old.state is not new.state:
            _drop(self._by_state, old.state.value, tid)
            self._by_state.setdefault(new.state.value, SortedIds()).add(tid)
        if old.live != new.live or old.framework_id != new.framework_id:
            if old.live:
                self._tasks_live -= 1
                self._count_live(old.framework_id, -1)
            if new.live:
                self._tasks_live += 1
                self._count_live(new.framework_id, 1)

    def _count_live(self, fid: FrameworkId, by: int) -> None:
        left = self._fw_live.get(fid, 0) + by
        if left:
            self._fw_live[fid] = left
        else:
            del self._fw_live[fid]

    def _unindex_task(self, record: TaskRecord) -> None:
        tid = record.task_id
        del self._seen[tid]
        self.task_ids.discard(tid)
        _drop(self._by_agent, record.agent_id, tid)
        _drop(self._by_framework, record.framework_id, tid)
        _drop(self._by_state, record.state.value, tid)
        if record.live:
            self._tasks_live -= 1
            self._count_live(record.framework_id, -1)

    def _refresh_framework(self, fid: FrameworkId) -> None:
        record = self._frameworks.get(fid)
        if record is None:
            self.framework_ids.discard(fid)
            self._fw_active.pop(fid, None)
        else:
            self.framework_ids.add(fid)
            self._fw_active[fid] = record.active

    def _refresh_agent(self, aid: AgentId) -> None:
        record = self._agents.get(aid)
        old_offers = self._agent_offers.get(aid, ())
        offers = tuple(self._offers.on_agent(aid)) if record is not None else ()
        if offers != old_offers:
            for offer in old_offers:
                held = self._fw_offers[offer.framework_id]
                del held[offer.id]
                if not held:
                    del self._fw_offers[offer.framework_id]
            for offer in offers:
                self._fw_offers.setdefault(offer.framework_id, {})[offer.id] = offer
            if offers:
                self._agent_offers[aid] = offers
            else:
                del self._agent_offers[aid]
        old_state = self._agent_state.get(aid)
        state = record.state.value if record is not None else None
        if state != old_state:
            if old_state is not None:
                _drop(self._agents_by_state, old_state, aid)
                del self._agent_state[aid]
            if state is not None:
                self._agent_state[aid] = state
                self._agents_by_state.setdefault(state, SortedIds()).add(aid)
        old_load = self._loads.get(aid)
        if record is None:
            self.agent_ids.discard(aid)
            if old_load is not None:
                self._add_samples(old_load, -1)
                del self._loads[aid]
            return
        if old_load is None:
            self.agent_ids.add(aid)
        load = AgentLoad(record.info.resources, self._tasks.used_on(aid), self._offers.offered_on(aid))
        if old_load == load:
            return  # unchanged: keep the row (and any rendering cached for it)
        self._loads[aid] = load
        if old_load is None:
            self._add_samples(load, 1)
            return
        # Hot (every offer made or answered refreshes its agent): only the bags that changed are re-summed.
        for kind, before, after in (
            ("total", old_load.total, load.total),
            ("used", old_load.used, load.used),
            ("offered", old_load.offered, load.offered),
        ):
            if before is not after and before != after:
                self._add_figures(kind, _milli(before), -1)
                self._add_figures(kind, _milli(after), 1)

    def _add_samples(self, load: AgentLoad, sign: int) -> None:
        for kind, figures in load.samples():
            self._add_figures(kind, figures, sign)

    def _add_figures(self, kind: str, figures: tuple[tuple[str, int], ...], sign: int) -> None:
        sums = self._resources
        for name, amount in figures:
            key = (name, kind)
            entry = sums.get(key)
            if entry is None:
                entry = sums[key] = [0, 0]
            entry[0] += sign * amount
            entry[1] += sign
            if entry[1] == 0:
                del sums[key]

    # -- reads ------------------------------------------------------------------------

    def agent(self, agent_id: AgentId) -> AgentView | None:
        """The agent's row, joined with its current record (O(its live tasks))."""
        record = self._agents.get(agent_id)
        load = self._loads.get(agent_id)
        if record is None or load is None:
            return None
        return AgentView(record, load, tuple(r.task_id for r in self._tasks.live_on(agent_id)))

    def framework(self, framework_id: FrameworkId) -> FrameworkView | None:
        """The framework's row (O(its offers, unacknowledged updates, and the cluster's refuse filters))."""
        record = self._frameworks.get(framework_id)
        if record is None:
            return None
        return FrameworkView(
            record,
            self._failover_timeout(record.info),
            self._sorter.allocation(framework_id),
            tuple(self.offers_of(framework_id)),
            tuple(sorted(self._offers.filters_of(framework_id).items())),
            tuple(self._outbox.pending(framework_id)),
            self.live_tasks_of(framework_id),
        )

    def agent_record(self, agent_id: AgentId) -> AgentRecord | None:
        return self._agents.get(agent_id)

    def framework_record(self, framework_id: FrameworkId) -> FrameworkRecord | None:
        return self._frameworks.get(framework_id)

    def task(self, task_id: TaskId) -> TaskRecord | None:
        return self._tasks.get(task_id)

    def load(self, agent_id: AgentId) -> AgentLoad | None:
        return self._loads.get(agent_id)

    def agent_state(self, agent_id: AgentId) -> str | None:
        return self._agent_state.get(agent_id)

    def agents_in(self, state: AgentState) -> SortedIds[AgentId]:
        return self._agents_by_state.get(state.value, _EMPTY_AGENTS)

    def offers_of(self, framework_id: FrameworkId) -> list[Offer]:
        """A framework's outstanding offers, oldest first (ids count up: shorter, then smaller, is older)."""
        held = self._fw_offers.get(framework_id)
        if not held:
            return []
        return sorted(held.values(), key=lambda o: (len(o.id), o.id))

    def offer_count(self, framework_id: FrameworkId) -> int:
        return len(self._fw_offers.get(framework_id, ()))

    def live_tasks_of(self, framework_id: FrameworkId) -> int:
        return self._fw_live.get(framework_id, 0)

    def tasks_on(self, agent_id: AgentId) -> SortedIds[TaskId]:
        return self._by_agent.get(agent_id, _EMPTY_TASKS)

    def tasks_of(self, framework_id: FrameworkId) -> SortedIds[TaskId]:
        return self._by_framework.get(framework_id, _EMPTY_TASKS)

    def tasks_in(self, state: TaskState) -> SortedIds[TaskId]:
        return self._by_state.get(state.value, _EMPTY_TASKS)

    def totals(self) -> Totals:
        by_state = {s: len(ids) for s, ids in self._by_state.items()}
        return Totals(
            agents=len(self.agent_ids),
            agents_by_state={s: len(ids) for s, ids in self._agents_by_state.items()},
            frameworks=len(self.framework_ids),
            frameworks_active=sum(self._fw_active.values()),
            tasks=len(self.task_ids),
            tasks_by_state=by_state,
            tasks_live=self._tasks_live,
            offers=len(self._offers),
            resources={key: entry[0] / 1000 for key, entry in sorted(self._resources.items())},
        )

    def digest(self) -> dict[str, object]:
        """Everything kept, in plain comparable form (for the tests' views == rebuilt check)."""
        return {
            "agents": self.agent_ids.as_list(),
            "frameworks": self.framework_ids.as_list(),
            "tasks": self.task_ids.as_list(),
            "agents_by_state": {s: ids.as_list() for s, ids in sorted(self._agents_by_state.items())},
            "agent_state": dict(sorted(self._agent_state.items())),
            "loads": dict(sorted(self._loads.items())),
            "agent_offers": {a: sorted(o.id for o in os) for a, os in sorted(self._agent_offers.items())},
            "fw_active": dict(sorted(self._fw_active.items())),
            "fw_live": dict(sorted(self._fw_live.items())),
            "fw_offers": {f: sorted(o) for f, o in sorted(self._fw_offers.items())},
            "seen": dict(sorted(self._seen.items())),
            "by_agent": {k: v.as_list() for k, v in sorted(self._by_agent.items())},
            "by_framework": {k: v.as_list() for k, v in sorted(self._by_framework.items())},
            "by_state": {k: v.as_list() for k, v in sorted(self._by_state.items())},
            "totals": self.totals(),
        }


_EMPTY_AGENTS: SortedIds[AgentId] = SortedIds()
_EMPTY_TASKS: SortedIds[TaskId] = SortedIds()


def _drop(index: dict[K2, SortedIds[K]], key: K2, item: K) -> None:
    ids = index.get(key)
    if ids is not None:
        ids.discard(item)
        if not ids:
            del index[key]
