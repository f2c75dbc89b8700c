"""The hello example's framework class, driven through RecordingDriver."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from edgerm import messages as m
from edgerm.errors import UnknownOffer
from edgerm.frameworks import RecordingDriver
from edgerm.ids import AgentId, FrameworkId, OfferId
from edgerm.model import Offer, TaskState, TaskStatus
from edgerm.resources import Resources

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "hello_framework.py"
MODULE = b"\0asm\1\0\0\0"


@pytest.fixture(scope="module")
def hello() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hello_framework", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def offer(n: int, res: str = "cpus:0.25;mem:512", executors: str = "wasm") -> Offer:
    return Offer(
        OfferId(f"o{n}"),
        FrameworkId("fw"),
        AgentId(f"agent{n}-long-id"),
        "h",
        Resources.parse(res),
        {"executors": frozenset({executors})},
    )


def update(task: m.Accept, i: int, state: TaskState) -> TaskStatus:
    t = task.tasks[i]
    return TaskStatus(t.task_id, t.agent_id, state, uuid=f"{t.task_id}-{state.value}")


async def test_packs_tasks_into_offers_and_stops_when_all_finished(
    hello: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    fw, d = hello.Hello(3, MODULE), RecordingDriver()
    await fw.resource_offers(d, [offer(1), offer(2, executors="docker"), offer(3)])
    accepts = d.of_type(m.Accept)
    assert [a.offer_ids for a in accepts] == [(OfferId("o1"),), (OfferId("o3"),)]
    assert [[t.name for t in a.tasks] for a in accepts] == [["hello-1", "hello-2"], ["hello-3"]]
    assert d.of_type(m.Decline) == [m.Decline(FrameworkId("framework-1"), (OfferId("o2"),), m.Filters(60))]
    assert d.calls[-1] == m.Suppress(FrameworkId("framework-1"))
    for a, i in [(accepts[0], 0), (accepts[0], 1), (accepts[1], 0)]:
        await fw.status_update(d, update(a, i, TaskState.RUNNING))
        await fw.status_update(d, update(a, i, TaskState.FINISHED))
    assert d.stopped and d.calls[-1] == m.Teardown(FrameworkId("framework-1"))
    assert fw.all_finished
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "task hello-1 on agent agent1-l: RUNNING"
    assert out[-1] == "task hello-3 on agent agent3-l: FINISHED" and len(out) == 6


async def test_failure_is_reported_and_lost_offer_is_retried(hello: ModuleType) -> None:
    fw, d = hello.Hello(2, MODULE), RecordingDriver()
    d.fail_next(UnknownOffer("rescinded"))
    await fw.resource_offers(d, [offer(1)])
    assert d.calls == [] and fw.waiting == ["hello-1", "hello-2"]
    await fw.resource_offers(d, [offer(2, "cpus:0.1;mem:32")])  # room for one
    assert [t.name for t in d.of_type(m.Accept)[0].tasks] == ["hello-1"]
    assert m.Suppress(FrameworkId("framework-1")) not in d.calls
    await fw.resource_offers(d, [offer(3)])
    first, second = d.of_type(m.Accept)
    await fw.status_update(d, update(first, 0, TaskState.FAILED))
    assert not d.stopped
    await fw.status_update(d, update(second, 0, TaskState.FINISHED))
    await fw.status_update(d, update(second, 0, TaskState.FINISHED))  # redelivered: idempotent
    assert d.stopped and not fw.all_finished
    assert d.of_type(m.Teardown) == [m.Teardown(FrameworkId("framework-1"))]
