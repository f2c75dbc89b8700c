"""RecordingDriver, the task builders and load_module: no sockets, no sleeps."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgerm import messages as m
from edgerm.errors import ConfigError, NotSubscribed, UnknownOffer
from edgerm.frameworks import (
    Framework,
    RecordingDriver,
    Stopped,
    docker_task,
    fits,
    load_module,
    supports,
    wasm_task,
)
from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId
from edgerm.model import DockerSpec, Filters, Network, Offer, PortMapping, TaskState, TaskStatus, WasmSpec
from edgerm.resources import Resources

HELLO_WAT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")))
"""


def offer(executors: frozenset[str] | str = frozenset({"wasm"})) -> Offer:
    return Offer(
        OfferId("o1"), FrameworkId("fw"), AgentId("a1"), "h", Resources.parse("cpus:1;mem:64"), {"executors": executors}
    )


async def test_recording_driver_records_internal_messages() -> None:
    d = RecordingDriver("fw")
    task = wasm_task(offer(), "t", b"\0asm\1\0\0\0")
    status = TaskStatus(TaskId("t1"), AgentId("a1"), TaskState.RUNNING, uuid="u")
    await d.accept([OfferId("o1")], [task])
    await d.decline([OfferId("o2")], refuse_seconds=9)
    await d.kill(TaskId("t1"))
    await d.acknowledge(status)
    await d.revive()
    await d.suppress()
    await d.reconcile([(TaskId("t1"), AgentId("a1"))])
    await d.stop(teardown=False)
    fid = FrameworkId("fw")
    assert d.calls == [
        m.Accept(fid, (OfferId("o1"),), (dataclasses.replace(task, framework_id=fid),), Filters()),
        m.Decline(fid, (OfferId("o2"),), Filters(9)),
        m.Kill(fid, TaskId("t1"), AgentId("")),
        m.Acknowledge(fid, AgentId("a1"), TaskId("t1"), "u"),
        m.Revive(fid),
        m.Suppress(fid),
        m.Reconcile(fid, ((TaskId("t1"), AgentId("a1")),)),
        Stopped(),
    ]
    assert d.stopped and d.of_type(m.Kill) == [m.Kill(fid, TaskId("t1"), AgentId(""))]


async def test_recording_driver_fails_on_demand_and_when_unsubscribed() -> None:
    d = RecordingDriver()
    d.fail_next(UnknownOffer("o1 is gone"))
    with pytest.raises(UnknownOffer, match="o1 is gone"):
        await d.accept([OfferId("o1")], [])
    await d.stop()
    assert d.calls == [m.Teardown(FrameworkId("framework-1"))]
    with pytest.raises(NotSubscribed):  # as a real driver after stop
        await d.revive()
    with pytest.raises(NotSubscribed):
        await RecordingDriver(None).revive()


async def test_default_callbacks_do_nothing() -> None:
    f, d = Framework(), RecordingDriver()
    await f.registered(d, FrameworkId("fw"), "m")
    await f.resource_offers(d, [offer()])
    await f.offer_rescinded(d, OfferId("o1"))
    await f.status_update(d, TaskStatus(TaskId("t"), AgentId("a"), TaskState.FINISHED, uuid="u"))
    await f.agent_lost(d, AgentId("a"))
    await f.error(d, "UNAVAILABLE", "x")
    await f.disconnected(d)
    assert d.calls == [] and Framework.auto_acknowledge


def test_wasm_task_from_bytes_and_files(tmp_path: Path) -> None:
    wat = tmp_path / "m.wat"
    wat.write_text(HELLO_WAT)
    binary = load_module(wat)
    assert binary.startswith(b"\0asm")
    wasm = tmp_path / "m.wasm"
    wasm.write_bytes(binary)
    assert load_module(wasm) == binary
    a = wasm_task(offer(), "a", wat, "cpus:0.2;mem:16", args=["x"], env={"K": "V"}, time_limit=2)
    b = wasm_task(offer(), "b", binary)
    assert a.task_id != b.task_id and len(a.task_id) == 32
    assert a.agent_id == "a1" and a.name == "a" and a.executor == "wasm"
    assert a.container == WasmSpec(module=binary, time_limit=2)
    assert a.resources == Resources.parse("cpus:0.2;mem:16") and b.resources == Resources.parse("cpus:0.1;mem:32")
    assert a.args == ("x",) and a.env == {"K": "V"} and b.env == {}


def test_docker_task() -> None:
    t = docker_task(offer(), "web", "busybox:1", args=["sleep", "1"], network=Network.HOST, ports=[PortMapping(1, 2)])
    assert t.container == DockerSpec("busybox:1", Network.HOST, (PortMapping(1, 2),))
    assert t.executor == "docker" and t.args == ("sleep", "1") and t.resources == Resources.parse("cpus:0.5;mem:128")
    with pytest.raises(ConfigError):
        docker_task(offer(), "web", "")


def test_load_module_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.wat: cannot read"):
        load_module(tmp_path / "missing.wat")
    bad = tmp_path / "bad.wat"
    bad.write_text("(module (func")
    with pytest.raises(ConfigError, match=r"bad\.wat: invalid WAT"):
        load_module(bad)
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(ConfigError, match="neither"):
        load_module(other)
    with pytest.raises(ValueError, match="bad resource"):
        wasm_task(offer(), "t", b"\0asm\1\0\0\0", resources="cpus=1")
    with pytest.raises(ConfigError, match="empty module"):
        wasm_task(offer(), "t", b"")


def test_supports_and_fits() -> None:
    assert supports(offer(), "wasm") and not supports(offer(), "docker")
    assert supports(offer("docker"), "docker")
    assert fits(offer(), "cpus:1;mem:64") and not fits(offer(), "cpus:1.5")
    assert fits(offer(), Resources.parse("mem:1"))
