"""The agent's task log (edgerm.agent.tasklog): a line per start and end, runtime errors with their message."""

from __future__ import annotations

import logging

import pytest

from edgerm.agent.runtime import TaskEnded, TaskStarted
from edgerm.agent.state import KillReceived, RuntimeReported, Stamp, StartTask
from edgerm.agent.tasklog import TaskLog
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.model import DockerSpec, Reason, TaskInfo, TaskState
from edgerm.resources import Resources

TASK = TaskInfo(
    TaskId("t1"),
    "web-1",
    AgentId("a1"),
    Resources.parse("cpus:0.5;mem:64"),
    DockerSpec(image="nginx:1"),
    framework_id=FrameworkId("f1"),
)
STAMP = Stamp("u", 1.0)


def test_start_running_and_a_docker_error_with_its_message(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edgerm.agent.tasks")
    log = TaskLog(AgentId("a1"))
    log.record(object(), [StartTask(TASK)])
    log.record(RuntimeReported(TaskStarted(TaskId("t1")), STAMP), [])
    log.record(KillReceived(TaskId("t1"), 3.0, STAMP), [])
    error = TaskEnded(TaskId("t1"), TaskState.FAILED, Reason.IMAGE_UNAVAILABLE, "pull access denied for nginx")
    log.record(RuntimeReported(error, STAMP), [])
    records = [r for r in caplog.records if r.name == "edgerm.agent.tasks"]
    assert [r.getMessage().split(":")[0] for r in records] == [
        "task starting",
        "task running",
        "task kill received",
        "task failed",
    ]
    failed = records[-1]
    assert failed.levelno == logging.WARNING and "pull access denied for nginx" in failed.getMessage()
    assert "name=web-1" in failed.getMessage() and "executor=docker" in failed.getMessage()
    for r in records:
        assert (r.task_id, r.framework_id, r.agent_id) == ("t1", "f1", "a1")  # type: ignore[attr-defined]


def test_a_plain_finish_is_info_and_the_name_is_forgotten(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edgerm.agent.tasks")
    log = TaskLog(AgentId("a1"))
    log.record(object(), [StartTask(TASK)])
    log.record(RuntimeReported(TaskEnded(TaskId("t1"), TaskState.FINISHED, Reason.COMMAND_EXITED, "exit 0"), STAMP), [])
    assert caplog.records[-1].levelno == logging.INFO
    assert not log._tasks  # bounded: ended tasks are not remembered
