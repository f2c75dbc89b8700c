"""Agent capacity, attributes and the lasting agent id."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from edgerm.agent.config import AgentConfig, ResourceCaps, parse_config
from edgerm.agent.resources import Measurement, build_agent_info, capacity, load_agent_id, measure
from edgerm.errors import ConfigError
from edgerm.ids import AgentId
from edgerm.resources import Device, Range, Resources

MEASURED = Measurement(cpus=4.0, mem=8192.0, disk=50_000.0)


def test_measure_reports_positive_whole_mib(tmp_path: Path) -> None:
    m = measure(tmp_path)
    assert m.cpus >= 1 and m.mem > 0 and m.disk >= 0
    assert m.mem == int(m.mem) and m.disk == int(m.disk)


def test_capacity_is_measured_when_uncapped() -> None:
    assert capacity(MEASURED, ResourceCaps()) == Resources.scalar(cpus=4, mem=8192, disk=50_000)


def test_caps_only_ever_lower(caplog: pytest.LogCaptureFixture) -> None:
    caps = ResourceCaps(cpus=2, mem=16_384, disk=1024, ports=(Range(8000, 8099),))
    res = capacity(MEASURED, caps)
    assert res.scalars == {"cpus": 2.0, "mem": 8192.0, "disk": 1024.0}  # mem stays at what is measured
    assert res.ranges == {"ports": (Range(8000, 8099),)}
    assert "resources.mem: configured 16384 is above the measured 8192" in caplog.text


def test_agent_info_has_devices_attributes_and_executors() -> None:
    config = parse_config(
        {
            "name": "edge-1",
            "heartbeat_interval": 0.5,
            "resources": {"cpus": 1},
            "attributes": {"domain": "lab", "room": "3"},
            "devices": [{"name": "temp", "handle": "sim:sine", "shared": True}, {"name": "cam", "handle": "/dev/v0"}],
        }
    )
    info = build_agent_info(AgentId("a1"), config, MEASURED, frozenset({"wasm"}))
    assert info.id == "a1" and info.hostname == "edge-1" and info.heartbeat_interval == 0.5
    assert info.resources.cpus == 1.0
    assert info.resources.devices == {"temp": Device("sim:sine", True), "cam": Device("/dev/v0", False)}
    assert info.attributes["executors"] == frozenset({"wasm"})
    assert info.attributes["os"] == platform.system().lower()
    assert info.attributes["arch"] == platform.machine()
    assert info.attributes["domain"] == "lab" and info.attributes["room"] == "3"


def test_hostname_defaults_to_the_machine() -> None:
    info = build_agent_info(AgentId("a1"), AgentConfig(), MEASURED, frozenset())
    assert info.hostname
    assert info.attributes["executors"] == frozenset()


def test_agent_id_is_created_once_and_kept(tmp_path: Path) -> None:
    work = tmp_path / "state"
    first = load_agent_id(work)
    assert len(first) == 32 and int(first, 16) >= 0
    assert (work / "agent_id").read_text().strip() == first
    assert load_agent_id(work) == first
    assert [p.name for p in work.iterdir()] == ["agent_id"]  # no temporary file left


def test_a_garbled_agent_id_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "agent_id").write_text("not an id!\n")
    with pytest.raises(ConfigError, match="not a valid agent id"):
        load_agent_id(tmp_path)
