"""Device declarations: parsing the config form, and grants only for claimed devices."""

from __future__ import annotations

import pytest

from edgerm.agent.devices import (
    DeviceDeclaration,
    DeviceMismatch,
    DeviceNode,
    VolumeMount,
    env_name,
    grants_for,
)
from edgerm.errors import ConfigError
from edgerm.resources import Device, Resources

CAMERA = DeviceDeclaration(
    name="camera",
    handle="/dev/video0",
    docker_devices=(DeviceNode("/dev/video0", "", "rw"),),
    volumes=(VolumeMount("/var/lib/cam", "/calib", "ro"),),
    env={"CAMERA_FPS": "15"},
)
SENSOR = DeviceDeclaration(name="temperature", handle="sim:sine", shared=True, env={"UNITS": "C"})


def test_from_mapping_reads_strings_and_mappings() -> None:
    decl = DeviceDeclaration.from_mapping(
        "camera",
        {
            "handle": "/dev/video0",
            "shared": True,
            "docker_devices": ["/dev/video0", {"host": "/dev/video1", "container": "/dev/v1", "permissions": "r"}],
            "volumes": ["/var/lib/cam:/calib:ro", {"host": "/tmp/x", "container": "/x"}],
            "env": {"CAMERA_FPS": 15},
        },
    )
    assert decl.shared
    assert decl.docker_devices == (DeviceNode("/dev/video0"), DeviceNode("/dev/video1", "/dev/v1", "r"))
    assert [n.docker_form() for n in decl.docker_devices] == ["/dev/video0:/dev/video0:rwm", "/dev/video1:/dev/v1:r"]
    assert decl.volumes == (VolumeMount("/var/lib/cam", "/calib", "ro"), VolumeMount("/tmp/x", "/x", "rw"))
    assert decl.env == {"CAMERA_FPS": "15"}
    assert decl.resources() == Resources(devices={"camera": Device("/dev/video0", True)})


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({}, "handle"),
        ({"handle": "h", "colour": "red"}, "unknown field"),
        ({"handle": "h", "shared": "yes"}, "shared"),
        ({"handle": "h", "docker_devices": "/dev/x"}, "list"),
        ({"handle": "h", "docker_devices": ["dev/x"]}, "absolute"),
        ({"handle": "h", "docker_devices": ["/dev/x:/dev/y:rwx"]}, "permissions"),
        ({"handle": "h", "volumes": ["/a"]}, "host:container"),
        ({"handle": "h", "volumes": ["/a:/b:rx"]}, "mode"),
        ({"handle": "h", "env": ["A=1"]}, "env"),
        ({"handle": ""}, "empty"),
    ],
)
def test_bad_declarations_name_the_problem(data: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        DeviceDeclaration.from_mapping("camera", data)


def test_bad_device_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="resource name"):
        DeviceDeclaration(name="9 lives", handle="h")


def test_unclaimed_devices_give_nothing() -> None:
    assert grants_for(Resources.parse("cpus:1;mem:64"), [CAMERA, SENSOR]) == grants_for(Resources(), [])
    grants = grants_for(Resources.parse("cpus:1;temperature:device(sim:sine,shared)"), [CAMERA, SENSOR])
    assert grants.nodes == () and grants.volumes == ()
    assert dict(grants.env) == {"EDGERM_DEVICE_TEMPERATURE": "sim:sine", "UNITS": "C"}


def test_claimed_device_gives_its_nodes_volumes_and_env() -> None:
    grants = grants_for(Resources.parse("camera:device(/dev/video0)"), [CAMERA, SENSOR])
    assert grants.nodes == CAMERA.docker_devices
    assert grants.volumes == CAMERA.volumes
    assert dict(grants.env) == {"EDGERM_DEVICE_CAMERA": "/dev/video0", "CAMERA_FPS": "15"}


def test_undeclared_claimed_device_still_gets_its_handle() -> None:
    grants = grants_for(Resources.parse("gpu:device(nvidia0)"), [CAMERA])
    assert dict(grants.env) == {"EDGERM_DEVICE_GPU": "nvidia0"}


def test_claim_with_another_handle_is_refused() -> None:
    with pytest.raises(DeviceMismatch, match="video9"):
        grants_for(Resources.parse("camera:device(/dev/video9)"), [CAMERA])


def test_env_name() -> None:
    assert env_name("temp-sensor.1") == "EDGERM_DEVICE_TEMP_SENSOR_1"
