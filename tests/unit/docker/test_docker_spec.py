"""The pure half of the Docker runtime: task -> container spec, and container end -> task state."""

from __future__ import annotations

import pytest

from edgerm.agent.devices import DeviceGrants, DeviceNode, VolumeMount
from edgerm.agent.docker_engine import _event, _split_image, _state
from edgerm.agent.docker_spec import (
    SANDBOX_PATH,
    InvalidDockerTask,
    build_spec,
    classify_exit,
    container_name,
    tail_text,
)
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.model import DockerSpec, Network, PortMapping, Reason, TaskInfo, TaskState, WasmSpec
from edgerm.resources import Resources

AGENT = AgentId("agent-1")


def _task(
    resources: str = "cpus:0.5;mem:64",
    *,
    network: Network = Network.BRIDGE,
    ports: tuple[PortMapping, ...] = (),
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = ("sh", "-c", "echo hi"),
) -> TaskInfo:
    return TaskInfo(
        task_id=TaskId("t-1"),
        name="t",
        agent_id=AGENT,
        resources=Resources.parse(resources),
        container=DockerSpec(image="busybox:1", network=network, port_mappings=ports),
        args=args,
        env=env or {},
        framework_id=FrameworkId("fw-1"),
    )


def test_limits_follow_the_resources_and_forbid_swap() -> None:
    spec = build_spec(AGENT, _task("cpus:0.25;mem:100"), DeviceGrants())
    host = spec.host_config_kwargs()
    assert host["nano_cpus"] == 250_000_000
    assert host["mem_limit"] == 100 * 1024 * 1024
    assert host["memswap_limit"] == host["mem_limit"]


def test_no_scalars_no_limits() -> None:
    host = build_spec(AGENT, _task("disk:10"), DeviceGrants()).host_config_kwargs()
    assert "nano_cpus" not in host and "mem_limit" not in host and "memswap_limit" not in host


def test_labels_name_command_and_network() -> None:
    spec = build_spec(AGENT, _task(network=Network.HOST), DeviceGrants())
    create = spec.create_container_kwargs()
    assert create["labels"] == {"edgerm.agent": "agent-1", "edgerm.framework": "fw-1", "edgerm.task": "t-1"}
    assert create["command"] == ["sh", "-c", "echo hi"]
    assert create["name"] == container_name(AGENT, TaskId("t-1"))
    assert spec.host_config_kwargs()["network_mode"] == "host"


def test_no_args_means_the_image_command() -> None:
    assert "command" not in build_spec(AGENT, _task(args=()), DeviceGrants()).create_container_kwargs()


def test_container_names_are_safe_and_distinct_per_agent() -> None:
    a = container_name(AgentId("a"), TaskId("weird task/id:1"))
    b = container_name(AgentId("b"), TaskId("weird task/id:1"))
    assert a != b
    assert a.startswith("edgerm-weird_task_id_1-")
    assert all(c.isalnum() or c in "_.-" for c in a)


def test_env_order_task_then_devices_win() -> None:
    grants = DeviceGrants(env={"MODE": "device", "EDGERM_DEVICE_CAM": "/dev/video0"})
    spec = build_spec(AGENT, _task(env={"MODE": "task", "OTHER": "x"}), grants, sandbox="/work/t-1")
    assert spec.env["MODE"] == "device"
    assert spec.env["OTHER"] == "x"
    assert spec.env["EDGERM_TASK_ID"] == "t-1"
    assert spec.env["EDGERM_SANDBOX"] == SANDBOX_PATH
    assert spec.host_config_kwargs()["binds"] == {"/work/t-1": {"bind": SANDBOX_PATH, "mode": "rw"}}


def test_device_nodes_and_volumes_are_passed() -> None:
    grants = DeviceGrants(
        nodes=(DeviceNode("/dev/video0", "", "rw"),), volumes=(VolumeMount("/var/cam", "/cam", "ro"),)
    )
    spec = build_spec(AGENT, _task(), grants)
    host = spec.host_config_kwargs()
    assert host["devices"] == ["/dev/video0:/dev/video0:rw"]
    assert host["binds"] == {"/var/cam": {"bind": "/cam", "mode": "ro"}}
    assert spec.create_container_kwargs()["volumes"] == ["/cam"]


def test_ports_within_the_ports_resource_are_mapped() -> None:
    task = _task("cpus:1;ports:[8000-8010]", ports=(PortMapping(8005, 80), PortMapping(8006, 53, "udp")))
    spec = build_spec(AGENT, task, DeviceGrants(), host_ip="127.0.0.1")
    assert spec.host_config_kwargs()["port_bindings"] == {"80/tcp": ("127.0.0.1", 8005), "53/udp": ("127.0.0.1", 8006)}
    assert spec.create_container_kwargs()["ports"] == [(80, "tcp"), (53, "udp")]


@pytest.mark.parametrize(
    ("resources", "network", "mapping", "needle"),
    [
        ("cpus:1;ports:[8000-8010]", Network.BRIDGE, PortMapping(9000, 80), "9000"),
        ("cpus:1", Network.BRIDGE, PortMapping(8000, 80), "8000"),
        ("cpus:1;ports:[8000-8010]", Network.HOST, PortMapping(8000, 80), "bridge"),
        ("cpus:1;ports:[8000-8010]", Network.BRIDGE, PortMapping(8000, 80, "sctp"), "sctp"),
        ("cpus:1;ports:[8000-8010]", Network.BRIDGE, PortMapping(8000, 0), "container port"),
    ],
)
def test_bad_port_mappings_are_refused(resources: str, network: Network, mapping: PortMapping, needle: str) -> None:
    with pytest.raises(InvalidDockerTask, match=needle):
        build_spec(AGENT, _task(resources, network=network, ports=(mapping,)), DeviceGrants())


def test_a_wasm_task_is_not_a_docker_task() -> None:
    task = TaskInfo(TaskId("w"), "w", AGENT, Resources.parse("cpus:1"), WasmSpec(module=b"\0asm"))
    with pytest.raises(InvalidDockerTask):
        build_spec(AGENT, task, DeviceGrants())


@pytest.mark.parametrize(
    ("code", "oom", "killed", "state", "reason"),
    [
        (0, False, False, TaskState.FINISHED, Reason.COMMAND_EXITED),
        (3, False, False, TaskState.FAILED, Reason.COMMAND_EXITED),
        (137, True, False, TaskState.FAILED, Reason.MEMORY_LIMIT),
        (137, True, True, TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK),
        (0, False, True, TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK),
    ],
)
def test_classify_exit(code: int, oom: bool, killed: bool, state: TaskState, reason: Reason) -> None:
    outcome = classify_exit(code, oom=oom, killed=killed)
    assert (outcome.state, outcome.reason, outcome.exit_code) == (state, reason, code)


def test_failure_message_carries_exit_code_and_log_tail() -> None:
    outcome = classify_exit(3, oom=False, killed=False, log_tail="a\nb\n")
    assert outcome.message == "exited with code 3; last output:\na\nb"
    assert classify_exit(137, oom=True, killed=False).message == "memory limit"
    assert "SIGKILL" in classify_exit(137, oom=False, killed=False).message


def test_tail_text_keeps_the_last_lines_within_bounds() -> None:
    raw = b"".join(f"line {i}\n".encode() for i in range(100))
    assert tail_text(raw, 2) == "line 98\nline 99"
    assert tail_text(b"\xff\xfeok\n", 5) == "\ufffd\ufffdok"
    assert len(tail_text(b"x" * 5000, 1, max_chars=100)) == 100


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("busybox", ("busybox", "latest")),
        ("busybox:1.36", ("busybox", "1.36")),
        ("registry:5000/team/app", ("registry:5000/team/app", "latest")),
        ("registry:5000/team/app:v2", ("registry:5000/team/app", "v2")),
        ("app@sha256:abc", ("app@sha256:abc", None)),
    ],
)
def test_split_image(image: str, expected: tuple[str, str | None]) -> None:
    assert _split_image(image) == expected


def test_engine_events_are_read_from_the_stream_format() -> None:
    raw = {
        "Type": "container",
        "Action": "die",
        "Actor": {"ID": "abc", "Attributes": {"edgerm.task": "t-1", "exitCode": "3"}},
        "timeNano": 1700000000123456789,
    }
    event = _event(raw)
    assert event is not None
    assert (event.action, event.container_id, event.task_id, event.exit_code) == ("die", "abc", "t-1", 3)
    assert _event({**raw, "Action": "exec_start"}) is None
    assert _event({**raw, "Type": "network"}) is None
    assert _event({**raw, "Actor": {"ID": "abc", "Attributes": {}}}) is None  # not one of ours


def test_inspect_output_is_read_into_container_state() -> None:
    state = _state(
        {
            "Id": "abc",
            "Name": "/edgerm-t-1-x",
            "Config": {"Labels": {"edgerm.task": "t-1"}},
            "State": {"Status": "exited", "ExitCode": 137, "OOMKilled": True},
        }
    )
    assert (state.name, state.task_id, state.live, state.exit_code, state.oom_killed) == (
        "edgerm-t-1-x",
        "t-1",
        False,
        137,
        True,
    )
