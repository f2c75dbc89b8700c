"""Offline checks: the contract's env rules, records and topics, DAG validation with locations,
and the `edgerm-dataflow validate` command."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgerm.frameworks.dataflow import contract
from edgerm.frameworks.dataflow.cli import main
from edgerm.frameworks.dataflow.modules import ModuleResolver, builtin_names
from edgerm.frameworks.dataflow.validate import DagError, load, loads
from edgerm.model import DockerSpec, Network, WasmSpec
from edgerm.scheduler import DockerExecutor, WasmExecutor
from tests.unit.dataflow.helpers import dag

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "dataflows"


def test_records_and_topics() -> None:
    assert contract.parse_record("read.0 12 1700000000.5 21.25") == contract.Record("read.0", 12, 1700000000.5, 21.25)
    for bad in ("", "read.0 12 1.0", "read.0 x 1.0 2.0", "read.0 -1 1.0 2.0", "a 1 nan 2"):
        assert contract.parse_record(bad) is None, bad
    records, bad = contract.parse_batch(b"a 0 1.0 2.0\n\nnot a record\na 1 1.1 2.5\n")
    assert [r.seq for r in records] == [0, 1] and bad == 1
    assert contract.parse_topic("edgerm/d/op/out") == contract.Topic("d", "op")
    assert contract.parse_topic("edgerm/d/op/stats/3") == contract.Topic("d", "op", 3)
    assert contract.parse_topic("edgerm/d/op/stats/x") is None and contract.parse_topic("other/d/op/out") is None
    assert contract.stats_filter("d") == "edgerm/d/+/stats/+"


def test_env_problems() -> None:
    assert contract.env_problems({"EDGERM_DF_PERIOD": "0.5", "EDGERM_DF_SINK": "file:/tmp/x"}) == []
    got = contract.env_problems(
        {
            "EDGERM_DF_IN": "x",
            "EDGERM_DF_BATCH": "2.5",
            "EDGERM_DF_PERIOD": "soon",
            "EDGERM_DF_SINK": "ftp://x",
            "EDGERM_BROKER": "tcp://h:1",
        }
    )
    assert len(got) == 5 and got[0].startswith("EDGERM_DF_IN is set by the framework")


def test_replicas_get_their_index_and_every_input() -> None:
    d = loads(
        """
name: fan
operators:
  a: {kind: source, wasm: builtin:sensor, devices: [t], resources: {cpus: 0.1}}
  b: {kind: source, wasm: builtin:sensor, devices: [t], resources: {cpus: 0.1}}
  m: {kind: operator, wasm: builtin:map, replicas: 3, resources: {cpus: 0.1}}
  s: {kind: sink, wasm: builtin:sink, resources: {cpus: 0.1}}
edges: [a -> m, b -> m, m -> s]
"""
    )
    from edgerm.scheduler import Instance

    op = d.operator("m")
    env = contract.task_env(d, Instance("m", 2), op.main)
    assert env["EDGERM_DF_REPLICA"] == "2/3"
    assert env["EDGERM_DF_IN"] == "edgerm/fan/a/out,edgerm/fan/b/out"
    assert contract.task_name("fan", Instance("m", 2)) == "fan.m.2"


def test_the_examples_are_valid() -> None:
    for path in sorted(EXAMPLES.iterdir()):
        load(path)  # raises DagError with every problem otherwise


def test_contract_problems_carry_locations(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\n"
        "operators:\n"
        "  read:\n"
        "    kind: source\n"
        "    wasm: builtin:nope\n"
        "    resources: {cpus: 0.1}\n"
        "  scale:\n"
        "    kind: operator\n"
        "    wasm: modules/missing.wasm\n"
        "    env: {EDGERM_DF_IN: x, EDGERM_DF_QUEUE: '0'}\n"
        "    resources: {cpus: 0.1}\n"
        "edges: [read -> scale]\n"
    )
    with pytest.raises(DagError) as e:
        load(path)
    got = [(p.line, p.column, p.path) for p in e.value.problems]
    assert got == [
        (4, 5, "operators.read"),  # a source needs a device: no devices field, so its body
        (5, 11, "operators.read.wasm"),
        (9, 11, "operators.scale.wasm"),
        (10, 25, "operators.scale.env.EDGERM_DF_IN"),
        (10, 45, "operators.scale.env.EDGERM_DF_QUEUE"),
    ]
    messages = [p.message for p in e.value.problems]
    assert "unknown builtin module 'builtin:nope'" in messages[1] and "map" in messages[1]
    assert "not found" in messages[2]
    assert "set by the framework" in messages[3] and "at least 1" in messages[4]


def test_scheduler_problems_come_first_and_with_locations() -> None:
    with pytest.raises(DagError) as e:
        loads("name: x\noperators:\n  a: {kind: source, wasm: builtin:sensor, resources: {cpus: -1}}\n")
    (p,) = e.value.problems
    assert (p.line, p.path) == (3, "operators.a.resources.cpus") and "negative" in p.message


def test_modules_resolve_to_containers() -> None:
    d = dag()
    r = ModuleResolver(d)
    assert {"sensor", "map", "filter", "aggregate", "sink"} <= set(builtin_names())
    spec = r.container(WasmExecutor(module="builtin:map"))
    assert isinstance(spec, WasmSpec) and spec.module.startswith(b"\0asm")
    assert r.container(WasmExecutor(module="builtin:map")) == spec
    assert r.container(WasmExecutor(sha256="a" * 64)) == WasmSpec(module_sha256="a" * 64)
    assert r.container(DockerExecutor("img:1")) == DockerSpec("img:1", network=Network.HOST)


def test_validate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLES / "temperature.yaml")]) == 0
    assert "valid DAG 'temperature'" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "b", "operators": {"a": {"kind": "sorce", "wasm": "builtin:sensor"}}}')
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert f"{bad}:1:34: operators.a: missing required field 'resources'" in err
    assert f"{bad}:1:43: operators.a.kind: unknown kind 'sorce' (expected source, operator or sink)" in err
    assert main(["validate", str(tmp_path / "none.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err
