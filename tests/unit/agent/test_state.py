"""AgentCore: feed events, compare the returned actions. No I/O, no clock."""

from __future__ import annotations

import itertools

import pytest

from edgerm.agent.runtime import RecoveredTask, TaskEnded, TaskStarted
from edgerm.agent.state import (
    RETRY_MAX,
    AgentAction,
    AgentCore,
    CleanupTask,
    HeartbeatDue,
    KillReceived,
    LaunchReceived,
    Recovered,
    Register,
    Registered,
    RegistrationLost,
    RuntimeReported,
    SendHeartbeat,
    SendStatus,
    Stamp,
    Started,
    StartTask,
    StatusAcked,
    StopTask,
    Tick,
)
from edgerm.ids import AgentId, TaskId
from edgerm.model import DockerSpec, Reason, Source, TaskInfo, TaskState, TaskStatus, WasmSpec
from edgerm.resources import Resources

AGENT = AgentId("agent-1")
_uuids = itertools.count(1)


def stamp(t: float = 100.0) -> Stamp:
    return Stamp(f"u{next(_uuids)}", t)


def wasm_task(task_id: str = "t1", agent: str = AGENT) -> TaskInfo:
    return TaskInfo(TaskId(task_id), task_id, AgentId(agent), Resources.parse("cpus:1"), WasmSpec(module=b"\0asm"))


def docker_task(task_id: str = "d1") -> TaskInfo:
    return TaskInfo(TaskId(task_id), task_id, AGENT, Resources.parse("cpus:1"), DockerSpec(image="busybox"))


def registered_core(executors: frozenset[str] = frozenset({"wasm"})) -> AgentCore:
    core = AgentCore(AGENT, executors)
    assert core.handle(Started(), 0.0) == [Register(())]
    assert core.handle(Registered(), 0.0) == []
    return core


def sent(actions: list[AgentAction]) -> list[tuple[str, TaskState]]:
    return [(a.status.task_id, a.status.state) for a in actions if isinstance(a, SendStatus)]


def only_status(actions: list[AgentAction]) -> TaskStatus:
    assert len(actions) == 1 and isinstance(actions[0], SendStatus), actions
    return actions[0].status


def run_to_running(core: AgentCore, task: TaskInfo, now: float = 0.0) -> TaskStatus:
    assert core.handle(LaunchReceived(task, stamp()), now) == [StartTask(task)]
    return only_status(core.handle(RuntimeReported(TaskStarted(task.task_id), stamp()), now))


# -- launch ----------------------------------------------------------------------


def test_launch_starts_the_task_and_reports_running_with_the_stamp() -> None:
    core = registered_core()
    task = wasm_task()
    assert core.handle(LaunchReceived(task, stamp()), 1.0) == [StartTask(task)]
    assert core.status_of(task.task_id) == TaskStatus(task.task_id, AGENT, TaskState.STARTING, timestamp=100.0)
    s = Stamp("uuid-run", 123.5)
    status = only_status(core.handle(RuntimeReported(TaskStarted(task.task_id), s), 1.0))
    assert status == TaskStatus(
        task.task_id, AGENT, TaskState.RUNNING, uuid="uuid-run", timestamp=123.5, source=Source.AGENT
    )
    assert core.task_ids() == (task.task_id,)


def test_launch_is_idempotent_while_held_and_after_completion() -> None:
    core = registered_core()
    task = wasm_task()
    running = run_to_running(core, task)
    assert core.handle(LaunchReceived(task, stamp()), 0.0) == []
    core.handle(StatusAcked(task.task_id, running.uuid), 0.0)
    ended = only_status(core.handle(RuntimeReported(TaskEnded(task.task_id, TaskState.FINISHED), stamp()), 0.0))
    assert core.handle(StatusAcked(task.task_id, ended.uuid), 0.0) == [CleanupTask(task.task_id, "wasm")]
    assert core.task_ids() == ()
    assert core.handle(LaunchReceived(task, stamp()), 0.0) == []  # a late duplicate does not run it again


def test_launch_without_the_executor_fails_with_executor_unavailable() -> None:
    core = registered_core(frozenset({"wasm"}))
    task = docker_task()
    status = only_status(core.handle(LaunchReceived(task, stamp()), 0.0))
    assert (status.state, status.reason) == (TaskState.FAILED, Reason.EXECUTOR_UNAVAILABLE)
    assert "docker" in status.message
    # Held until acknowledged; nothing ran, so nothing to clean up.
    assert core.task_ids() == (task.task_id,)
    assert core.handle(StatusAcked(task.task_id, status.uuid), 0.0) == []
    assert core.task_ids() == ()


def test_launch_for_another_agent_is_an_invalid_task() -> None:
    core = registered_core()
    status = only_status(core.handle(LaunchReceived(wasm_task(agent="agent-2"), stamp()), 0.0))
    assert (status.state, status.reason) == (TaskState.ERROR, Reason.INVALID_TASK)


# -- kill ------------------------------------------------------------------------


def test_kill_of_a_running_task_stops_it_then_reports_killed() -> None:
    core = registered_core()
    task = wasm_task()
    run_to_running(core, task)
    assert core.handle(KillReceived(task.task_id, 2.5, stamp()), 0.0) == [StopTask(task.task_id, "wasm", 2.5)]
    # A repeated KILL orders the stop again (the first may have failed); it creates no status.
    assert core.handle(KillReceived(task.task_id, 2.5, stamp()), 0.0) == [StopTask(task.task_id, "wasm", 2.5)]
    actions = core.handle(RuntimeReported(TaskEnded(task.task_id, TaskState.KILLED), stamp()), 0.0)
    # RUNNING is still unacknowledged: KILLED waits behind it (in order per task).
    assert actions == []
    assert core.status_of(task.task_id) is not None
    assert core.status_of(task.task_id).state is TaskState.KILLED  # type: ignore[union-attr]
    assert core.status_of(task.task_id).reason is Reason.KILLED_BY_FRAMEWORK  # type: ignore[union-attr]


def test_kill_of_an_unknown_task_answers_killed() -> None:
    core = registered_core()
    status = only_status(core.handle(KillReceived(TaskId("ghost"), 3.0, stamp()), 0.0))
    assert (status.task_id, status.state, status.reason) == ("ghost", TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK)
    # A LAUNCH arriving after its KILL is ignored.
    assert core.handle(LaunchReceived(wasm_task("ghost"), stamp()), 0.0) == []
    assert core.handle(StatusAcked(TaskId("ghost"), status.uuid), 0.0) == []
    assert core.task_ids() == ()


def test_kill_of_an_ended_task_does_nothing() -> None:
    core = registered_core()
    task = wasm_task()
    run_to_running(core, task)
    core.handle(RuntimeReported(TaskEnded(task.task_id, TaskState.FINISHED), stamp()), 0.0)
    assert core.handle(KillReceived(task.task_id, 3.0, stamp()), 0.0) == []


# -- reliable status updates -------------------------------------------------------


def test_updates_go_out_in_order_one_at_a_time_per_task() -> None:
    core = registered_core()
    task = wasm_task()
    running = run_to_running(core, task)
    assert (
        core.handle(RuntimeReported(TaskEnded(task.task_id, TaskState.FAILED, Reason.TRAP, "boom"), stamp()), 0.0) == []
    )
    assert core.unacknowledged() == 2
    finished = only_status(core.handle(StatusAcked(task.task_id, running.uuid), 0.5))
    assert (finished.state, finished.reason, finished.message) == (TaskState.FAILED, Reason.TRAP, "boom")
    assert core.handle(StatusAcked(task.task_id, finished.uuid), 0.6) == [CleanupTask(task.task_id, "wasm")]
    assert core.unacknowledged() == 0


def test_unacknowledged_update_is_retried_with_backoff_doubling_to_ten_seconds() -> None:
    core = registered_core()
    task = wasm_task()
    running = run_to_running(core, task, now=0.0)
    times = []
    now = 0.0
    for _ in range(7):
        deadline = core.next_deadline()
        assert deadline is not None
        assert core.handle(Tick(), deadline - 0.01) == []  # not yet due
        now = deadline
        assert only_status(core.handle(Tick(), now)) == running  # the same update, same uuid
        times.append(now)
    gaps = [b - a for a, b in itertools.pairwise([0.0, *times])]
    assert gaps == pytest.approx([1, 2, 4, 8, 10, 10, 10])
    assert max(gaps) == RETRY_MAX
    core.handle(StatusAcked(task.task_id, running.uuid), now)
    assert core.next_deadline() is None


def test_stale_or_duplicate_acks_are_ignored() -> None:
    core = registered_core()
    task = wasm_task()
    running = run_to_running(core, task)
    assert core.handle(StatusAcked(task.task_id, "not-this-one"), 0.0) == []
    assert core.handle(StatusAcked(TaskId("other"), running.uuid), 0.0) == []
    assert core.unacknowledged() == 1
    assert core.handle(StatusAcked(task.task_id, running.uuid), 0.0) == []
    assert core.handle(StatusAcked(task.task_id, running.uuid), 0.0) == []
    assert core.unacknowledged() == 0


def test_stale_runtime_reports_are_ignored() -> None:
    core = registered_core()
    task = wasm_task()
    run_to_running(core, task)
    assert core.handle(RuntimeReported(TaskStarted(task.task_id), stamp()), 0.0) == []
    core.handle(RuntimeReported(TaskEnded(task.task_id, TaskState.FINISHED), stamp()), 0.0)
    assert core.handle(RuntimeReported(TaskEnded(task.task_id, TaskState.FAILED), stamp()), 0.0) == []
    assert core.handle(RuntimeReported(TaskStarted(TaskId("unknown")), stamp()), 0.0) == []
    assert core.status_of(task.task_id).state is TaskState.FINISHED  # type: ignore[union-attr]


def test_task_ending_before_running_reports_only_its_end() -> None:
    core = registered_core()
    task = wasm_task()
    core.handle(LaunchReceived(task, stamp()), 0.0)
    ended = TaskEnded(task.task_id, TaskState.FAILED, Reason.RUNTIME_ERROR, "no thread", 0)
    status = only_status(core.handle(RuntimeReported(ended, stamp()), 0.0))
    assert (status.state, status.reason, status.message) == (TaskState.FAILED, Reason.RUNTIME_ERROR, "no thread")


def test_exit_code_is_carried() -> None:
    core = registered_core()
    task = wasm_task()
    running = run_to_running(core, task)
    core.handle(StatusAcked(task.task_id, running.uuid), 0.0)
    ended = TaskEnded(task.task_id, TaskState.FAILED, Reason.COMMAND_EXITED, "exited with code 3", 3)
    status = only_status(core.handle(RuntimeReported(ended, stamp()), 0.0))
    assert status.exit_code == 3


# -- registration --------------------------------------------------------------------


def test_nothing_is_sent_before_registration_and_everything_on_it() -> None:
    core = AgentCore(AGENT, frozenset({"wasm"}))
    assert core.handle(Started(), 0.0) == [Register(())]
    assert core.handle(HeartbeatDue(), 0.0) == []
    assert core.handle(KillReceived(TaskId("a"), 1.0, stamp()), 0.0) == []  # queued, not sent
    assert core.handle(KillReceived(TaskId("b"), 1.0, stamp()), 0.0) == []
    assert core.next_deadline() is None
    assert core.handle(Tick(), 100.0) == []
    assert sorted(sent(core.handle(Registered(), 5.0))) == [("a", TaskState.KILLED), ("b", TaskState.KILLED)]
    assert core.next_deadline() == 6.0


def test_unknown_agent_registers_again_with_the_held_tasks_once() -> None:
    core = registered_core()
    task = wasm_task()
    running = run_to_running(core, task)
    actions = core.handle(RegistrationLost(), 1.0)
    assert actions == [Register((running,))]
    assert not core.registered
    assert core.handle(RegistrationLost(), 1.0) == []  # already registering
    assert core.handle(HeartbeatDue(), 1.0) == []
    # Re-registered: the unacknowledged head goes out at once, with a fresh backoff.
    assert core.handle(Registered(), 2.0) == [SendStatus(running)]
    assert core.next_deadline() == 3.0


def test_heartbeat_lists_every_held_task() -> None:
    core = registered_core()
    run_to_running(core, wasm_task("b"))
    run_to_running(core, wasm_task("a"))
    core.handle(KillReceived(TaskId("ghost"), 1.0, stamp()), 0.0)
    assert core.handle(HeartbeatDue(), 0.0) == [SendHeartbeat((TaskId("a"), TaskId("b"), TaskId("ghost")))]


# -- recovery --------------------------------------------------------------------------


def test_recovered_tasks_are_registered_and_their_ends_reported() -> None:
    core = AgentCore(AGENT, frozenset({"docker"}))
    live = Recovered("docker", RecoveredTask(TaskId("live"), TaskState.RUNNING), Stamp("u-live", 50.0))
    dead = Recovered(
        "docker",
        RecoveredTask(TaskId("dead"), TaskState.FAILED, Reason.COMMAND_EXITED, "exit 2", 2),
        Stamp("u-dead", 51.0),
    )
    actions = core.handle(Started((live, dead)), 0.0)
    assert len(actions) == 1 and isinstance(actions[0], Register)
    statuses = {s.task_id: s for s in actions[0].tasks}
    assert statuses[TaskId("live")].state is TaskState.RUNNING and statuses[TaskId("live")].uuid == ""
    assert statuses[TaskId("dead")].uuid == "u-dead" and statuses[TaskId("dead")].exit_code == 2
    # Only the ended one needs delivering; once acknowledged its container is cleaned up.
    status = only_status(core.handle(Registered(), 0.0))
    assert status.task_id == "dead"
    assert core.handle(StatusAcked(TaskId("dead"), "u-dead"), 0.0) == [CleanupTask(TaskId("dead"), "docker")]
    # The live one can be killed and ends normally.
    assert core.handle(KillReceived(TaskId("live"), 1.0, stamp()), 0.0) == [StopTask(TaskId("live"), "docker", 1.0)]


def test_unknown_event_type_is_rejected() -> None:
    core = AgentCore(AGENT, frozenset())
    with pytest.raises(TypeError):
        core.handle("launch", 0.0)  # type: ignore[arg-type]
