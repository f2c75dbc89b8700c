"""AgentCore: feed events, compare the returned actions. No I/O, no clock.

Most tests look at what the agent does (``Core`` sets the journal's
KeepStatus/ForgetStatus aside in ``journaled``); the journal tests look at those.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from edgerm.agent.runtime import RecoveredTask, TaskEnded, TaskStarted
from edgerm.agent.state import (
    RETRY_MAX,
    AgentAction,
    AgentCore,
    AgentEvent,
    CleanupTask,
    ForgetStatus,
    HeartbeatDue,
    KeepStatus,
    KillReceived,
    LaunchReceived,
    LaunchRefused,
    MasterAnswered,
    Recovered,
    Register,
    Registered,
    RegistrationLost,
    Restored,
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
from edgerm.model import DockerSpec, Reason, RestartPolicy, Source, TaskInfo, TaskState, TaskStatus, WasmSpec
from edgerm.resources import Resources

AGENT = AgentId("agent-1")


class Core(AgentCore):
    """The real core; journal actions are set aside in ``journaled``."""

    def __init__(self, agent_id: AgentId, executors: frozenset[str], max_pending: int = 8192) -> None:
        super().__init__(agent_id, executors, max_pending)
        self.journaled: list[AgentAction] = []

    def handle(self, event: AgentEvent, now: float) -> list[AgentAction]:
        out = []
        for action in super().handle(event, now):
            (self.journaled if isinstance(action, KeepStatus | ForgetStatus) else out).append(action)
        return out


_uuids = itertools.count(1)


def stamp(t: float = 100.0) -> Stamp:
    return Stamp(f"u{next(_uuids)}", t)


def wasm_task(task_id: str = "t1", agent: str = AGENT) -> TaskInfo:
    return TaskInfo(TaskId(task_id), task_id, AgentId(agent), Resources.parse("cpus:1"), WasmSpec(module=b"\0asm"))


def docker_task(task_id: str = "d1") -> TaskInfo:
    return TaskInfo(TaskId(task_id), task_id, AGENT, Resources.parse("cpus:1"), DockerSpec(image="busybox"))


def registered_core(executors: frozenset[str] = frozenset({"wasm"})) -> Core:
    core = Core(AGENT, executors)
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
    core = Core(AGENT, frozenset({"wasm"}))
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
    core = Core(AGENT, frozenset({"docker"}))
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
    core = Core(AGENT, frozenset())
    with pytest.raises(TypeError):
        core.handle("launch", 0.0)  # type: ignore[arg-type]


# -- the journal, restarts, the bound -------------------------------------------------


def test_every_update_is_kept_before_it_is_sent_and_forgotten_once_acked() -> None:
    core = AgentCore(AGENT, frozenset({"wasm"}))
    core.handle(Started(), 0.0)
    core.handle(Registered(), 0.0)
    task = wasm_task()
    core.handle(LaunchReceived(task, stamp()), 0.0)
    actions = core.handle(RuntimeReported(TaskStarted(task.task_id), Stamp("run", 1.0)), 0.0)
    assert [type(a) for a in actions] == [KeepStatus, SendStatus]
    assert isinstance(actions[0], KeepStatus) and actions[0].executor == "wasm"
    # While RUNNING waits, the end is kept at once (it must survive a crash) but not sent yet.
    actions = core.handle(RuntimeReported(TaskEnded(task.task_id, TaskState.FINISHED), Stamp("end", 2.0)), 0.0)
    assert [type(a) for a in actions] == [KeepStatus]
    actions = core.handle(StatusAcked(task.task_id, "run"), 0.0)
    assert [type(a) for a in actions] == [ForgetStatus, SendStatus]
    assert actions[0] == ForgetStatus(task.task_id, "run")
    actions = core.handle(StatusAcked(task.task_id, "end"), 0.0)
    assert actions == [ForgetStatus(task.task_id, "end"), CleanupTask(task.task_id, "wasm")]


def test_register_carries_the_oldest_unacknowledged_update_so_the_master_takes_them_in_order() -> None:
    core = registered_core()
    task = wasm_task()
    running = run_to_running(core, task)
    core.handle(RuntimeReported(TaskEnded(task.task_id, TaskState.FINISHED), stamp()), 0.0)
    assert core.handle(RegistrationLost(), 0.0) == [Register((running,))]
    assert core.handle(Registered(), 0.0) == [SendStatus(running)]


def test_the_master_answering_again_sends_what_waits_at_once() -> None:
    core = registered_core()
    running = run_to_running(core, wasm_task(), now=0.0)
    assert core.handle(Tick(), 1.0) == [SendStatus(running)]  # next retry due at 3.0
    assert core.handle(MasterAnswered(), 1.5) == [SendStatus(running)]
    assert core.next_deadline() == 2.5  # a fresh backoff


def restored(task: TaskInfo, *pending: TaskStatus, launched: bool = True) -> Restored:
    return Restored(task.task_id, task.executor, task if launched else None, pending, stamp(200.0))


def test_a_task_that_died_with_the_agent_is_reported_failed_agent_restarted() -> None:
    core = Core(AGENT, frozenset({"wasm"}))
    task = wasm_task()
    actions = core.handle(Started(restored=(restored(task),)), 0.0)
    assert len(actions) == 1 and isinstance(actions[0], Register)
    [failed] = actions[0].tasks
    assert (failed.state, failed.reason, failed.timestamp) == (TaskState.FAILED, Reason.AGENT_RESTARTED, 200.0)
    assert core.journaled == [KeepStatus(failed, "wasm")]
    assert core.handle(Registered(), 0.0) == [SendStatus(failed)]
    assert core.handle(StatusAcked(task.task_id, failed.uuid), 0.0) == [CleanupTask(task.task_id, "wasm")]


def test_a_task_asking_to_be_restarted_is_relaunched_even_unregistered_and_says_so() -> None:
    core = Core(AGENT, frozenset({"wasm"}))
    task = replace(wasm_task(), restart_policy=RestartPolicy.ON_AGENT_RESTART)
    assert core.handle(Started(restored=(restored(task),)), 0.0) == [
        StartTask(task),
        Register((core.status_of(task.task_id),)),
    ]
    assert core.handle(RuntimeReported(TaskStarted(task.task_id), Stamp("new-run", 201.0)), 0.0) == []
    again = only_status(core.handle(Registered(), 0.0))
    assert (again.state, again.reason, again.uuid) == (TaskState.RUNNING, Reason.AGENT_RESTARTED, "new-run")
    assert "relaunched" in again.message


def test_a_relaunched_task_whose_first_running_still_waits_reports_no_second_one() -> None:
    core = Core(AGENT, frozenset({"wasm"}))
    task = replace(wasm_task(), restart_policy=RestartPolicy.ON_AGENT_RESTART)
    before = TaskStatus(task.task_id, AGENT, TaskState.RUNNING, uuid="old-run", timestamp=50.0)
    actions = core.handle(Started(restored=(restored(task, before),)), 0.0)
    assert actions == [StartTask(task), Register((before,))]  # the old RUNNING is still to be delivered
    assert core.handle(RuntimeReported(TaskStarted(task.task_id), Stamp("new-run", 201.0)), 0.0) == []
    assert core.unacknowledged() == 1  # at most two updates per task, relaunched or not
    assert core.handle(Registered(), 0.0) == [SendStatus(before)]
    assert core.handle(StatusAcked(task.task_id, "old-run"), 0.0) == []
    end = only_status(core.handle(RuntimeReported(TaskEnded(task.task_id, TaskState.FINISHED), stamp()), 0.0))
    assert end.state is TaskState.FINISHED


def test_a_task_that_ended_before_the_restart_is_not_relaunched_its_end_is_delivered() -> None:
    core = Core(AGENT, frozenset({"wasm"}))
    task = replace(wasm_task(), restart_policy=RestartPolicy.ON_AGENT_RESTART)
    end = TaskStatus(task.task_id, AGENT, TaskState.FINISHED, uuid="end", timestamp=50.0)
    assert core.handle(Started(restored=(restored(task, end),)), 0.0) == [Register((end,))]
    assert core.journaled == []  # already in the journal
    assert core.handle(Registered(), 0.0) == [SendStatus(end)]
    assert core.handle(StatusAcked(task.task_id, "end"), 0.0) == [CleanupTask(task.task_id, "wasm")]


def test_an_update_of_a_task_never_launched_is_delivered_after_a_restart() -> None:
    core = Core(AGENT, frozenset({"wasm"}))
    killed = TaskStatus(TaskId("ghost"), AGENT, TaskState.KILLED, uuid="k", timestamp=5.0)
    core.handle(Started(restored=(Restored(TaskId("ghost"), "", None, (killed,), stamp()),)), 0.0)
    assert core.handle(Registered(), 0.0) == [SendStatus(killed)]
    assert core.handle(StatusAcked(TaskId("ghost"), "k"), 0.0) == []  # nothing ran: nothing to clean


def test_a_container_found_again_keeps_running_and_its_journaled_update_goes_first() -> None:
    core = Core(AGENT, frozenset({"docker"}))
    task = docker_task()
    before = TaskStatus(task.task_id, AGENT, TaskState.RUNNING, uuid="run", timestamp=50.0)
    ended = RecoveredTask(task.task_id, TaskState.FINISHED, Reason.COMMAND_EXITED, "exit 0")
    actions = core.handle(Started((Recovered("docker", ended, Stamp("end", 60.0)),), (restored(task, before),)), 0.0)
    assert actions == [Register((before,))]
    assert [s.uuid for s in core.journaled if isinstance(s, KeepStatus) for s in [s.status]] == ["end"]
    assert core.handle(Registered(), 0.0) == [SendStatus(before)]
    assert only_status(core.handle(StatusAcked(task.task_id, "run"), 0.0)).uuid == "end"


def test_a_restored_task_whose_executor_is_gone_fails_executor_unavailable() -> None:
    core = Core(AGENT, frozenset({"wasm"}))
    actions = core.handle(Started(restored=(restored(docker_task()),)), 0.0)
    assert isinstance(actions[0], Register)
    assert actions[0].tasks[0].reason is Reason.EXECUTOR_UNAVAILABLE


def test_at_its_limit_the_agent_takes_no_new_task_and_warns_once() -> None:
    core = Core(AGENT, frozenset({"wasm"}), max_pending=4)  # two tasks
    core.handle(Started(), 0.0)
    core.handle(Registered(), 0.0)
    first = run_to_running(core, wasm_task("a"))
    run_to_running(core, wasm_task("b"))
    assert core.handle(LaunchReceived(wasm_task("c"), stamp()), 0.0) == [LaunchRefused(TaskId("c"), 2, True)]
    assert core.handle(LaunchReceived(wasm_task("c"), stamp()), 0.0) == [LaunchRefused(TaskId("c"), 2, False)]
    assert core.handle(KillReceived(TaskId("ghost"), 1.0, stamp()), 0.0) == [LaunchRefused(TaskId("ghost"), 2, False)]
    core.handle(StatusAcked(TaskId("a"), first.uuid), 0.0)
    end = only_status(core.handle(RuntimeReported(TaskEnded(TaskId("a"), TaskState.FINISHED), stamp()), 0.0))
    core.handle(StatusAcked(TaskId("a"), end.uuid), 0.0)
    assert core.handle(LaunchReceived(wasm_task("c"), stamp()), 0.0) == [StartTask(wasm_task("c"))]
    assert core.handle(LaunchReceived(wasm_task("d"), stamp()), 0.0) == [LaunchRefused(TaskId("d"), 2, True)]
    with pytest.raises(ValueError):
        AgentCore(AGENT, frozenset(), max_pending=1)
