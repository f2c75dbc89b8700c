"""Loading DAG files: the format, and every problem reported with its file location."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgerm.errors import ConfigError
from edgerm.resources import Resources
from edgerm.scheduler import (
    DagError,
    DockerExecutor,
    OperatorKind,
    WasmExecutor,
    dag_from_data,
    load_dag,
    loads_dag,
)
from edgerm.scheduler.constraints import Op

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "dataflows"

GOOD = """\
name: pipeline
operators:
  read:
    kind: source
    wasm: modules/read.wasm
    args: [--every, 1s, 5, true]
    env: {UNIT: celsius, RETRIES: 3}
    resources: {cpus: 0.1, mem: 32, ports: "[8000-8001]"}
    devices: [temperature]
    replicas: 2
  smooth:
    kind: operator
    docker: edgerm/smooth:1.0
    resources: "cpus:0.5;mem:256"
    constraints:
      - os == linux
      - {attribute: arch, op: in, value: [arm64, amd64]}
    fallbacks:
      - name: lite
        wasm: sha256:%s
        resources: {cpus: 0.1, mem: 48}
      - resources: {cpus: 0.05, mem: 24}
  alert:
    kind: sink
    wasm: modules/alert.wasm
    resources: {mem: 16}
edges:
  - read -> smooth
  - {from: smooth, to: alert}
""" % ("ab" * 32)


def problems_of(text: str, fmt: str = "yaml") -> list[tuple[int, int, str, str]]:
    with pytest.raises(DagError) as info:
        loads_dag(text, source="f.yaml", fmt=fmt)
    return [(p.line, p.column, p.path, p.message) for p in info.value.problems]


def test_a_good_file_loads_completely() -> None:
    dag = loads_dag(GOOD, source="pipeline.yaml")
    assert dag.name == "pipeline"
    assert dag.order() == ("read", "smooth", "alert")
    read = dag.operator("read")
    assert read.kind is OperatorKind.SOURCE and read.replicas == 2
    assert read.main.executor == WasmExecutor(module="modules/read.wasm")
    assert read.main.args == ("--every", "1s", "5", "true")
    assert read.main.env == {"UNIT": "celsius", "RETRIES": "3"}
    assert read.main.resources == Resources.parse("cpus:0.1;mem:32;ports:[8000-8001]")
    assert read.main.devices == ("temperature",)
    smooth = dag.operator("smooth")
    assert smooth.main.executor == DockerExecutor("edgerm/smooth:1.0")
    assert [str(c) for c in smooth.main.constraints] == ["os == linux", "arch in [arm64, amd64]"]
    lite, second = smooth.fallbacks
    assert lite.name == "lite" and lite.executor == WasmExecutor(sha256="ab" * 32)
    assert lite.constraints == smooth.main.constraints  # inherited
    assert second.name == "fallback2" and second.executor == smooth.main.executor
    assert second.resources == Resources.parse("cpus:0.05;mem:24")
    assert dag.operator("alert").main.resources.mem == 16


def test_every_problem_is_reported_with_its_location() -> None:
    text = """\
name: broken
operators:
  read:
    kind: sourse
    wasm: read.wasm
    resources: {cpus: -1, mem: 32}
    colour: blue
  smooth:
    kind: operator
    docker: img:1
    wasm: x.wasm
    resources: {cpus: 1, mem: 64, camera: "device(/dev/video0)"}
    replicas: 0
    constraints:
      - os linux
      - {attribute: kernel, op: ">=", value: new}
    devices: [gpu, gpu]
  alert:
    kind: sink
    resources: {cpus: 0.1, mem: 1}
    fallbacks:
      - name: main
        wasm: sha256:1234
edges:
  - read -> smooth
  - smooth -> nowhere
  - alert -> smooth
  - [bad]
"""
    got = problems_of(text)
    assert got == [
        (4, 11, "operators.read.kind", "unknown kind 'sourse' (expected source, operator or sink)"),
        (6, 23, "operators.read.resources.cpus", "negative scalar in 'cpus:-1'"),
        (7, 5, "operators.read.colour", got[2][3]),
        (11, 5, "operators.smooth.wasm", "give one executor: wasm or docker, not both"),
        (
            12,
            43,
            "operators.smooth.resources.camera",
            "device 'camera' belongs in `devices: [camera]`, not in resources",
        ),
        (13, 15, "operators.smooth.replicas", "replicas must be a whole number of at least 1, not 0"),
        (15, 9, "operators.smooth.constraints[0]", got[6][3]),
        (16, 9, "operators.smooth.constraints[1]", "'new' is not a version (expected e.g. 1.2.3)"),
        (17, 20, "operators.smooth.devices[1]", "device 'gpu' is listed twice"),
        (18, 3, "operators.alert", "sink 'alert' has no input edge"),
        (19, 5, "operators.alert", "missing executor: give `wasm: <module path or sha256:...>` or `docker: <image>`"),
        (22, 15, "operators.alert.fallbacks[0].name", "fallback name 'main' is taken"),
        (23, 15, "operators.alert.fallbacks[0].wasm", "a module hash is sha256: followed by 64 lowercase hex digits"),
        (26, 5, "edges[1]", "edge smooth -> nowhere names unknown operator 'nowhere'"),
        (27, 5, "edges[2]", "edge alert -> smooth leaves sink 'alert'"),
        (28, 5, "edges[3]", "an edge must be a mapping, not a list"),
    ]
    assert got[2][3].startswith("unknown field 'colour' (expected one of args, constraints, devices")
    assert got[6][3].startswith("bad constraint 'os linux'")


def test_the_error_text_carries_file_line_and_column() -> None:
    with pytest.raises(ConfigError) as info:
        loads_dag("operators:\n  a:\n    kind: source\n    wasm: a.wasm\n    resources: {cpus: x}\n", source="p.yaml")
    assert str(info.value) == "p.yaml:5:23: operators.a.resources.cpus: bad scalar in 'cpus:x'"


def test_cycles_point_at_the_closing_edge() -> None:
    text = """\
operators:
  s: {kind: source, wasm: s.wasm, resources: {mem: 1}}
  a: {kind: operator, wasm: a.wasm, resources: {mem: 1}}
  b: {kind: operator, wasm: b.wasm, resources: {mem: 1}}
edges:
  - s -> a -> b
  - b -> a
"""
    assert problems_of(text) == [(7, 5, "edges[1]", "cycle a -> b -> a")]


def test_kind_rules_and_inputs() -> None:
    text = """\
operators:
  s: {kind: source, wasm: s.wasm, resources: {mem: 1}}
  lonely: {kind: operator, wasm: a.wasm, resources: {mem: 1}}
  k: {kind: sink, wasm: k.wasm, resources: {mem: 1}}
edges:
  - s -> k
  - k -> s
  - s -> s
  - s -> k
"""
    assert problems_of(text) == [
        (3, 3, "operators.lonely", "operator 'lonely' has no input edge"),
        (7, 5, "edges[1]", "edge k -> s enters source 's'"),
        (7, 5, "edges[1]", "edge k -> s leaves sink 'k'"),
        (7, 5, "edges[1]", "cycle s -> k -> s"),
        (8, 5, "edges[2]", "edge s -> s is a self-loop"),
        (9, 5, "edges[3]", "duplicate edge s -> k"),
    ]


@pytest.mark.parametrize(
    ("body", "where", "message"),
    [
        ("resources: {cpus: .nan, mem: 1}", (4, 23), "resource 'cpus' must be a finite number"),
        ("resources: {cpus: 0, mem: 0}", (4, 16), "resources must ask for some cpus or mem"),
        ("resources: {cpus: true}", (4, 23), "resource 'cpus' must be a number or text, not true/false"),
        ("resources: [cpus]", (4, 16), "resources must be a mapping or text"),
        ('resources: "ports:[9-1]"', (4, 16), "invalid range [9-1]"),
        ("resources: {mem: 1}\n    env: {1BAD: x}", (5, 11), "bad environment variable name '1BAD'"),
        ("resources: {mem: 1}\n    args: {a: 1}", (5, 11), "args must be a list, not a mapping"),
        ("resources: {mem: 1}\n    args: [[1]]", (5, 12), "args items must be text or numbers, not a list"),
        ("resources: {mem: 1}\n    devices: [bad name]", (5, 15), "bad device name 'bad name'"),
        ("resources: {mem: 1}\n    constraints: os == linux", (5, 18), "constraints must be a list, not text"),
        ("resources: {mem: 1}\n    constraints: [{attribute: os, op: ==}]", (5, 19), "missing required field 'value'"),
        ("resources: {mem: 1}\n    fallbacks: {a: 1}", (5, 16), "fallbacks must be a list, not a mapping"),
    ],
)
def test_field_problems(body: str, where: tuple[int, int], message: str) -> None:
    text = f"operators:\n  a:\n    kind: source\n    {body}\n    wasm: a.wasm\n"
    got = problems_of(text)
    assert len(got) == 1, got
    assert got[0][:2] == where and got[0][3].startswith(message), got


def test_document_level_problems() -> None:
    assert problems_of("") == [(0, 0, "", "the document is empty")]
    assert problems_of("- a\n- b\n") == [(1, 1, "", "the document must be a mapping, not a list")]
    assert problems_of("name: x\n")[0][3] == "missing required field 'operators'"
    assert problems_of("operators: {}\n") == [(1, 12, "operators", "a DAG needs at least one operator")]
    assert problems_of("name: a b\noperators: {}\n")[0][:3] == (1, 7, "name")
    got = problems_of("operators:\n  a: {kind: source, wasm: a.wasm, resources: {mem: 1}}\n  a: {kind: sink}\n")
    assert (3, 3, "operators", "duplicate key 'a'") in got


def test_syntax_errors_keep_the_parser_position() -> None:
    got = problems_of("operators:\n  a: [unclosed\n")
    assert len(got) == 1 and got[0][0] == 3 and got[0][3].startswith("invalid YAML")
    got = problems_of('{"operators": {"a": }}', fmt="json")
    assert got == [(1, 21, "", "invalid JSON: Expecting value")]


def test_json_locations_even_with_tabs() -> None:
    doc = {
        "operators": {
            "s": {"kind": "source", "docker": "img", "resources": {"mem": 1}},
            "k": {"kind": "sink", "docker": "img", "resources": {"mem": -4}},
        },
        "edges": ["s -> k"],
    }
    text = json.dumps(doc, indent="\t")
    got = problems_of(text, fmt="json")
    assert got == [(14, 12, "operators.k.resources.mem", "negative scalar in 'mem:-4'")]


def test_load_dag_reads_files_and_resolves_module_paths(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(GOOD)
    dag = load_dag(path)
    read = dag.operator("read").main.executor
    assert isinstance(read, WasmExecutor)
    assert dag.module_path(read) == os.path.join(str(tmp_path), "modules/read.wasm")
    bad = tmp_path / "bad.json"
    bad.write_text('{"operators": {"a": {"kind": "nope"}}}')
    with pytest.raises(DagError) as info:
        load_dag(bad)
    assert str(info.value.problems[0]).startswith(f"{bad}:1:")
    with pytest.raises(DagError, match="cannot read"):
        load_dag(tmp_path / "missing.yaml")


def test_dag_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "my-flow.yaml"
    path.write_text("operators:\n  s: {kind: source, wasm: s.wasm, resources: {mem: 1}}\n")
    assert load_dag(path).name == "my-flow"


def test_dag_from_data_validates_without_lines() -> None:
    dag = dag_from_data(
        {"name": "d", "operators": {"s": {"kind": "source", "docker": "i", "resources": "mem:1"}}}, source="api"
    )
    assert dag.operator("s").main.resources.mem == 1
    with pytest.raises(DagError) as info:
        dag_from_data({"operators": {"s": {"kind": "source", "docker": "i", "resources": "mem:1", "x": 1}}})
    (p,) = info.value.problems
    assert (p.line, p.column, p.path) == (0, 0, "operators.s.x")


def test_mapping_constraints_with_version_and_regex() -> None:
    text = """\
operators:
  a:
    kind: source
    docker: img
    resources: {mem: 1}
    constraints:
      - {attribute: agent_version, op: ">=", value: 1.4}
      - {attribute: "@hostname", op: "=~", value: "^pi-"}
      - {attribute: zone, op: not in, value: [test, dev]}
"""
    c = loads_dag(text).operator("a").main.constraints
    assert [x.op for x in c] == [Op.GE, Op.MATCH, Op.NOT_IN]
    assert c[2].value == ("test", "dev")


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.iterdir()))
def test_examples_load(name: str) -> None:
    dag = load_dag(EXAMPLES / name)
    assert dag.operators and dag.edges
