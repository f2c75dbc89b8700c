"""The dashboard's memory: what the core forgets but an operator wants to see.

Role: :class:`ClusterHistory` is a service observer (see
``MasterService.observers``). From the core's events, actions and task
status changes it keeps:

- **departed agents**: an agent the core declared lost stays listed (with
  its host, resources and when it was lost) until it registers again or
  :attr:`HistoryLimits.keep_seconds` pass;
- **completed frameworks**: a torn-down framework stays listed the same way;
- **task status history**: the last :attr:`HistoryLimits.statuses_per_task`
  statuses of each of the last :attr:`HistoryLimits.tasks` tasks;
- **dataflows**: every task launched with the dataflow contract's env keys
  (``EDGERM_DF_DAG`` ...) is filed under its DAG, operator and replica, so
  the dashboard can draw the operator graph, its placements and its moves
  (a replica launched again on another agent) from what the master saw;
  :attr:`ClusterHistory.stats` holds the operators' rates and drops as
  their stats reports arrive on the broker.

Rules: every memory is bounded in count and the time-limited ones in age;
the oldest go first. Observing is dict work only. Nothing here changes the
core, and the core never reads it.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from edgerm import dataflow_keys as df
from edgerm import messages as m
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master import events as ev
from edgerm.master.actions import DropAgent, LaunchTask, MasterAction
from edgerm.master.dataflow_stats import DataflowStats
from edgerm.master.tasks import TaskChange
from edgerm.model import AgentInfo, FrameworkInfo, TaskStatus

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    keep_seconds: float = 3600.0  # departed agents and completed frameworks stay listed this long
    departed: int = 500  # at most this many of each
    tasks: int = 5000  # tasks with a status history
    statuses_per_task: int = 32
    dataflows: int = 64
    placements_per_dataflow: int = 2000


@dataclass(frozen=True, slots=True)
class DepartedAgent:
    info: AgentInfo
    registered_at: float
    lost_at: float


@dataclass(frozen=True, slots=True)
class CompletedFramework:
    info: FrameworkInfo
    subscribed_at: float
    ended_at: float


@dataclass(frozen=True, slots=True)
class Placement:
    """One task of a dataflow operator replica, where it ran."""

    task_id: TaskId
    agent_id: AgentId
    launched_at: float


@dataclass(slots=True)
class Dataflow:
    """What the master saw of one DAG: operators, their inputs, and each replica's placements in order."""

    name: str
    framework_id: FrameworkId
    first_seen: float
    inputs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # operator -> input topics
    outputs: dict[str, str] = field(default_factory=dict)  # operator -> its out topic
    roles: dict[str, str] = field(default_factory=dict)  # operator -> source/operator/sink
    placements: dict[tuple[str, int], list[Placement]] = field(default_factory=dict)

    def upstream(self, operator: str) -> list[str]:
        """The operators whose out topic ``operator`` reads."""
        by_topic = {topic: op for op, topic in self.outputs.items()}
        return sorted({by_topic[t] for t in self.inputs.get(operator, ()) if t in by_topic})

    def moves(self, operator: str) -> int:
        """Replicas of ``operator`` launched again on a different agent."""
        n = 0
        for (op, _), places in self.placements.items():
            if op == operator:
                n += sum(1 for a, b in itertools.pairwise(places) if a.agent_id != b.agent_id)
        return n


class ClusterHistory:
    """The bounded read-side memory of one master (see the module docstring)."""

    def __init__(self, limits: HistoryLimits | None = None) -> None:
        self.limits = limits = limits if limits is not None else HistoryLimits()
        self._agents: dict[AgentId, tuple[AgentInfo, float]] = {}  # live: info, registered_at
        self._departed: OrderedDict[AgentId, DepartedAgent] = OrderedDict()
        self._frameworks: dict[FrameworkId, tuple[FrameworkInfo, float]] = {}
        self._completed: OrderedDict[FrameworkId, CompletedFramework] = OrderedDict()
        self._statuses: OrderedDict[TaskId, deque[TaskStatus]] = OrderedDict()
        self._dataflows: OrderedDict[str, Dataflow] = OrderedDict()
        self._placed: dict[TaskId, str] = {}  # dataflow task -> its DAG
        #: Operator figures heard on the broker (fed by edgerm.master.dataflow_stats.StatsListener).
        self.stats = DataflowStats()

    # -- observing -------------------------------------------------------------------

    def observe(
        self,
        event: ev.MasterEvent,
        actions: Iterable[MasterAction],
        changes: Iterable[TaskChange],
        now: float,
        seconds: float,
    ) -> None:
        match event:
            case ev.AgentRegistered():
                self._departed.pop(event.agent.id, None)
                registered_at = self._agents.get(event.agent.id, (event.agent, now))[1]
                self._agents[event.agent.id] = (event.agent, registered_at)
            case ev.FrameworkSubscribed():
                fid = event.framework.id
                self._completed.pop(fid, None)
                since = self._frameworks.get(fid, (event.framework, now))[1]
                self._frameworks[fid] = (event.framework, since)
            case m.Teardown():
                known = self._frameworks.pop(event.framework_id, None)
                if known is not None:
                    info, since = known
                    self._completed[event.framework_id] = CompletedFramework(info, since, now)
                    self._trim(self._completed, now, lambda f: f.ended_at)
            case _:
                pass
        for action in actions:
            if isinstance(action, DropAgent):
                live = self._agents.pop(action.agent_id, None)
                if live is not None:
                    self._departed[action.agent_id] = DepartedAgent(live[0], live[1], now)
                    self._trim(self._departed, now, lambda a: a.lost_at)
            elif isinstance(action, LaunchTask):
                self._launched(action, now)
        for change in changes:
            self._status(change.after.status)

    def _trim(self, memory: OrderedDict[K, V], now: float, stamp: Callable[[V], float]) -> None:
        """Drop the oldest entries beyond the count limit or older than ``keep_seconds``."""
        while len(memory) > self.limits.departed:
            memory.popitem(last=False)
        while memory and now - stamp(next(iter(memory.values()))) > self.limits.keep_seconds:
            memory.popitem(last=False)

    def _status(self, status: TaskStatus) -> None:
        history = self._statuses.get(status.task_id)
        if history is None:
            history = self._statuses[status.task_id] = deque(maxlen=self.limits.statuses_per_task)
            while len(self._statuses) > self.limits.tasks:
                self._statuses.popitem(last=False)
        history.append(status)

    def _launched(self, action: LaunchTask, now: float) -> None:
        task = action.task
        dag = task.env.get(df.DAG)
        operator = task.env.get(df.OPERATOR)
        if not dag or not operator or task.task_id in self._placed:
            return  # not a dataflow task, or a re-sent launch
        flow = self._dataflows.get(dag)
        if flow is None:
            flow = self._dataflows[dag] = Dataflow(dag, task.framework_id, now)
            while len(self._dataflows) > self.limits.dataflows:
                _, gone = self._dataflows.popitem(last=False)
                for places in gone.placements.values():
                    for p in places:
                        self._placed.pop(p.task_id, None)
        flow.framework_id = task.framework_id
        inputs = task.env.get(df.INPUTS, "")
        flow.inputs[operator] = tuple(t for t in inputs.split(",") if t)
        flow.outputs[operator] = task.env.get(df.OUTPUT) or df.out_topic(dag, operator)
        flow.roles[operator] = task.env.get(df.ROLE, "operator")
        try:
            replica = int(task.env.get(df.REPLICA, "0"))
        except ValueError:
            replica = 0
        places = flow.placements.setdefault((operator, replica), [])
        places.append(Placement(task.task_id, action.agent_id, now))
        self._placed[task.task_id] = dag
        if len(places) > self.limits.statuses_per_task:
            self._placed.pop(places.pop(0).task_id, None)

    # -- reading -----------------------------------------------------------------------

    def departed_agents(self, now: float) -> list[DepartedAgent]:
        """Agents lost within ``keep_seconds``, latest first."""
        keep = self.limits.keep_seconds
        return [a for a in reversed(self._departed.values()) if now - a.lost_at <= keep]

    def lost_recently(self, now: float) -> int:
        return len(self.departed_agents(now))

    def registered_at(self, agent_id: AgentId) -> float | None:
        known = self._agents.get(agent_id)
        return known[1] if known is not None else None

    def subscribed_at(self, framework_id: FrameworkId) -> float | None:
        known = self._frameworks.get(framework_id)
        return known[1] if known is not None else None

    def completed_frameworks(self, now: float) -> list[CompletedFramework]:
        keep = self.limits.keep_seconds
        return [f for f in reversed(self._completed.values()) if now - f.ended_at <= keep]

    def statuses(self, task_id: TaskId) -> list[TaskStatus]:
        """The task's statuses as the master took them in, oldest first (empty if not remembered)."""
        return list(self._statuses.get(task_id, ()))

    def dataflows(self) -> list[Dataflow]:
        return list(self._dataflows.values())

    def dataflow(self, name: str) -> Dataflow | None:
        return self._dataflows.get(name)
