"""DockerRuntime against an in-memory engine: the orderings a real engine produces only now and then.

``FakeEngine`` implements the runtime's ``Engine`` protocol with containers in
a dict and an events stream fed from a queue, and lets a test step in at the
racy moments: an exit before ``create_and_start`` returns, an exit while
``recover`` lists, a stream that drops while a task ends, a slow pull.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgerm.agent.docker import DockerRuntime
from edgerm.agent.docker_engine import (
    ContainerExists,
    ContainerGone,
    ContainerState,
    EngineEvent,
    ImageUnavailable,
    PullCallback,
)
from edgerm.agent.docker_spec import LABEL_AGENT, LABEL_TASK, ContainerSpec
from edgerm.agent.runtime import RecoveredTask, RuntimeReport, TaskEnded, TaskStarted
from edgerm.ids import AgentId, TaskId
from edgerm.model import DockerSpec, PullPolicy, Reason, TaskInfo, TaskState
from edgerm.resources import Resources

AGENT = AgentId("agent-fake")
IMAGE = "img:1"
WAIT = 10.0


@dataclass
class _Box:
    """One fake container."""

    id: str
    name: str
    labels: dict[str, str]
    status: str = "running"
    exit_code: int = 0
    oom: bool = False
    term_exit: int | None = 143  # exit code on SIGTERM; None: ignores it
    log: str = ""


class _Stream:
    def __init__(self, registry: list[_Stream]) -> None:
        self.queue: queue.Queue[EngineEvent | None] = queue.Queue()
        self._registry = registry

    def __iter__(self) -> Iterator[EngineEvent]:
        while True:
            event = self.queue.get()
            if event is None:
                self.queue.task_done()
                return
            yield event
            self.queue.task_done()  # the reader asks for the next one: this one was handed to the loop

    def drained(self) -> None:
        """Block until the reader has handed every queued event to the loop."""
        self.queue.join()

    def close(self) -> None:
        if self in self._registry:
            self._registry.remove(self)
        self.queue.put(None)


@dataclass
class FakeEngine:
    """An in-memory engine; hooks run in the calling (worker) thread."""

    images: set[str] = field(default_factory=lambda: {IMAGE})
    boxes: dict[str, _Box] = field(default_factory=dict)
    streams: list[_Stream] = field(default_factory=list)
    after_start: Callable[[_Box], None] | None = None
    after_list: Callable[[], None] | None = None
    pull_gate: threading.Event | None = None
    #: image -> recorded pull events replayed to the progress callback (the image is present afterwards)
    pullable: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    pull_event_delay: float = 0.0
    subscriptions: int = 0
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _clock: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # -- test controls ------------------------------------------------------

    def emit(self, box: _Box, action: str, exit_code: int | None = None) -> None:
        event = EngineEvent(action, box.id, TaskId(box.labels[LABEL_TASK]), exit_code, next(self._clock))
        for stream in list(self.streams):
            stream.queue.put(event)

    def exit(self, box: _Box, code: int, *, oom: bool = False, silent: bool = False) -> None:
        with self._lock:
            box.status, box.exit_code, box.oom = "exited", code, oom
        if not silent:
            if oom:
                self.emit(box, "oom")
            self.emit(box, "die", code)

    def drop_streams(self) -> None:
        for stream in list(self.streams):
            stream.close()

    def box_of(self, task_id: TaskId) -> _Box:
        return next(b for b in self.boxes.values() if b.labels[LABEL_TASK] == task_id)

    # -- the Engine protocol ------------------------------------------------

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        return None

    def ensure_image(self, image: str, policy: PullPolicy, progress: PullCallback | None = None) -> None:
        if self.pull_gate is not None:
            assert self.pull_gate.wait(WAIT)
        if image in self.pullable and (image not in self.images or policy is PullPolicy.ALWAYS):
            for event in self.pullable[image]:
                if progress is not None:
                    progress(event)
                if self.pull_event_delay:
                    time.sleep(self.pull_event_delay)  # the worker thread, as a slow registry would hold it
            self.images.add(image)
        if image not in self.images:
            raise ImageUnavailable(f"image {image!r} is not present and could not be pulled")

    def create_and_start(self, spec: ContainerSpec) -> str:
        with self._lock:
            if spec.image not in self.images:
                raise ImageUnavailable(f"no such image {spec.image}")
            for box in self.boxes.values():
                if box.name == spec.name:
                    raise ContainerExists("name in use", box.id)
            box = _Box(f"c{next(self._ids)}", spec.name, dict(spec.labels))
            self.boxes[box.id] = box
        self.emit(box, "start")
        if self.after_start is not None:
            self.after_start(box)
        return box.id

    def inspect(self, container_id: str) -> ContainerState:
        with self._lock:
            box = self.boxes.get(container_id)
            if box is None:
                raise ContainerGone(f"no such container {container_id}")
            return ContainerState(box.id, box.name, dict(box.labels), box.status, box.exit_code, box.oom)

    def signal(self, container_id: str, sig: str) -> bool:
        box = self.boxes.get(container_id)
        if box is None or box.status != "running":
            return False
        if sig == "SIGKILL":
            self.exit(box, 137)
        elif box.term_exit is not None:
            self.exit(box, box.term_exit)
        return True

    def logs_tail(self, container_id: str, lines: int) -> str:
        return "\n".join(self.boxes[container_id].log.splitlines()[-lines:])

    def logs(self, container_id: str, stream: str) -> bytes:
        box = self.boxes.get(container_id)
        if box is None:
            raise ContainerGone(f"no such container {container_id}")
        return box.log.encode() if stream == "stdout" else b""

    def remove(self, container_id: str) -> None:
        with self._lock:
            box = self.boxes.pop(container_id, None)
        if box is not None and box.status == "running":
            box.status = "exited"
            self.emit(box, "die", 137)

    def list_labelled(self, agent_id: AgentId) -> list[ContainerState]:
        found = [self.inspect(b.id) for b in list(self.boxes.values()) if b.labels[LABEL_AGENT] == agent_id]
        if self.after_list is not None:
            self.after_list()
        return found

    def remove_labelled(self, agent_id: AgentId) -> int:
        ids = [b.id for b in list(self.boxes.values()) if b.labels[LABEL_AGENT] == agent_id]
        for cid in ids:
            self.remove(cid)
        return len(ids)

    def events(self, agent_id: AgentId, since_nano: int | None = None) -> _Stream:
        stream = _Stream(self.streams)
        self.streams.append(stream)
        self.subscriptions += 1
        return stream


class Recorder:
    def __init__(self) -> None:
        self.reports: list[RuntimeReport] = []
        self.changed = asyncio.Event()

    def __call__(self, report: RuntimeReport) -> None:
        self.reports.append(report)
        self.changed.set()

    async def ended(self, task_id: TaskId) -> TaskEnded:
        async def first() -> TaskEnded:
            while True:
                for r in self.reports:
                    if isinstance(r, TaskEnded) and r.task_id == task_id:
                        return r
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(first(), WAIT)


def _task(name: str, image: str = IMAGE, pull: PullPolicy = PullPolicy.IF_NOT_PRESENT) -> TaskInfo:
    return TaskInfo(
        TaskId(name), name, AGENT, Resources.parse("cpus:0.1;mem:32"), DockerSpec(image=image, pull_policy=pull)
    )


@pytest.fixture
async def fake() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def runtime(fake: FakeEngine) -> DockerRuntime:
    rt = DockerRuntime(AGENT, engine=fake, mount_workdir=False)
    yield rt  # type: ignore[misc]
    await rt.close()


async def test_exit_before_create_returns_still_reports_started_then_ended(
    fake: FakeEngine, runtime: DockerRuntime
) -> None:
    fake.after_start = lambda box: fake.exit(box, 0)
    rec = Recorder()
    await runtime.launch(_task("quick"), Path("w"), rec)
    ended = await rec.ended(TaskId("quick"))
    assert rec.reports == [TaskStarted(TaskId("quick")), ended]
    assert ended.state is TaskState.FINISHED


async def test_failure_carries_the_log_tail(fake: FakeEngine, runtime: DockerRuntime) -> None:
    rec = Recorder()
    await runtime.launch(_task("bad"), Path("w"), rec)
    box = fake.box_of(TaskId("bad"))
    box.log = "starting\nboom: no config\n"
    fake.exit(box, 2)
    ended = await rec.ended(TaskId("bad"))
    assert (ended.state, ended.exit_code) == (TaskState.FAILED, 2)
    assert ended.message.endswith("last output:\nstarting\nboom: no config")


async def test_oom_event_makes_memory_limit(fake: FakeEngine, runtime: DockerRuntime) -> None:
    rec = Recorder()
    await runtime.launch(_task("hog"), Path("w"), rec)
    fake.exit(fake.box_of(TaskId("hog")), 137, oom=True)
    ended = await rec.ended(TaskId("hog"))
    assert (ended.state, ended.reason, ended.message) == (TaskState.FAILED, Reason.MEMORY_LIMIT, "memory limit")


async def test_kill_during_a_slow_pull_creates_nothing(fake: FakeEngine, runtime: DockerRuntime) -> None:
    fake.pull_gate = threading.Event()
    fake.images.clear()  # not present: the launch must pull
    rec = Recorder()
    launching = asyncio.ensure_future(runtime.launch(_task("slow"), Path("w"), rec))
    await asyncio.sleep(0)  # the launch registers the task, then waits in the pull
    killing = asyncio.ensure_future(runtime.kill(TaskId("slow"), 5.0))
    await asyncio.sleep(0)
    fake.images.add(IMAGE)  # the pull succeeds...
    fake.pull_gate.set()  # ...after the kill came in
    await asyncio.wait_for(asyncio.gather(launching, killing), WAIT)
    ended = await rec.ended(TaskId("slow"))
    assert ended.state is TaskState.KILLED
    assert rec.reports == [ended]  # never started
    assert fake.boxes == {}


async def test_kill_of_a_task_that_ignores_sigterm_forces_it(fake: FakeEngine, runtime: DockerRuntime) -> None:
    rec = Recorder()
    await runtime.launch(_task("stubborn"), Path("w"), rec)
    fake.box_of(TaskId("stubborn")).term_exit = None
    await runtime.kill(TaskId("stubborn"), 0.05)
    ended = await rec.ended(TaskId("stubborn"))
    assert (ended.state, ended.exit_code) == (TaskState.KILLED, 137)


async def test_kill_racing_a_natural_exit_reports_the_exit(fake: FakeEngine, runtime: DockerRuntime) -> None:
    rec = Recorder()
    await runtime.launch(_task("racer"), Path("w"), rec)
    fake.exit(fake.box_of(TaskId("racer")), 0, silent=True)  # exited; its die is still on the way
    await asyncio.wait_for(runtime.kill(TaskId("racer"), 5.0), WAIT)
    fake.emit(fake.box_of(TaskId("racer")), "die", 0)
    ended = await rec.ended(TaskId("racer"))
    assert ended.state is TaskState.FINISHED
    assert [type(r) for r in rec.reports] == [TaskStarted, TaskEnded]


async def test_missing_image_with_never_fails_without_a_pull(fake: FakeEngine, runtime: DockerRuntime) -> None:
    rec = Recorder()
    await runtime.launch(_task("nope", image="absent:1", pull=PullPolicy.NEVER), Path("w"), rec)
    ended = await rec.ended(TaskId("nope"))
    assert (ended.state, ended.reason) == (TaskState.FAILED, Reason.IMAGE_UNAVAILABLE)


async def test_die_while_recover_lists_goes_into_the_recovered_state(fake: FakeEngine) -> None:
    first = DockerRuntime(AGENT, engine=fake, mount_workdir=False)
    await first.launch(_task("a"), Path("w"), Recorder())
    await first.launch(_task("b"), Path("w"), Recorder())
    await first.close()

    def die_after_listing() -> None:  # listed as running, dies before recover() has looked at it
        fake.exit(fake.box_of(TaskId("a")), 5)
        for stream in list(fake.streams):
            stream.drained()

    fake.after_list = die_after_listing
    second = DockerRuntime(AGENT, engine=fake, mount_workdir=False)
    rec = Recorder()
    try:
        found = {r.task_id: r for r in await second.recover(rec)}
    finally:
        fake.after_list = None
    assert found[TaskId("a")].state is TaskState.FAILED
    assert found[TaskId("a")].exit_code == 5
    assert found[TaskId("b")] == RecoveredTask(TaskId("b"), TaskState.RUNNING)
    assert rec.reports == []  # the die went into the recovered state, not a report

    fake.exit(fake.box_of(TaskId("b")), 0)
    assert (await rec.ended(TaskId("b"))).state is TaskState.FINISHED
    await second.close()


async def test_an_end_missed_while_the_stream_was_down_is_found(fake: FakeEngine, runtime: DockerRuntime) -> None:
    rec = Recorder()
    await runtime.launch(_task("t"), Path("w"), rec)
    fake.exit(fake.box_of(TaskId("t")), 9, silent=True)  # the engine restarted and forgot the event
    fake.drop_streams()
    ended = await rec.ended(TaskId("t"))
    assert (ended.state, ended.exit_code) == (TaskState.FAILED, 9)
    assert fake.subscriptions == 2


async def test_leftover_created_container_is_replaced(fake: FakeEngine, runtime: DockerRuntime) -> None:
    rec = Recorder()
    await runtime.launch(_task("left"), Path("w"), rec)
    box = fake.box_of(TaskId("left"))
    await runtime.close()
    box.status = "created"  # as if the agent died between create and start

    again = DockerRuntime(AGENT, engine=fake, mount_workdir=False)
    rec2 = Recorder()
    await again.launch(_task("left"), Path("w"), rec2)
    assert rec2.reports == [TaskStarted(TaskId("left"))]
    assert box.id not in fake.boxes and len(fake.boxes) == 1
    await again.close()


async def test_cleanup_and_kill_all(fake: FakeEngine, runtime: DockerRuntime) -> None:
    rec = Recorder()
    for name in ("x", "y"):
        await runtime.launch(_task(name), Path("w"), rec)
    fake.exit(fake.box_of(TaskId("x")), 0)
    await rec.ended(TaskId("x"))
    await runtime.cleanup(TaskId("x"))
    assert len(fake.boxes) == 1

    assert await runtime.kill_all() == 1
    assert (await rec.ended(TaskId("y"))).state is TaskState.KILLED
    assert fake.boxes == {}


async def test_a_pull_reports_its_progress_at_most_once_a_second(fake: FakeEngine, runtime: DockerRuntime) -> None:
    from edgerm.agent.runtime import TaskProgress
    from tests.unit.agent.pull_events import TWO_LAYERS

    fake.pullable["big:1.0"] = TWO_LAYERS
    fake.pull_event_delay = 0.1  # about 2.4 s of pulling
    rec = Recorder()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await runtime.launch(_task("pulled", image="big:1.0"), Path("/tmp"), rec)

    async def running() -> bool:
        return any(isinstance(r, TaskStarted) for r in rec.reports)

    async with asyncio.timeout(WAIT):
        while not await running():
            rec.changed.clear()
            await rec.changed.wait()
    took = loop.time() - started
    progress = [r for r in rec.reports if isinstance(r, TaskProgress)]
    assert 2 <= len(progress) <= took + 1, (len(progress), took)
    assert progress[0].message.startswith("pulling big:1.0")
    assert any("layers" in p.message and "MB" in p.message for p in progress)
    first_started = next(i for i, r in enumerate(rec.reports) if isinstance(r, TaskStarted))
    assert all(i < first_started for i, r in enumerate(rec.reports) if isinstance(r, TaskProgress))
    assert runtime.pull_seconds.count("ok") == 1


async def test_read_log_slices_a_containers_output(fake: FakeEngine, runtime: DockerRuntime) -> None:
    rec = Recorder()
    await runtime.launch(_task("talk"), Path("/tmp"), rec)
    box = fake.box_of(TaskId("talk"))
    box.log = "one\ntwo\nthree\n"
    assert await runtime.read_log(TaskId("talk"), "stdout", 0, 100) == (0, b"one\ntwo\nthree\n", 14)
    assert await runtime.read_log(TaskId("talk"), "stdout", -6, 100) == (8, b"three\n", 14)
    assert await runtime.read_log(TaskId("talk"), "stdout", 4, 3) == (4, b"two", 14)
    assert await runtime.read_log(TaskId("talk"), "stdout", 99, 10) == (14, b"", 14)
    assert await runtime.read_log(TaskId("talk"), "stderr", 0, 10) == (0, b"", 0)
    assert await runtime.read_log(TaskId("other"), "stdout", 0, 10) is None
