"""The ``Runtime`` contract (edgerm/agent/runtime.py), one suite for every runtime.

Parametrized over FakeRuntime, WasmRuntime (real wasmtime modules), the
agent's own ``wasm`` runtime (DataflowRuntime wrapping WasmRuntime) and
DockerRuntime (real containers; skipped only where no Docker engine answers,
required in CI). Each runtime comes with a :class:`Kit` that says how to
write, for it, a task that exits 0, one that exits 3, one that runs until
killed, and one that breaks its limit; the tests are the same for all:
launch, kill, idempotence, limits, and recovery after the runtime is closed
(what an agent restart does).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgerm.agent.fake import FakeRuntime
from edgerm.agent.runtime import RecoveredTask, Runtime, RuntimeReport, TaskEnded, TaskStarted
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.model import Container, DockerSpec, Reason, TaskInfo, TaskState, WasmSpec
from edgerm.resources import Resources
from tests.support import TEST_IMAGE, docker_unavailable, require_docker

WAIT = 30.0
WASM_DIR = Path(__file__).resolve().parents[2] / "examples" / "wasm"


class Reports:
    """A ``report`` callback that keeps every report and lets a test await one."""

    def __init__(self) -> None:
        self.reports: list[RuntimeReport] = []
        self._changed = asyncio.Event()

    def __call__(self, report: RuntimeReport) -> None:
        self.reports.append(report)
        self._changed.set()

    def of(self, task_id: TaskId) -> list[RuntimeReport]:
        return [r for r in self.reports if r.task_id == task_id]

    async def wait(self, task_id: TaskId, kind: type[RuntimeReport]) -> RuntimeReport:
        async with asyncio.timeout(WAIT):
            while True:
                for r in self.of(task_id):
                    if isinstance(r, kind):
                        return r
                self._changed.clear()
                await self._changed.wait()

    async def ended(self, task_id: TaskId) -> TaskEnded:
        r = await self.wait(task_id, TaskEnded)
        assert isinstance(r, TaskEnded)
        return r


@dataclass
class Kit:
    """How to drive one runtime through the contract."""

    name: str
    agent_id: AgentId
    new_runtime: Callable[[Path], Runtime]  # a fresh runtime on this work dir (same agent)
    finish: Callable[[], tuple[Container, tuple[str, ...], str]]
    fail3: Callable[[], tuple[Container, tuple[str, ...], str]]
    hang: Callable[[], tuple[Container, tuple[str, ...], str]]
    over_limit: Callable[[], tuple[Container, tuple[str, ...], str]]
    limit_reason: Reason
    survives_close: bool  # its tasks outlive the runtime (and the agent process)
    opened: list[Runtime] = field(default_factory=list)

    def runtime(self, work_dir: Path) -> Runtime:
        rt = self.new_runtime(work_dir)
        self.opened.append(rt)
        return rt

    def task(self, kind: Callable[[], tuple[Container, tuple[str, ...], str]]) -> TaskInfo:
        container, args, resources = kind()
        return TaskInfo(
            TaskId(f"{self.name}-{uuid.uuid4().hex[:8]}"),
            "contract",
            self.agent_id,
            Resources.parse(resources),
            container,
            args=args,
            framework_id=FrameworkId("fw-contract"),
            kill_grace=1.0,
        )


def _fake_kit() -> Kit:
    module = WasmSpec(module=b"\0asm\1\0\0\0")
    recoverable: list[RecoveredTask] = []  # a fake's tasks live in memory: none survive
    return Kit(
        name="fake",
        agent_id=AgentId("contract-fake"),
        new_runtime=lambda _: FakeRuntime(executor="wasm", recoverable=recoverable),
        finish=lambda: (module, ("finish",), "cpus:0.1"),
        fail3=lambda: (module, ("fail", "3"), "cpus:0.1"),
        hang=lambda: (module, ("hang",), "cpus:0.1"),
        over_limit=lambda: (WasmSpec(module=module.module, time_limit=0.2), ("hang",), "cpus:0.1"),
        limit_reason=Reason.TIME_LIMIT,
        survives_close=False,
    )


def _wasm_kit() -> Kit:
    from edgerm.agent.wasm import WasmRuntime, load_module

    def spec(name: str, time_limit: float = 0.0) -> Callable[[], tuple[Container, tuple[str, ...], str]]:
        return lambda: (WasmSpec(module=load_module(WASM_DIR / name), time_limit=time_limit), (), "cpus:0.1;mem:32")

    return Kit(
        name="wasm",
        agent_id=AgentId("contract-wasm"),
        new_runtime=lambda work_dir: WasmRuntime(work_dir, threads=4),
        finish=spec("hello.wat"),
        fail3=spec("exit3.wat"),
        hang=spec("loop.wat"),
        over_limit=spec("loop.wat", time_limit=0.3),
        limit_reason=Reason.TIME_LIMIT,
        survives_close=False,
    )


def _agent_wasm_kit() -> Kit:
    """The agent's own ``wasm`` runtime: DataflowRuntime passing plain tasks to WasmRuntime."""
    from edgerm.agent.dataflow.runtime import DataflowRuntime
    from edgerm.agent.wasm import WasmRuntime

    plain = _wasm_kit()
    agent_id = AgentId("contract-agent-wasm")
    return Kit(
        name="agent-wasm",
        agent_id=agent_id,
        new_runtime=lambda work_dir: DataflowRuntime(agent_id, WasmRuntime(work_dir, threads=4)),
        finish=plain.finish,
        fail3=plain.fail3,
        hang=plain.hang,
        over_limit=plain.over_limit,
        limit_reason=plain.limit_reason,
        survives_close=False,
    )


def _docker_kit() -> Kit:
    from edgerm.agent.docker import DockerRuntime

    agent_id = AgentId(f"test-docker-contract-{uuid.uuid4().hex[:8]}")

    def sh(script: str, resources: str = "cpus:0.2;mem:32") -> Callable[[], tuple[Container, tuple[str, ...], str]]:
        return lambda: (DockerSpec(image=TEST_IMAGE), ("sh", "-c", script), resources)

    return Kit(
        name="docker",
        agent_id=agent_id,
        new_runtime=lambda _: DockerRuntime(agent_id, mount_workdir=False),
        finish=sh("exit 0"),
        fail3=sh("echo failing >&2; exit 3"),
        hang=sh('trap "exit 143" TERM; while true; do sleep 0.1; done'),
        # dd fills one 64 MiB block, far over 16 MiB with swap forbidden; it waits so the engine watches first.
        over_limit=sh("sleep 0.5; dd if=/dev/zero of=/dev/null bs=64M count=1", "cpus:0.2;mem:16"),
        limit_reason=Reason.MEMORY_LIMIT,
        survives_close=True,
    )


KITS: dict[str, Callable[[], Kit]] = {
    "fake": _fake_kit,
    "wasm": _wasm_kit,
    "agent-wasm": _agent_wasm_kit,
    "docker": _docker_kit,
}


@pytest.fixture(params=list(KITS))
async def kit(request: pytest.FixtureRequest) -> AsyncIterator[Kit]:
    if request.param == "docker":
        require_docker(docker_unavailable())
    made = KITS[request.param]()
    try:
        yield made
    finally:
        for rt in made.opened:
            await rt.close()
        if request.param == "docker":
            await asyncio.to_thread(_remove_containers, made.agent_id)


def _remove_containers(agent_id: str) -> None:
    import docker

    from edgerm.agent.docker_spec import LABEL_AGENT

    client = docker.from_env(timeout=30)
    try:
        for c in client.containers.list(all=True, filters={"label": f"{LABEL_AGENT}={agent_id}"}):
            c.remove(force=True)
    finally:
        client.close()


# -- launch ------------------------------------------------------------------------------


async def test_a_task_that_exits_0_reports_started_then_finished_exactly_once(kit: Kit, tmp_path: Path) -> None:
    rt = kit.runtime(tmp_path)
    task = kit.task(kit.finish)
    reports = Reports()
    await rt.launch(task, tmp_path / "t", reports)
    ended = await reports.ended(task.task_id)
    assert (ended.state, ended.exit_code) == (TaskState.FINISHED, 0)
    assert [type(r) for r in reports.of(task.task_id)] == [TaskStarted, TaskEnded]


async def test_a_failing_task_reports_failed_with_its_exit_code(kit: Kit, tmp_path: Path) -> None:
    rt = kit.runtime(tmp_path)
    task = kit.task(kit.fail3)
    reports = Reports()
    await rt.launch(task, tmp_path / "t", reports)
    ended = await reports.ended(task.task_id)
    assert (ended.state, ended.reason, ended.exit_code) == (TaskState.FAILED, Reason.COMMAND_EXITED, 3)
    assert [type(r) for r in reports.of(task.task_id)] == [TaskStarted, TaskEnded]


async def test_a_second_launch_of_a_running_task_runs_nothing_more(kit: Kit, tmp_path: Path) -> None:
    rt = kit.runtime(tmp_path)
    task = kit.task(kit.hang)
    reports = Reports()
    await rt.launch(task, tmp_path / "t", reports)
    await reports.wait(task.task_id, TaskStarted)
    await rt.launch(task, tmp_path / "t", reports)
    await rt.kill(task.task_id, 1.0)
    await reports.ended(task.task_id)
    assert [type(r) for r in reports.of(task.task_id)] == [TaskStarted, TaskEnded]


# -- kill --------------------------------------------------------------------------------


async def test_kill_ends_a_running_task_killed_once_and_a_repeated_or_unknown_kill_does_nothing(
    kit: Kit, tmp_path: Path
) -> None:
    rt = kit.runtime(tmp_path)
    task = kit.task(kit.hang)
    reports = Reports()
    await rt.launch(task, tmp_path / "t", reports)
    await reports.wait(task.task_id, TaskStarted)
    await rt.kill(task.task_id, 1.0)
    ended = await reports.ended(task.task_id)
    assert ended.state is TaskState.KILLED
    await rt.kill(task.task_id, 1.0)
    await rt.kill(TaskId("never-launched"), 1.0)
    await rt.cleanup(task.task_id)
    await rt.kill(task.task_id, 1.0)
    assert [type(r) for r in reports.reports] == [TaskStarted, TaskEnded]


# -- limits ------------------------------------------------------------------------------


async def test_a_task_over_its_limit_fails_with_the_limit_as_its_reason(kit: Kit, tmp_path: Path) -> None:
    rt = kit.runtime(tmp_path)
    task = kit.task(kit.over_limit)
    reports = Reports()
    await rt.launch(task, tmp_path / "t", reports)
    ended = await reports.ended(task.task_id)
    assert (ended.state, ended.reason) == (TaskState.FAILED, kit.limit_reason), ended
    assert sum(isinstance(r, TaskEnded) for r in reports.of(task.task_id)) == 1


# -- recovery ----------------------------------------------------------------------------


async def test_after_close_a_new_runtime_recovers_exactly_the_tasks_that_survive(kit: Kit, tmp_path: Path) -> None:
    rt = kit.runtime(tmp_path)
    task = kit.task(kit.hang)
    before = Reports()
    await rt.launch(task, tmp_path / "t", before)
    await before.wait(task.task_id, TaskStarted)
    await rt.close()
    after = Reports()
    again = kit.runtime(tmp_path)
    found = await again.recover(after)
    if not kit.survives_close:
        assert found == []  # it lived in the closed runtime: nothing claims it still runs
        return
    assert found == [RecoveredTask(task.task_id, TaskState.RUNNING)]
    assert before.of(task.task_id) == [TaskStarted(task.task_id)]  # closing reported nothing for it
    await again.kill(task.task_id, 1.0)
    ended = await after.ended(task.task_id)
    assert ended.state is TaskState.KILLED
    await again.cleanup(task.task_id)
    assert await kit.runtime(tmp_path).recover(Reports()) == []
