"""Fixtures of the data-plane tests: real brokers, a real DataflowRuntime, task builders.

``broker_url`` is parametrized over the embedded amqtt broker and a mosquitto
process (skipped where mosquitto is not installed; scripts/test.sh installs
it on CI). Every broker, runtime, watcher and process is stopped at teardown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from edgerm.agent.dataflow.runtime import DataflowRuntime
from edgerm.agent.runtime import RuntimeReport, TaskEnded, TaskStarted
from edgerm.agent.wasm import load_module
from edgerm.dataflow_ops import load_builtin
from edgerm.ids import AgentId, TaskId
from edgerm.model import TaskInfo, WasmSpec
from edgerm.resources import Resources
from tests.integration.agent.helpers import eventually
from tests.integration.dataflow_plane.brokers import Mosquitto, Watcher, embedded, mosquitto_binary

MODULES = Path(__file__).resolve().parent / "modules"
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "wasm"
DAG = "t"
AGENT = AgentId("agent-1")


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed (scripts/setup_mosquitto.sh installs it)")
    broker = Mosquitto(binary, tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto_url(tmp_path: Path) -> Iterator[str]:
    """A mosquitto of this test's own (sessions and retained messages start empty)."""
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed (scripts/setup_mosquitto.sh installs it)")
    broker = Mosquitto(binary, tmp_path)
    broker.start()
    try:
        yield broker.url
    finally:
        broker.stop()


@pytest.fixture(params=["embedded", "mosquitto"])
async def broker_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "mosquitto":
        yield request.getfixturevalue("mosquitto").url
        return
    async with embedded() as broker:
        yield broker.url


@pytest.fixture
async def amqtt_url() -> AsyncIterator[str]:
    """The embedded broker only (for tests whose point is not the broker)."""
    async with embedded() as broker:
        yield broker.url


@pytest.fixture
async def runtime() -> AsyncIterator[DataflowRuntime]:
    rt = DataflowRuntime(AGENT, threads=4, batch_time_limit=5.0)
    try:
        yield rt
    finally:
        await rt.close()
        assert rt.running() == []


@pytest.fixture
async def watcher_factory() -> AsyncIterator[list[Watcher]]:
    """A list to put started watchers in; they are closed at teardown."""
    started: list[Watcher] = []
    try:
        yield started
    finally:
        for w in started:
            await w.__aexit__(None, None, None)


async def watch(started: list[Watcher], url: str, *topics: str) -> Watcher:
    w = Watcher(url)
    await w.__aenter__()
    started.append(w)
    await w.subscribe(*topics)
    return w


def topic(operator: str) -> str:
    return f"edgerm/{DAG}/{operator}/out"


def stats_topic(operator: str, index: int = 0) -> str:
    return f"edgerm/{DAG}/{operator}/stats/{index}"


def df_task(
    task_id: str,
    operator: str,
    role: str,
    module: bytes | str,
    broker_url: str,
    *args: str,
    inputs: tuple[str, ...] = (),
    resources: str = "cpus:0.1;mem:32",
    **env: str,
) -> TaskInfo:
    """A dataflow operator task as the framework launches it (``module``: builtin name, or bytes)."""
    binary = load_builtin(module) if isinstance(module, str) else module
    full = {
        "EDGERM_DF_DAG": DAG,
        "EDGERM_DF_OPERATOR": operator,
        "EDGERM_DF_ROLE": role,
        "EDGERM_DF_OUT": topic(operator),
        "EDGERM_BROKER": broker_url,
        **env,
    }
    if inputs:
        full["EDGERM_DF_IN"] = ",".join(inputs)
    return TaskInfo(
        task_id=TaskId(task_id),
        name=operator,
        agent_id=AGENT,
        resources=Resources.parse(resources),
        container=WasmSpec(module=binary),
        args=args,
        env=full,
    )


def wat(name: str) -> bytes:
    """A test module from this directory's modules/ or examples/wasm/."""
    path = MODULES / f"{name}.wat"
    return load_module(path if path.exists() else EXAMPLES / f"{name}.wat")


class Reports:
    """Collects a runtime's reports; waits for a task's end."""

    def __init__(self) -> None:
        self.items: list[RuntimeReport] = []

    def __call__(self, report: RuntimeReport) -> None:
        self.items.append(report)

    def started(self, task_id: str) -> bool:
        return any(isinstance(r, TaskStarted) and r.task_id == task_id for r in self.items)

    def ended(self, task_id: str) -> TaskEnded | None:
        return next((r for r in self.items if isinstance(r, TaskEnded) and r.task_id == task_id), None)

    async def wait_end(self, task_id: str, within: float = 10.0) -> TaskEnded:
        await eventually(lambda: self.ended(task_id) is not None, within)
        end = self.ended(task_id)
        assert end is not None
        return end


@pytest.fixture
def reports() -> Reports:
    return Reports()
