"""Agent config: strict validation with key paths, defaults, precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgerm.agent.config import (
    DEFAULT_MASTER,
    AgentConfig,
    ResourceCaps,
    WasmLimits,
    default_work_dir,
    load_config,
    parse_config,
    resolve_master,
)
from edgerm.errors import ConfigError
from edgerm.resources import Range

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "agent.yaml"


def test_max_pending_updates_is_read() -> None:
    assert parse_config({"max_pending_updates": 64}).max_pending_updates == 64


def test_empty_config_gives_defaults() -> None:
    config = parse_config({})
    assert config == AgentConfig()
    assert config.heartbeat_interval == 1.0
    assert config.executors is None
    assert config.wasm == WasmLimits(time_limit=60.0, memory=64.0, threads=32)


def test_full_config_parses() -> None:
    config = parse_config(
        {
            "name": "pi-kitchen",
            "master": "http://10.0.0.1:5050/",
            "work_dir": "~/edgerm",
            "heartbeat_interval": 2,
            "resources": {"cpus": 1.5, "mem": 512, "disk": 1024, "ports": ["8000-8010", 9000]},
            "attributes": {"domain": "home", "room": "kitchen"},
            "devices": [
                {"name": "temperature", "handle": "sim:sine", "shared": True},
                {
                    "name": "camera",
                    "handle": "/dev/video0",
                    "docker_devices": ["/dev/video0"],
                    "volumes": ["/run/cam:/data:ro"],
                    "env": {"FPS": "15"},
                },
            ],
            "executors": ["wasm"],
            "wasm": {"time_limit": 5, "memory": 16, "threads": 4},
        }
    )
    assert config.name == "pi-kitchen"
    assert config.master == "http://10.0.0.1:5050"
    assert config.work_dir == Path.home() / "edgerm"
    assert config.heartbeat_interval == 2.0
    assert config.resources == ResourceCaps(1.5, 512.0, 1024.0, (Range(8000, 8010), Range(9000, 9000)))
    assert config.attributes == {"domain": "home", "room": "kitchen"}
    assert [d.name for d in config.devices] == ["temperature", "camera"]
    assert config.devices[0].shared and not config.devices[1].shared
    assert config.devices[1].volumes[0].mode == "ro"
    assert config.devices[1].env == {"FPS": "15"}
    assert config.executors == frozenset({"wasm"})
    assert config.wasm == WasmLimits(5.0, 16.0, 4)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "(top level): expected a mapping"),
        ({"nmae": "x"}, "nmae: unknown key"),
        ({"name": 3}, "name: expected a string"),
        ({"master": "10.0.0.1:5050"}, "master: expected a URL"),
        ({"master": "ftp://host"}, "master: expected a URL"),
        ({"heartbeat_interval": 0}, "heartbeat_interval: expected a number > 0"),
        ({"heartbeat_interval": "1s"}, "heartbeat_interval: expected a number > 0"),
        ({"heartbeat_interval": True}, "heartbeat_interval: expected a number > 0"),
        ({"resources": {"cpu": 1}}, "resources.cpu: unknown key"),
        ({"resources": {"mem": -1}}, "resources.mem: expected a number > 0"),
        ({"resources": {"ports": "8000-8100"}}, "resources.ports: expected a list"),
        ({"resources": {"ports": ["9000-8000"]}}, "resources.ports[0]: expected ports between 1 and 65535"),
        ({"resources": {"ports": [80, "x"]}}, "resources.ports[1]: expected a port or a range"),
        ({"attributes": {"floor": 2}}, "attributes.floor: expected a string (quote numbers)"),
        ({"attributes": {"os": "plan9"}}, "attributes.os: set by the agent itself"),
        ({"attributes": {"bad name": "x"}}, "attributes.bad name: not a valid attribute name"),
        ({"devices": {"camera": {}}}, "devices: expected a list"),
        ({"devices": ["camera"]}, "devices[0]: expected a mapping"),
        ({"devices": [{"handle": "/dev/x"}]}, "devices[0].name: required"),
        (
            {"devices": [{"name": "a", "handle": "h"}, {"name": "b", "handle": 5}]},
            "devices[1].handle: expected a string",
        ),
        ({"devices": [{"name": "a"}]}, "devices[0].handle: required"),
        ({"devices": [{"name": "a", "handle": "h", "shared": "yes"}]}, "devices[0].shared: expected true or false"),
        ({"devices": [{"name": "a", "handle": "h", "color": "red"}]}, "devices[0].color: unknown key"),
        ({"devices": [{"name": "a", "handle": "h", "env": {"N": 1}}]}, "devices[0].env.N: expected a string"),
        ({"devices": [{"name": "a", "handle": "h", "volumes": "/a:/b"}]}, "devices[0].volumes: expected a list"),
        ({"devices": [{"name": "a", "handle": "h", "volumes": ["/a"]}]}, "devices[0]: device 'a': volume"),
        ({"devices": [{"name": "a", "handle": "h"}, {"name": "a", "handle": "h"}]}, "devices[1].name: device 'a'"),
        ({"executors": "wasm"}, "executors: expected a list"),
        ({"executors": ["wasm", "jvm"]}, "executors[1]: unknown executor 'jvm'"),
        ({"wasm": {"memory": 0}}, "wasm.memory: expected a number > 0"),
        ({"wasm": {"threads": 1.5}}, "wasm.threads: expected a whole number"),
        ({"wasm": {"fuel": 1}}, "wasm.fuel: unknown key"),
        ({"wasm": {"time_limit": float("inf")}}, "wasm.time_limit: expected a number > 0"),
        ({"max_pending_updates": 1}, "max_pending_updates: expected a whole number from 2"),
        ({"max_pending_updates": True}, "max_pending_updates: expected a whole number from 2"),
    ],
)
def test_bad_configs_name_the_key_path(data: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value).startswith(message), str(info.value)


def test_load_config_reads_yaml_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("name: edge-1\nheartbeat_interval: 0.5\n")
    assert load_config(path) == AgentConfig(name="edge-1", heartbeat_interval=0.5)
    path.write_text("devices:\n  - name: cam\n    handle: [1]\n")
    with pytest.raises(ConfigError, match=r"agent.yaml: devices\[0\].handle: expected a string"):
        load_config(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == AgentConfig()


def test_example_config_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.master.startswith("http")
    assert config.devices and config.attributes.get("domain")


def test_master_precedence_flag_env_config_default() -> None:
    config = AgentConfig(master="http://config:1")
    env = {"EDGERM_MASTER": "http://env:2"}
    assert resolve_master("http://flag:3", env, config) == "http://flag:3"
    assert resolve_master(None, env, config) == "http://env:2"
    assert resolve_master(None, {}, config) == "http://config:1"
    assert resolve_master(None, {}, AgentConfig()) == DEFAULT_MASTER
    with pytest.raises(ConfigError, match="EDGERM_MASTER: expected a URL"):
        resolve_master(None, {"EDGERM_MASTER": "nowhere"}, config)


def test_flags_override_the_config() -> None:
    config = AgentConfig(name="a", work_dir=Path("/x"))
    assert config.with_overrides() == config
    out = config.with_overrides(name="b", work_dir=Path("/y"), master="http://m:1")
    assert (out.name, out.work_dir, out.master) == ("b", Path("/y"), "http://m:1")
    with pytest.raises(ConfigError, match="--master"):
        config.with_overrides(master="m:1")


def test_default_work_dir_follows_xdg() -> None:
    assert default_work_dir({"XDG_STATE_HOME": "/state"}) == Path("/state/edgerm-agent")
    assert default_work_dir({}) == Path.home() / ".local" / "state" / "edgerm-agent"
