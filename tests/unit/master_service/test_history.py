"""The dashboard's bounded memory (ClusterHistory), fed the core's real events, actions and task changes."""

from __future__ import annotations

from edgerm import dataflow_keys as df
from edgerm import messages as m
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master.actions import DropAgent, LaunchTask
from edgerm.master.events import AgentRegistered, FrameworkSubscribed, Tick
from edgerm.master.history import ClusterHistory, HistoryLimits
from edgerm.master.tasks import TaskChange, TaskRecord
from edgerm.model import AgentInfo, FrameworkInfo, TaskInfo, TaskState, TaskStatus, WasmSpec
from edgerm.resources import Resources


def agent(name: str) -> AgentInfo:
    return AgentInfo(AgentId(name), f"{name}.lab", Resources.parse("cpus:1"))


def test_departed_agents_are_kept_bounded_in_number_and_age_and_leave_when_back() -> None:
    h = ClusterHistory(HistoryLimits(keep_seconds=100, departed=2))
    for i, name in enumerate(("a", "b", "c")):
        h.observe(AgentRegistered(agent(name)), [], [], float(i), 0.0)
    h.observe(Tick(), [DropAgent(AgentId("a")), DropAgent(AgentId("b")), DropAgent(AgentId("c"))], [], 10.0, 0.0)
    assert [a.info.id for a in h.departed_agents(10.0)] == ["c", "b"]  # at most 2, latest first
    assert h.departed_agents(10.0)[0].registered_at == 2.0
    h.observe(AgentRegistered(agent("b")), [], [], 20.0, 0.0)  # b is back
    assert [a.info.id for a in h.departed_agents(20.0)] == ["c"]
    assert h.departed_agents(111.0) == [] and h.lost_recently(111.0) == 0  # older than keep_seconds


def test_completed_frameworks_and_bounded_status_histories() -> None:
    h = ClusterHistory(HistoryLimits(tasks=2, statuses_per_task=3))
    fid = FrameworkId("f1")
    h.observe(FrameworkSubscribed(FrameworkInfo(fid, "jobs")), [], [], 1.0, 0.0)
    h.observe(m.Teardown(fid), [], [], 5.0, 0.0)
    [done] = h.completed_frameworks(6.0)
    assert (done.info.name, done.subscribed_at, done.ended_at) == ("jobs", 1.0, 5.0)

    info = TaskInfo(TaskId("t1"), "t", AgentId("a"), Resources.parse("cpus:1"), WasmSpec(b"x"))
    states = (TaskState.STAGING, TaskState.STARTING, TaskState.STARTING, TaskState.RUNNING, TaskState.FINISHED)
    changes = [
        TaskChange(None, TaskRecord(info, TaskStatus(info.task_id, info.agent_id, s, message=f"#{i}", timestamp=i)))
        for i, s in enumerate(states)
    ]
    h.observe(Tick(), [], changes, 9.0, 0.0)
    assert [s.message for s in h.statuses(TaskId("t1"))] == ["#2", "#3", "#4"]  # the last 3
    for name in ("t2", "t3"):  # t1 is the oldest of three tasks: forgotten
        other = TaskInfo(TaskId(name), "t", AgentId("a"), Resources.parse("cpus:1"), WasmSpec(b"x"))
        status = TaskStatus(other.task_id, other.agent_id, TaskState.STAGING)
        h.observe(Tick(), [], [TaskChange(None, TaskRecord(other, status))], 9.0, 0.0)
    assert h.statuses(TaskId("t1")) == [] and len(h.statuses(TaskId("t3"))) == 1


def test_dataflow_tasks_give_the_graph_its_placements_and_moves() -> None:
    h = ClusterHistory()

    def launch(task_id: str, operator: str, agent_id: str, inputs: str = "") -> LaunchTask:
        env = {df.DAG: "temp", df.OPERATOR: operator, df.ROLE: "operator", df.REPLICA: "0", df.INPUTS: inputs}
        env[df.OUTPUT] = df.out_topic("temp", operator)
        task = TaskInfo(TaskId(task_id), task_id, AgentId(agent_id), Resources.parse("cpus:1"), WasmSpec(b"x"), env=env)
        return LaunchTask(AgentId(agent_id), task)

    h.observe(Tick(), [launch("r1", "read", "a"), launch("m1", "map", "a", df.out_topic("temp", "read"))], [], 1.0, 0)
    h.observe(Tick(), [launch("m1", "map", "a", df.out_topic("temp", "read"))], [], 2.0, 0.0)  # a re-sent launch
    h.observe(Tick(), [launch("m2", "map", "b", df.out_topic("temp", "read"))], [], 3.0, 0.0)  # moved to b
    flow = h.dataflow("temp")
    assert flow is not None
    assert flow.upstream("map") == ["read"] and flow.upstream("read") == []
    assert flow.moves("map") == 1 and flow.moves("read") == 0
    assert [p.agent_id for p in flow.placements[("map", 0)]] == ["a", "b"]
    ordinary = TaskInfo(TaskId("x"), "x", AgentId("a"), Resources.parse("cpus:1"), WasmSpec(b"x"))
    h.observe(Tick(), [LaunchTask(AgentId("a"), ordinary)], [], 4.0, 0.0)
    assert [f.name for f in h.dataflows()] == ["temp"]
