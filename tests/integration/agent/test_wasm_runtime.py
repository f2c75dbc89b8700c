"""WasmRuntime with real wasmtime and the WAT modules of examples/wasm/."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgerm.agent.runtime import RuntimeReport, TaskEnded, TaskStarted
from edgerm.agent.wasm import WasmRuntime, load_module
from edgerm.errors import TransportError
from edgerm.ids import AgentId, TaskId
from edgerm.model import Reason, TaskInfo, TaskState, WasmSpec
from edgerm.resources import Resources

WASM_DIR = Path(__file__).resolve().parents[3] / "examples" / "wasm"
WAIT = 10.0


def module(name: str) -> bytes:
    return load_module(WASM_DIR / f"{name}.wat")


def task(
    task_id: str,
    name: str = "hello",
    *args: str,
    mem: float = 16,
    time_limit: float = 0.0,
    env: dict[str, str] | None = None,
    spec: WasmSpec | None = None,
) -> TaskInfo:
    return TaskInfo(
        task_id=TaskId(task_id),
        name=name,
        agent_id=AgentId("agent"),
        resources=Resources.scalar(cpus=0.1, mem=mem),
        container=spec or WasmSpec(module=module(name), time_limit=time_limit),
        args=args,
        env=env or {},
    )


class Reports:
    """Collects reports per task; ``end(t)`` waits for a task's TaskEnded."""

    def __init__(self) -> None:
        self.items: list[RuntimeReport] = []
        self._changed = asyncio.Event()

    def __call__(self, report: RuntimeReport) -> None:
        self.items.append(report)
        self._changed.set()

    def of(self, task_id: str) -> list[RuntimeReport]:
        return [r for r in self.items if r.task_id == task_id]

    async def _until(self, task_id: str, kind: type) -> RuntimeReport:
        async with asyncio.timeout(WAIT):
            while True:
                for r in self.of(task_id):
                    if isinstance(r, kind):
                        return r
                self._changed.clear()
                await self._changed.wait()

    async def started(self, task_id: str) -> None:
        await self._until(task_id, TaskStarted)

    async def end(self, task_id: str) -> TaskEnded:
        r = await self._until(task_id, TaskEnded)
        assert isinstance(r, TaskEnded)
        return r


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[WasmRuntime]:
    rt = WasmRuntime(tmp_path / "state", default_time_limit=30.0, threads=4)
    yield rt
    await rt.close()
    assert rt.running() == []


async def run(rt: WasmRuntime, t: TaskInfo, workdir: Path) -> tuple[TaskEnded, Reports]:
    reports = Reports()
    await rt.launch(t, workdir, reports)
    return await reports.end(t.task_id), reports


async def test_hello_finishes_and_writes_stdout(runtime: WasmRuntime, tmp_path: Path) -> None:
    ended, reports = await run(runtime, task("t1"), tmp_path / "t1")
    assert (ended.state, ended.reason, ended.exit_code) == (TaskState.FINISHED, Reason.COMMAND_EXITED, 0)
    assert reports.of("t1") == [TaskStarted(TaskId("t1")), ended]
    assert (tmp_path / "t1" / "stdout").read_text() == "hello from edgerm\n"
    assert await runtime.available()


async def test_nonzero_exit_fails_with_code_and_stderr(runtime: WasmRuntime, tmp_path: Path) -> None:
    ended, _ = await run(runtime, task("t", "exit3"), tmp_path / "t")
    assert (ended.state, ended.reason, ended.exit_code) == (TaskState.FAILED, Reason.COMMAND_EXITED, 3)
    assert ended.message == "exited with code 3; last stderr:\ngiving up with status 3"


async def test_trap_fails_with_the_trap_message(runtime: WasmRuntime, tmp_path: Path) -> None:
    ended, reports = await run(runtime, task("t", "trap"), tmp_path / "t")
    assert (ended.state, ended.reason) == (TaskState.FAILED, Reason.TRAP)
    assert ended.message == "wasm trap: wasm `unreachable` instruction executed"
    assert isinstance(reports.of("t")[0], TaskStarted)


async def test_argv_and_env_reach_the_module(runtime: WasmRuntime, tmp_path: Path) -> None:
    t = task("t", "echo", "a b", "c", env={"COLOR": "blue"})
    ended, _ = await run(runtime, t, tmp_path / "t")
    assert ended.state is TaskState.FINISHED
    assert (tmp_path / "t" / "stdout").read_text() == "echo\na b\nc\nCOLOR=blue\n"


async def test_time_limit_stops_a_runaway_loop(runtime: WasmRuntime, tmp_path: Path) -> None:
    began = time.monotonic()
    ended, reports = await run(runtime, task("t", "loop", time_limit=0.5), tmp_path / "t")
    took = time.monotonic() - began
    assert (ended.state, ended.reason) == (TaskState.FAILED, Reason.TIME_LIMIT)
    assert "0.5s" in ended.message
    assert isinstance(reports.of("t")[0], TaskStarted)
    assert 0.45 <= took < 5.0


async def test_kill_stops_only_the_killed_task(runtime: WasmRuntime, tmp_path: Path) -> None:
    reports = Reports()
    await runtime.launch(task("a", "loop"), tmp_path / "a", reports)
    await runtime.launch(task("b", "loop"), tmp_path / "b", reports)
    await reports.started("a")
    await reports.started("b")
    await runtime.kill(TaskId("a"), 3.0)  # returns once the thread let go
    assert [(r.state, r.reason) for r in reports.of("a") if isinstance(r, TaskEnded)] == [
        (TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK)
    ]
    # The other store saw the epoch tick too, and went on running: a whole
    # other task comes and goes meanwhile.
    ended, _ = await run(runtime, task("c"), tmp_path / "c")
    assert ended.state is TaskState.FINISHED
    assert runtime.running() == [TaskId("b")]
    assert not any(isinstance(r, TaskEnded) for r in reports.of("b"))
    await runtime.kill(TaskId("b"), 3.0)
    assert (await reports.end("b")).state is TaskState.KILLED
    await runtime.kill(TaskId("b"), 3.0)  # killing an ended task does nothing
    await runtime.kill(TaskId("never"), 3.0)
    assert len([r for r in reports.items if isinstance(r, TaskEnded)]) == 2


async def test_a_queued_task_killed_before_it_runs_never_starts(tmp_path: Path) -> None:
    rt = WasmRuntime(None, threads=1)
    try:
        reports = Reports()
        await rt.launch(task("busy", "loop"), tmp_path / "busy", reports)
        await reports.started("busy")
        await rt.launch(task("queued", "hello"), tmp_path / "queued", reports)
        kill = asyncio.create_task(rt.kill(TaskId("queued"), 0.2))
        await asyncio.sleep(0)  # the kill marks it before the only thread is free
        await rt.kill(TaskId("busy"), 3.0)
        await kill
        assert reports.of("queued") == [
            TaskEnded(TaskId("queued"), TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK, "killed")
        ]
        assert not (tmp_path / "queued" / "stdout").exists()
    finally:
        await rt.close()


@pytest.mark.parametrize(
    ("mem", "state", "reason", "code"),
    [
        (8, TaskState.FINISHED, Reason.COMMAND_EXITED, 0),  # 64 KiB + 4 MiB fits in 8 MiB
        (2, TaskState.FAILED, Reason.COMMAND_EXITED, 12),  # memory.grow refused: the module gives up
        (0.03, TaskState.FAILED, Reason.MEMORY_LIMIT, 0),  # not even its first 64 KiB page fits
    ],
)
async def test_memory_cap_comes_from_the_task_mem(
    runtime: WasmRuntime, tmp_path: Path, mem: float, state: TaskState, reason: Reason, code: int
) -> None:
    ended, _ = await run(runtime, task("t", "grow", mem=mem), tmp_path / "t")
    assert (ended.state, ended.reason, ended.exit_code) == (state, reason, code)
    if code == 12:
        assert ended.message.endswith("memory allocation failed")


async def test_compiled_modules_are_cached_in_memory_and_on_disk(tmp_path: Path) -> None:
    state = tmp_path / "state"
    rt = WasmRuntime(state)
    try:
        for i in range(3):
            ended, _ = await run(rt, task(f"t{i}"), tmp_path / f"t{i}")
            assert ended.state is TaskState.FINISHED
        assert (rt.compiled, rt.cache_hits, rt.deserialized) == (1, 2, 0)
    finally:
        await rt.close()
    sha = hashlib.sha256(module("hello")).hexdigest()
    assert (state / "modules" / f"{sha}.cwasm").is_file()
    # A restarted agent loads the compiled module instead of compiling it, even by hash alone.
    again = WasmRuntime(state)
    try:
        ended, _ = await run(again, task("r", spec=WasmSpec(module_sha256=sha)), tmp_path / "r")
        assert ended.state is TaskState.FINISHED
        assert (again.compiled, again.deserialized) == (0, 1)
    finally:
        await again.close()


async def test_a_module_named_by_hash_is_fetched_when_missing(tmp_path: Path) -> None:
    hello = module("hello")
    sha = hashlib.sha256(hello).hexdigest()
    asked: list[str] = []

    async def fetch(digest: str) -> bytes:
        asked.append(digest)
        if digest != sha:
            raise TransportError("no such module")
        return hello

    rt = WasmRuntime(None, fetch_module=fetch)
    try:
        ended, _ = await run(rt, task("t", spec=WasmSpec(module_sha256=sha)), tmp_path / "t")
        assert ended.state is TaskState.FINISHED and asked == [sha]
        ended, _ = await run(rt, task("t2", spec=WasmSpec(module_sha256=sha)), tmp_path / "t2")
        assert ended.state is TaskState.FINISHED and asked == [sha]  # cached now
        ended, _ = await run(rt, task("t3", spec=WasmSpec(module_sha256="0" * 64)), tmp_path / "t3")
        assert (ended.state, ended.reason) == (TaskState.FAILED, Reason.IMAGE_UNAVAILABLE)
        assert "no such module" in ended.message
    finally:
        await rt.close()
    lonely = WasmRuntime(None)
    try:
        ended, _ = await run(lonely, task("t", spec=WasmSpec(module_sha256=sha)), tmp_path / "x")
        assert (ended.state, ended.reason) == (TaskState.FAILED, Reason.IMAGE_UNAVAILABLE)
    finally:
        await lonely.close()


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        (WasmSpec(module=b"not wasm at all"), "not a valid WebAssembly module"),
        (WasmSpec(module=bytes(load_module(WASM_DIR / "hello.wat")), module_sha256="f" * 64), "do not match"),
        (WasmSpec(module=b"(module (memory 1))"), "no _start export"),
        (WasmSpec(module=b'(module (import "env" "nope" (func)))'), "cannot instantiate"),
    ],
)
async def test_bad_modules_are_invalid_tasks(runtime: WasmRuntime, tmp_path: Path, spec: WasmSpec, needle: str) -> None:
    ended, reports = await run(runtime, task("t", spec=spec), tmp_path / "t")
    assert (ended.state, ended.reason) == (TaskState.FAILED, Reason.INVALID_TASK)
    assert needle in ended.message
    assert reports.of("t") == [ended]  # never started


async def test_close_kills_running_tasks(tmp_path: Path) -> None:
    rt = WasmRuntime(None)
    reports = Reports()
    await rt.launch(task("a", "loop"), tmp_path / "a", reports)
    await reports.started("a")
    await rt.close()
    assert (await reports.end("a")).state is TaskState.KILLED
    late = Reports()
    await rt.launch(task("b"), tmp_path / "b", late)
    assert [(r.state, r.reason) for r in late.items if isinstance(r, TaskEnded)] == [
        (TaskState.FAILED, Reason.RUNTIME_ERROR)
    ]
    assert not await rt.available()


async def test_recover_finds_nothing_and_cleanup_forgets(runtime: WasmRuntime, tmp_path: Path) -> None:
    assert await runtime.recover(Reports()) == []
    await run(runtime, task("t"), tmp_path / "t")
    await runtime.cleanup(TaskId("t"))
    await runtime.cleanup(TaskId("t"))


def test_load_module_reads_wat_and_wasm(tmp_path: Path) -> None:
    binary = load_module(WASM_DIR / "hello.wat")
    assert binary.startswith(b"\0asm")
    (tmp_path / "hello.wasm").write_bytes(binary)
    assert load_module(tmp_path / "hello.wasm") == binary
