"""The master's lifecycle log (edgerm.master.eventlog): one line per event, with its ids, never twice."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from edgerm import messages as m
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.logs import JsonFormatter
from edgerm.master import events as ev
from edgerm.master.actions import MasterAction
from edgerm.master.eventlog import EventLog
from edgerm.model import Reason, TaskState, TaskStatus
from tests.unit.master.conftest import Harness, task_info


class Logged(Harness):
    """The core harness, with every (event, actions) pair shown to an EventLog as the service does."""

    def __init__(self) -> None:
        super().__init__()
        self.eventlog = EventLog(self.core)

    def do(self, event: Any) -> list[MasterAction]:
        actions = self.core.handle(event, self.now)
        self.eventlog.record(event, actions)
        return actions


@pytest.fixture
def lh(caplog: pytest.LogCaptureFixture) -> Logged:
    caplog.set_level(logging.INFO, logger="edgerm.master.events")
    return Logged()


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "edgerm.master.events"]


def events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [str(getattr(r, "event", "")) for r in caplog.records if r.name == "edgerm.master.events"]


def test_a_task_life_is_launched_then_one_terminal_line(lh: Logged, caplog: pytest.LogCaptureFixture) -> None:
    lh.agent()
    lh.framework()
    offer = lh.core.offers_of(FrameworkId("f1"))[0]
    lh.accept("f1", [offer], [task_info("t1")])
    lh.status("t1", TaskState.RUNNING)
    status = TaskStatus(TaskId("t1"), AgentId("a1"), TaskState.FAILED, Reason.COMMAND_EXITED, "exit 3", "u9", 1.0)
    lh.do(ev.StatusReceived(AgentId("a1"), status))
    lh.do(ev.StatusReceived(AgentId("a1"), status))  # a retry: nothing new
    lh.status("t1", TaskState.FAILED)  # late, different uuid: the core ignores it, so does the log
    assert events(caplog) == ["agent_registered", "framework_subscribed", "task_launched", "task_failed"]
    launched, failed = lines(caplog)[2:]
    assert "task_id=t1" in launched and "framework_id=f1" in launched and "agent_id=a1" in launched
    assert "reason=COMMAND_EXITED" in failed and "message='exit 3'" in failed and "agent_id=a1" in failed
    record = caplog.records[-1]
    assert (record.task_id, record.framework_id, record.agent_id, record.state) == ("t1", "f1", "a1", "FAILED")  # type: ignore[attr-defined]


def test_kill_teardown_and_disconnect(lh: Logged, caplog: pytest.LogCaptureFixture) -> None:
    lh.running("t1")
    lh.do(m.Kill(FrameworkId("f1"), TaskId("t1")))
    lh.do(m.Kill(FrameworkId("f1"), TaskId("t1")))  # asked twice: one line
    lh.status("t1", TaskState.KILLED)
    lh.framework("f2")
    lh.do(ev.FrameworkDisconnected(FrameworkId("f2")))
    lh.do(ev.FrameworkDisconnected(FrameworkId("f2")))
    lh.framework("f2")
    lh.do(m.Teardown(FrameworkId("f2")))
    assert events(caplog)[3:] == [
        "task_kill_requested",
        "task_killed",
        "framework_subscribed",
        "framework_disconnected",
        "framework_re_subscribed",
        "framework_torn_down",
    ]
    assert "reason=KILLED_BY_FRAMEWORK" in lines(caplog)[3]


def test_agent_lost_loses_its_tasks_and_re_registration_is_named(lh: Logged, caplog: pytest.LogCaptureFixture) -> None:
    lh.running("t1")
    lh.agent("a2")
    lh.agent("a2")  # again: re-registered
    assert events(caplog)[-1] == "agent_re_registered"
    caplog.clear()
    lh.heartbeat("a2")
    lh.tick(3600 * 3 + 1)  # a1 and a2 miss their heartbeats: unreachable
    got = events(caplog)
    assert sorted(got) == ["agent_unreachable", "agent_unreachable", "task_unreachable"], got
    caplog.clear()
    lh.tick(600)  # past the unreachable timeout: lost
    got = events(caplog)
    assert sorted(got) == ["agent_lost", "agent_lost", "task_lost"], got
    lost = next(line for line in lines(caplog) if line.startswith("task lost"))
    assert "task_id=t1" in lost and "reason=AGENT_LOST" in lost
    caplog.clear()
    lh.tick(10)
    assert lines(caplog) == []
    lh.agent("a2")  # back after it was lost
    assert events(caplog) == ["agent_re_registered"] and lines(caplog)[0].endswith("(it had been lost)")


def test_a_heartbeat_logs_nothing(lh: Logged, caplog: pytest.LogCaptureFixture) -> None:
    lh.running("t1")
    caplog.clear()
    for _ in range(3):
        lh.heartbeat("a1", "t1")
    assert lines(caplog) == []


def test_json_lines_carry_the_ids(lh: Logged, caplog: pytest.LogCaptureFixture) -> None:
    lh.running("t1")
    import json

    launched = next(r for r in caplog.records if getattr(r, "event", "") == "task_launched")
    obj = json.loads(JsonFormatter().format(launched))
    assert obj["task_id"] == "t1" and obj["framework_id"] == "f1" and obj["agent_id"] == "a1"
    assert obj["level"] == "INFO" and obj["message"].startswith("task launched")


def test_a_bug_in_the_log_never_reaches_the_master(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def task(self, task_id: TaskId) -> None:
            raise RuntimeError("boom")

    log = EventLog(Broken())
    log.record(ev.StatusReceived(AgentId("a"), TaskStatus(TaskId("t"), AgentId("a"), TaskState.RUNNING)), [])
    assert "event log failed" in caplog.text
