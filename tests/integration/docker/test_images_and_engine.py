"""Images and the engine: pull policies without a registry, an absent engine, availability."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgerm.agent.docker_engine import DockerEngine
from edgerm.model import PullPolicy, Reason, TaskState

pytestmark = pytest.mark.docker

ABSENT = "edgerm-test/absent:never-built"


async def test_available_when_the_engine_answers(agent: Any) -> None:
    assert await agent.runtime.available() is True


@pytest.mark.parametrize("policy", list(PullPolicy))
async def test_missing_image_fails_cleanly_under_every_pull_policy(
    agent: Any, recorder: Any, tmp_path: Path, policy: PullPolicy
) -> None:
    task = agent.task("noimage", ("true",), image=ABSENT, pull=policy)

    await agent.runtime.launch(task, tmp_path, recorder)
    ended = await recorder.ended(task.task_id)

    assert ended.state is TaskState.FAILED
    assert ended.reason is Reason.IMAGE_UNAVAILABLE
    assert ABSENT in ended.message
    assert [type(r).__name__ for r in recorder.of(task.task_id)] == ["TaskEnded"]  # it never ran

    # The runtime goes on: the next task with a present image runs.
    ok = agent.task("next", ("true",))
    await agent.runtime.launch(ok, tmp_path, recorder)
    assert (await recorder.ended(ok.task_id)).state is TaskState.FINISHED


async def test_present_image_runs_with_pull_policy_never(agent: Any, recorder: Any, tmp_path: Path) -> None:
    task = agent.task("local", ("true",), pull=PullPolicy.NEVER)
    await agent.runtime.launch(task, tmp_path, recorder)
    assert (await recorder.ended(task.task_id)).state is TaskState.FINISHED


async def test_without_an_engine_nothing_crashes(agent: Any, recorder: Any, tmp_path: Path) -> None:
    runtime = agent.new_runtime(engine=DockerEngine(base_url=f"unix://{tmp_path}/no-docker.sock", timeout=2))

    assert await runtime.available() is False
    assert await runtime.recover(recorder) == []

    task = agent.task("noengine", ("true",))
    await runtime.launch(task, tmp_path, recorder)
    ended = await recorder.ended(task.task_id)
    assert ended.state is TaskState.FAILED
    assert ended.reason is Reason.EXECUTOR_UNAVAILABLE

    await runtime.kill(task.task_id, 0.0)  # ended: nothing to do
    await runtime.cleanup(task.task_id)  # the engine is absent: logged, not raised
