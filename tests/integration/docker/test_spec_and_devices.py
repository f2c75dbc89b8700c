"""What a container gets: limits, labels, network and ports (seen in `docker inspect`); devices only when claimed."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import docker
import pytest

from edgerm.agent.devices import DeviceDeclaration, DeviceNode, VolumeMount
from edgerm.agent.docker_spec import container_name
from edgerm.model import Network, PortMapping, Reason, TaskState

pytestmark = pytest.mark.docker


def _inspect(name: str) -> dict[str, Any]:
    client = docker.from_env()
    try:
        attrs: dict[str, Any] = client.api.inspect_container(name)
        return attrs
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_limits_labels_and_ports_are_set(agent: Any, recorder: Any, tmp_path: Path) -> None:
    port = _free_port()
    task = agent.task(
        "limits",
        ("sleep", "600"),
        f"cpus:0.5;mem:64;ports:[{port}-{port}]",
        ports=(PortMapping(host_port=port, container_port=8080),),
    )
    await agent.runtime.launch(task, tmp_path, recorder)
    await recorder.started(task.task_id)

    attrs = await asyncio.to_thread(_inspect, container_name(agent.agent_id, task.task_id))
    host = attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 64 * 1024 * 1024
    assert host["MemorySwap"] == host["Memory"]  # no swap
    assert host["NetworkMode"] == "bridge"
    assert host["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    labels = attrs["Config"]["Labels"]
    assert labels["edgerm.agent"] == agent.agent_id
    assert labels["edgerm.framework"] == "fw-test"
    assert labels["edgerm.task"] == task.task_id

    await agent.runtime.kill(task.task_id, 0.0)
    assert (await recorder.ended(task.task_id)).state is TaskState.KILLED


@pytest.mark.parametrize(("network", "mode"), [(Network.NONE, "none"), (Network.HOST, "host")])
async def test_network_mode_follows_the_task(
    agent: Any, recorder: Any, tmp_path: Path, network: Network, mode: str
) -> None:
    task = agent.task(f"net-{mode}", ("true",), network=network)
    await agent.runtime.launch(task, tmp_path, recorder)
    assert (await recorder.ended(task.task_id)).state is TaskState.FINISHED

    attrs = await asyncio.to_thread(_inspect, container_name(agent.agent_id, task.task_id))
    assert attrs["HostConfig"]["NetworkMode"] == mode


async def test_host_port_outside_the_ports_resource_is_refused(agent: Any, recorder: Any, tmp_path: Path) -> None:
    task = agent.task("badport", ("true",), "cpus:0.1;mem:32;ports:[31000-31000]", ports=(PortMapping(31001, 8080),))
    await agent.runtime.launch(task, tmp_path, recorder)
    ended = await recorder.ended(task.task_id)
    assert ended.state is TaskState.FAILED
    assert ended.reason is Reason.INVALID_TASK
    assert "31001" in ended.message


# A shell check run inside the container: prints what it sees, exits 0 only if it matches.
HAS_DEVICE = """
test -c /dev/edgerm-sensor || { echo "no device node"; exit 10; }
test "$(cat /data/calibration)" = "gain=3" || { echo "no volume"; exit 11; }
touch /data/x 2>/dev/null && { echo "volume is writable"; exit 12; }
test "$SENSOR_RATE" = 50 || { echo "no device env"; exit 13; }
test "$EDGERM_DEVICE_SENSOR" = sim0 || { echo "no handle env"; exit 14; }
"""
HAS_NOTHING = """
test -e /dev/edgerm-sensor && { echo "device node leaked"; exit 20; }
test -e /data && { echo "volume leaked"; exit 21; }
test -n "$SENSOR_RATE" && { echo "device env leaked"; exit 22; }
test -n "$EDGERM_DEVICE_SENSOR" && { echo "handle leaked"; exit 23; }
exit 0
"""


async def test_device_goes_only_to_the_task_that_claimed_it(agent: Any, recorder: Any, tmp_path: Path) -> None:
    calibration = tmp_path / "calibration-data"
    calibration.mkdir()
    (calibration / "calibration").write_text("gain=3\n")
    sensor = DeviceDeclaration(
        name="sensor",
        handle="sim0",
        docker_devices=(DeviceNode("/dev/null", "/dev/edgerm-sensor", "rw"),),
        volumes=(VolumeMount(str(calibration), "/data", "ro"),),
        env={"SENSOR_RATE": "50"},
    )
    runtime = agent.new_runtime(devices=[sensor])
    work = tmp_path / "work"

    claims = agent.task("claims", ("sh", "-c", HAS_DEVICE), "cpus:0.1;mem:32;sensor:device(sim0)")
    other = agent.task("other", ("sh", "-c", HAS_NOTHING), "cpus:0.1;mem:32")
    await runtime.launch(claims, work / "a", recorder)
    await runtime.launch(other, work / "b", recorder)

    got = await recorder.ended(claims.task_id)
    assert got.state is TaskState.FINISHED, got.message
    not_got = await recorder.ended(other.task_id)
    assert not_got.state is TaskState.FINISHED, not_got.message


async def test_device_claimed_with_another_handle_is_refused(agent: Any, recorder: Any, tmp_path: Path) -> None:
    runtime = agent.new_runtime(devices=[DeviceDeclaration(name="sensor", handle="sim0")])
    task = agent.task("wrong", ("true",), "cpus:0.1;mem:32;sensor:device(sim9)")
    await runtime.launch(task, tmp_path, recorder)
    ended = await recorder.ended(task.task_id)
    assert ended.state is TaskState.FAILED
    assert ended.reason is Reason.INVALID_TASK
    assert "sim9" in ended.message
