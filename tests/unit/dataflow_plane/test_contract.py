"""The EDGERM_DF_* env contract: parsing, defaults, errors that name the key, topics, broker hand-off."""

from __future__ import annotations

import pytest

from edgerm.agent.dataflow.contract import (
    Broker,
    OperatorConfig,
    Role,
    SinkKind,
    SinkSpec,
    parse_broker,
    parse_operator,
    parse_sink,
    resolve_device,
    with_broker,
)
from edgerm.dataflow_keys import BROKER, out_topic, stats_topic
from edgerm.errors import ConfigError
from edgerm.ids import AgentId, TaskId
from edgerm.model import TaskInfo, WasmSpec
from edgerm.resources import Resources

BASE = {
    "EDGERM_DF_DAG": "temps",
    "EDGERM_DF_OPERATOR": "f2c",
    "EDGERM_DF_ROLE": "operator",
    "EDGERM_DF_IN": "edgerm/temps/read/out, edgerm/temps/other/out",
    "EDGERM_DF_OUT": "edgerm/temps/f2c/out",
    "EDGERM_BROKER": "mqtt://10.0.0.5:1884",
}


def test_an_operator_with_defaults() -> None:
    config = parse_operator(BASE)
    assert config == OperatorConfig(
        dag="temps",
        operator="f2c",
        role=Role.OPERATOR,
        output="edgerm/temps/f2c/out",
        broker=Broker("10.0.0.5", 1884),
        inputs=("edgerm/temps/read/out", "edgerm/temps/other/out"),
    )
    assert (config.index, config.replicas, config.period, config.batch, config.batch_ms, config.queue) == (
        0,
        1,
        0.1,
        1000,
        50.0,
        64,
    )
    assert config.stats_topic == "edgerm/temps/f2c/stats/0"


def test_a_source_and_a_sink_with_every_key() -> None:
    source = parse_operator(
        {
            **BASE,
            "EDGERM_DF_ROLE": "source",
            "EDGERM_DF_IN": "",
            "EDGERM_DF_OPERATOR": "read",
            "EDGERM_DF_REPLICA": "2/3",
            "EDGERM_DF_DEVICE": "temperature",
            "EDGERM_DF_PERIOD": "0.5",
            "EDGERM_DF_BATCH": "10",
            "EDGERM_DF_BATCH_MS": "0",
            "EDGERM_DF_QUEUE": "4",
        }
    )
    assert (source.role, source.inputs, source.index, source.replicas, source.device) == (
        Role.SOURCE,
        (),
        2,
        3,
        "temperature",
    )
    assert (source.period, source.batch, source.batch_ms, source.queue, source.source_id) == (0.5, 10, 0.0, 4, "read.2")
    sink = parse_operator({**BASE, "EDGERM_DF_ROLE": "sink", "EDGERM_DF_SINK": "file:/var/log/temps"})
    assert sink.sink == SinkSpec(SinkKind.FILE, "/var/log/temps")
    assert parse_operator({**BASE, "EDGERM_DF_ROLE": "sink"}).sink == SinkSpec()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"EDGERM_DF_ROLE": "middle"}, "EDGERM_DF_ROLE: 'middle'"),
        ({"EDGERM_DF_DAG": ""}, "EDGERM_DF_DAG: missing"),
        ({"EDGERM_DF_DAG": "a/b"}, "EDGERM_DF_DAG: 'a/b'"),
        ({"EDGERM_DF_OPERATOR": "x y"}, "EDGERM_DF_OPERATOR"),
        ({"EDGERM_DF_OUT": "edgerm/#"}, "EDGERM_DF_OUT"),
        ({"EDGERM_DF_IN": " , "}, "EDGERM_DF_IN: names no topic"),
        ({"EDGERM_DF_IN": "edgerm/+/out"}, "EDGERM_DF_IN"),
        ({"EDGERM_DF_REPLICA": "1"}, "EDGERM_DF_REPLICA"),
        ({"EDGERM_DF_REPLICA": "3/3"}, "EDGERM_DF_REPLICA"),
        ({"EDGERM_DF_REPLICA": "a/b"}, "EDGERM_DF_REPLICA"),
        ({"EDGERM_DF_BATCH": "0"}, "EDGERM_DF_BATCH"),
        ({"EDGERM_DF_BATCH": "2.5"}, "whole number"),
        ({"EDGERM_DF_QUEUE": "many"}, "EDGERM_DF_QUEUE: 'many' is not a number"),
        ({"EDGERM_DF_PERIOD": "0"}, "EDGERM_DF_PERIOD"),
        ({"EDGERM_DF_BATCH_MS": "nan"}, "EDGERM_DF_BATCH_MS"),
        ({"EDGERM_BROKER": ""}, "no MQTT broker"),
        ({"EDGERM_BROKER": "tcp://h:1"}, "mqtt://"),
        ({"EDGERM_BROKER": "mqtt://h:99999"}, "not a URL"),
        ({"EDGERM_BROKER": "mqtt://:1883"}, "names no host"),
    ],
)
def test_mistakes_name_the_key(change: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match="EDGERM") as e:
        parse_operator({**BASE, **change})
    assert needle in str(e.value)


def test_a_source_needs_a_device_and_a_sink_a_known_target() -> None:
    with pytest.raises(ConfigError, match="EDGERM_DF_DEVICE: missing"):
        parse_operator({**BASE, "EDGERM_DF_ROLE": "source"})
    with pytest.raises(ConfigError, match="EDGERM_DF_SINK"):
        parse_operator({**BASE, "EDGERM_DF_ROLE": "sink", "EDGERM_DF_SINK": "printer"})


def test_sinks_and_brokers() -> None:
    assert parse_sink("https://example.org/in") == SinkSpec(SinkKind.HTTP, "https://example.org/in")
    with pytest.raises(ConfigError, match="absolute"):
        parse_sink("file:relative.txt")
    assert parse_broker("mqtt://broker") == Broker("broker", 1883)
    assert parse_broker("mqtt://[::1]:1999").url == "mqtt://[::1]:1999"


def test_topics() -> None:
    assert out_topic("temps", "read") == "edgerm/temps/read/out"
    assert stats_topic("temps", "read", 3) == "edgerm/temps/read/stats/3"


def _task(env: dict[str, str]) -> TaskInfo:
    return TaskInfo(TaskId("t"), "t", AgentId("a"), Resources.parse("cpus:1"), WasmSpec(b"\0asm"), env=env)


def test_the_agent_fills_in_the_broker_only_for_dataflow_tasks_that_lack_one() -> None:
    plain = _task({"X": "1"})
    assert with_broker(plain, "mqtt://m:1883") is plain
    own = _task({**BASE})
    assert with_broker(own, "mqtt://m:1883") is own
    missing = _task({k: v for k, v in BASE.items() if k != BROKER})
    assert with_broker(missing, "mqtt://m:1883").env[BROKER] == "mqtt://m:1883"
    assert with_broker(missing, "") is missing
    assert BROKER not in missing.env  # the original is untouched


def test_device_names_resolve_to_handles() -> None:
    config = parse_operator({**BASE, "EDGERM_DF_ROLE": "source", "EDGERM_DF_DEVICE": "temperature"})
    claimed = Resources.parse("temperature:device(sim:sine,shared)")
    assert resolve_device(config, claimed, {}) == "sim:sine"
    assert resolve_device(config, Resources(), {"temperature": "file:/dev/t"}) == "file:/dev/t"
    with pytest.raises(ConfigError, match="claims no device 'temperature'"):
        resolve_device(config, Resources(), {})
    direct = parse_operator({**BASE, "EDGERM_DF_ROLE": "source", "EDGERM_DF_DEVICE": "sim:random"})
    assert resolve_device(direct, Resources(), {}) == "sim:random"
