"""Pull progress: the parser over pull events, the throttle, and the agent core's STARTING updates."""

from __future__ import annotations

from edgerm.agent.pull_progress import PullProgress, Throttle
from edgerm.agent.runtime import TaskProgress, TaskStarted
from edgerm.agent.state import (
    AgentCore,
    LaunchReceived,
    Registered,
    RuntimeReported,
    SendStatus,
    Stamp,
    StartTask,
    StatusAcked,
)
from edgerm.ids import AgentId, TaskId
from edgerm.model import DockerSpec, TaskInfo, TaskState
from edgerm.resources import Resources
from tests.unit.agent.pull_events import TWO_LAYERS


def test_progress_counts_layers_and_bytes_as_the_pull_goes() -> None:
    p = PullProgress("big:1.0")
    assert p.summary() == "pulling big:1.0"
    seen = []
    for event in TWO_LAYERS:
        p.feed(event)
        seen.append(p.summary())
    # one layer already there, two to come: the first download at 15 of 30 MB (the second's size not known yet)
    assert "pulling big:1.0: 1/3 layers, 15.0 of 30.0 MB" in seen
    assert "pulling big:1.0: 1/3 layers, 32.0 of 40.0 MB" in seen  # a downloaded, b 2 of 10 MB
    assert seen[-1] == "pulling big:1.0: 3/3 layers, 40.0 of 40.0 MB"
    assert (p.layers, p.layers_done, p.bytes_done, p.bytes_total) == (3, 3, 40_000_000, 40_000_000)


def test_unknown_and_malformed_events_are_ignored() -> None:
    p = PullProgress("x")
    for event in (
        {},
        {"status": 3, "id": "a"},
        {"status": "Downloading", "id": 7},
        {"status": "Downloading", "id": "a", "progressDetail": "nope"},
        {"status": "Something new", "id": "a"},
    ):
        p.feed(event)
    assert p.layers == 1 and p.bytes_total == 0  # "a" was named by a Downloading event, with no figures
    assert p.events == 5


def test_throttle_says_yes_at_most_once_a_second() -> None:
    t = Throttle(1.0)
    times = [0.0, 0.2, 0.9, 1.0, 1.5, 2.01, 2.5, 3.1]
    assert [t.ready(x) for x in times] == [True, False, False, True, False, True, False, True]


def _sends(actions: list[object]) -> list[SendStatus]:
    """What goes to the master (the journal's KeepStatus/ForgetStatus are the agent's own)."""
    return [a for a in actions if isinstance(a, SendStatus)]


def _core() -> tuple[AgentCore, TaskId]:
    core = AgentCore(AgentId("a1"), frozenset({"docker"}))
    core.handle(Registered(), 0.0)
    task = TaskInfo(TaskId("t1"), "t", AgentId("a1"), Resources.parse("cpus:1"), DockerSpec("big:1.0"))
    assert core.handle(LaunchReceived(task, Stamp("u0", 1.0)), 0.0) == [StartTask(task)]
    return core, task.task_id


def test_progress_becomes_starting_updates_and_a_newer_one_replaces_a_queued_one() -> None:
    core, tid = _core()
    [first] = _sends(core.handle(RuntimeReported(TaskProgress(tid, "pulling: 0/2"), Stamp("u1", 2.0)), 1.0))
    assert isinstance(first, SendStatus)
    assert (first.status.state, first.status.message, first.status.uuid) == (TaskState.STARTING, "pulling: 0/2", "u1")
    # u1 is in flight: u2 queues behind it, u3 replaces u2 (never sent)
    assert _sends(core.handle(RuntimeReported(TaskProgress(tid, "pulling: 1/2"), Stamp("u2", 3.0)), 2.0)) == []
    assert _sends(core.handle(RuntimeReported(TaskProgress(tid, "pulling: 2/2"), Stamp("u3", 4.0)), 3.0)) == []
    [nxt] = _sends(core.handle(StatusAcked(tid, "u1"), 3.5))
    assert isinstance(nxt, SendStatus) and nxt.status.uuid == "u3" and nxt.status.message == "pulling: 2/2"
    assert core.unacknowledged() == 1
    # once RUNNING, a late progress report changes nothing
    core.handle(StatusAcked(tid, "u3"), 4.0)
    [running] = _sends(core.handle(RuntimeReported(TaskStarted(tid), Stamp("u4", 5.0)), 4.5))
    assert isinstance(running, SendStatus) and running.status.state is TaskState.RUNNING
    assert core.handle(RuntimeReported(TaskProgress(tid, "late"), Stamp("u5", 6.0)), 5.0) == []
