"""The edgerm CLI's rendering and exit codes, with an in-process fetch (no sockets)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import pytest

from edgerm import cli

# The shape of MasterCore.snapshot() (edgerm/master/state.py).
STATE: dict[str, object] = {
    "master": {"id": "m1", "agents": 2, "frameworks": 1, "tasks": 2},
    "agents": [
        {
            "id": "a1",
            "hostname": "pi-1",
            "resources": "cpus:4;mem:1024",
            "used": "cpus:0.5;mem:64",
            "offered": "",
            "free": "cpus:3.5;mem:960",
            "attributes": {"executors": ["docker", "wasm"], "os": "linux"},
            "heartbeat_interval": 1.0,
            "registered_at": 1000.0,
            "last_seen": 1099.5,
            "tasks": ["t1", "t2"],
        },
        {
            "id": "a2",
            "hostname": "sensor-board",
            "resources": "cpus:1;mem:64",
            "used": "",
            "offered": "cpus:1;mem:64",
            "free": "",
            "attributes": {"executors": ["wasm"]},
            "last_seen": 1090.0,
            "tasks": [],
        },
    ],
    "frameworks": [
        {
            "id": "fw-1",
            "name": "hello",
            "active": True,
            "suppressed": False,
            "allocation": "cpus:0.5;mem:64",
            "offers": [{"id": "o1", "agent_id": "a2", "resources": "cpus:1;mem:64", "expires_at": 1.0}],
            "filters": {},
            "unacknowledged": [],
            "tasks": 1,
        }
    ],
    "tasks": [
        {
            "id": "t1",
            "name": "hello-1",
            "framework_id": "fw-1",
            "agent_id": "a1",
            "state": "RUNNING",
            "reason": "UNSPECIFIED",
            "message": "",
            "executor": "wasm",
            "resources": "cpus:0.1;mem:32",
        },
        {
            "id": "t2",
            "name": "hello-2",
            "agent_id": "a1",
            "state": "TASK_FAILED",
            "reason": "COMMAND_EXITED",
            "message": "x" * 100,
        },
    ],
}


def fetch_from(state: Mapping[str, object]) -> Callable[[str, float], Mapping[str, object]]:
    def fetch(master: str, timeout: float) -> Mapping[str, object]:
        assert master == "http://m:1" and timeout == 5.0
        return state

    return fetch


def test_agents_table() -> None:
    lines = cli.render(STATE, "agents", now=1100.0, wide=True).splitlines()
    assert lines[0].split() == ["ID", "HOSTNAME", "RESOURCES", "USED", "OFFERED", "FREE", "EXECUTORS", "TASKS", "SEEN"]
    a1 = "a1 pi-1 cpus:4;mem:1024 cpus:0.5;mem:64 - cpus:3.5;mem:960 docker,wasm 2 0.5s ago"
    a2 = "a2 sensor-board cpus:1;mem:64 - cpus:1;mem:64 - wasm 0 10.0s ago"
    assert lines[1].split() == a1.split() and lines[2].split() == a2.split()
    # aligned: every column starts at the same offset on every line
    assert lines[0].index("HOSTNAME") == lines[1].index("pi-1") == lines[2].index("sensor-board")
    assert lines[0].index("SEEN") == lines[1].index("0.5s") == lines[2].index("10.0s")


def test_main_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--master", "http://m:1", "agents"], fetch_from(STATE)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ID") and out[1].startswith("a1") and len(out) == 3


def test_tasks_table_strips_prefixes_and_cuts_long_cells(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--master", "http://m:1", "tasks", "--wide"], fetch_from(STATE)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "ID",
        "NAME",
        "STATE",
        "FRAMEWORK",
        "AGENT",
        "EXECUTOR",
        "RESOURCES",
        "REASON",
        "MESSAGE",
    ]
    assert lines[1].split() == ["t1", "hello-1", "RUNNING", "fw-1", "a1", "wasm", "cpus:0.1;mem:32", "-", "-"]
    assert lines[2].split()[:8] == ["t2", "hello-2", "FAILED", "-", "a1", "-", "-", "COMMAND_EXITED"]
    assert lines[2].split()[-1] == "x" * 100  # --wide cuts nothing
    assert cli.render(STATE, "tasks", now=1100.0).splitlines()[2].endswith("x" * (cli.MAX_CELL - 1) + "…")


def test_frameworks_and_empty_lists(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--master", "http://m:1", "frameworks", "-o", "wide"], fetch_from(STATE)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "ACTIVE", "SUPPRESSED", "ALLOCATION", "OFFERS", "TASKS", "UNACKED"]
    assert lines[1].split() == ["fw-1", "hello", "yes", "no", "cpus:0.5;mem:64", "1", "1", "0"]
    assert cli.main(["--master", "http://m:1", "tasks"], fetch_from({"agents": []})) == 0
    assert capsys.readouterr().out == "no tasks\n"


def test_missing_fields_are_dashes_and_empty_columns_dropped() -> None:
    lines = cli.render({"tasks": [{"id": "t1", "state": "RUNNING"}, {"id": "t2", "name": "n"}]}, "tasks").splitlines()
    assert [line.split() for line in lines] == [["ID", "NAME", "STATE"], ["t1", "-", "RUNNING"], ["t2", "n", "-"]]


def test_unknown_shapes_fall_back_to_their_own_keys() -> None:
    odd = {"agents": {"a1": {"weird": 1, "other": [1, 2]}, "a2": {"weird": 2}}}
    lines = cli.render(odd, "agents").splitlines()
    assert lines[0].split() == ["ID", "WEIRD", "OTHER"]
    assert lines[1].split() == ["a1", "1", "1,2"] and lines[2].split() == ["a2", "2", "-"]


def test_json_prints_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--master", "http://m:1", "--json", "frameworks"], fetch_from(STATE)) == 0
    assert json.loads(capsys.readouterr().out) == STATE["frameworks"]


def test_unreachable_master_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    def unreachable(master: str, timeout: float) -> Mapping[str, object]:
        raise cli.StateUnavailable(f"cannot reach the master at {master}: connection refused")

    assert cli.main(["--master", "http://m:1", "agents"], unreachable) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "edgerm: cannot reach the master at http://m:1: connection refused\n"


def test_default_master_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGERM_MASTER", "http://elsewhere:9")
    assert cli.parse_args(["agents"]).master == "http://elsewhere:9"
    monkeypatch.delenv("EDGERM_MASTER")
    assert cli.parse_args(["agents"]).master == cli.DEFAULT_MASTER


def test_format_value() -> None:
    assert cli.format_value(None) == "-" and cli.format_value(0.5) == "0.5" and cli.format_value(3) == "3"
    assert cli.format_value({"a": 1, "b": [2, 3]}) == "a:1;b:2,3" and cli.format_value([]) == "-"


@pytest.mark.parametrize("width", [80, 120])
def test_tables_fit_the_terminal(width: int) -> None:
    state = {
        "tasks": [
            {
                "id": f"{i:032x}",
                "name": f"temperature.fahrenheit.{i}",
                "state": "FAILED",
                "framework_id": "f" * 32,
                "agent_id": "a" * 32,
                "reason": "COMMAND_EXITED",
                "message": "wasm trap: out of bounds memory access " * 3,
            }
            for i in range(3)
        ]
    }
    lines = cli.render(state, "tasks", now=0.0, width=width).splitlines()
    assert all(len(line) <= width for line in lines), lines
    assert lines[0].split() == ["ID", "NAME", "STATE", "FRAMEWORK", "AGENT", "REASON", "MESSAGE"]
    assert all("FAILED" in line for line in lines[1:])  # states are never cut
    assert all(line.startswith("00000000…  ") for line in lines[1:])  # ids are cut first, to 8 characters
    if width >= 120:
        assert all(f"temperature.fahrenheit.{i}" in line for i, line in enumerate(lines[1:]))  # names stay whole
    wide = cli.render(state, "tasks", now=0.0, wide=True).splitlines()
    assert state["tasks"][0]["message"].strip() in wide[1]


def test_json_output_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["tasks", "--master", "http://m:1", "-o", "json"], fetch_from(STATE)) == 0
    assert [t["id"] for t in json.loads(capsys.readouterr().out)] == ["t1", "t2"]


def test_task_shows_one_task_by_id_prefix_or_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--master", "http://m:1", "task", "hello-2"], fetch_from(STATE)) == 0
    out = capsys.readouterr().out
    assert "id:            t2" in out and "state:         TASK_FAILED" not in out and "FAILED" in out
    assert "(pi-1)" in out  # the agent's hostname next to its id
    assert cli.main(["--master", "http://m:1", "task", "nope"], fetch_from(STATE)) == 1
    assert "no task 'nope'" in capsys.readouterr().err


def test_dataflows_from_task_names() -> None:
    state = {
        "agents": [{"id": "a1", "hostname": "sensor-1"}],
        "frameworks": [{"id": "f1", "name": "dataflow:temperature"}, {"id": "f2", "name": "hello"}],
        "tasks": [
            {"id": "t1", "name": "temperature.read.0", "framework_id": "f1", "agent_id": "a1", "state": "RUNNING"},
            {"id": "t2", "name": "temperature.report.0", "framework_id": "f1", "agent_id": "a1", "state": "STARTING"},
            {"id": "t3", "name": "hello-1", "framework_id": "f2", "agent_id": "a1", "state": "RUNNING"},
        ],
    }
    rows = cli.dataflows(state)
    assert rows == [
        {
            "dag": "temperature",
            "framework_id": "f1",
            "tasks": 2,
            "running": 1,
            "operators": ["read", "report"],
            "agents": ["sensor-1"],
        }
    ]


def test_version_and_help_show_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.parse_args(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("edgerm ")
    with pytest.raises(SystemExit):
        cli.parse_args(["task", "--help"])
    assert "(default: 10.0)" in capsys.readouterr().out


def test_task_shows_a_status_history_one_line_each() -> None:
    task = {
        "id": "t1",
        "state": "FAILED",
        "history": [
            {"state": "STARTING", "timestamp": 990.0, "message": "pulling 2/5 layers"},
            {"state": "FAILED", "timestamp": 1000.0, "reason": "COMMAND_EXITED", "message": "exit 3"},
        ],
    }
    lines = cli.render_task(task, {}, now=1000.5).splitlines()
    assert lines[2].strip() == "history:"
    assert "STARTING" in lines[3] and "pulling 2/5 layers" in lines[3] and "10.5s ago" in lines[3]
    assert "FAILED  COMMAND_EXITED  exit 3" in lines[4]


def test_dataflows_from_a_serve_endpoint(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    asked: list[str] = []

    def fetch_json(url: str, timeout: float = 5.0) -> object:
        asked.append(url)
        return [{"id": "temperature-1", "name": "temperature", "phase": "running"}]

    monkeypatch.setattr(cli, "fetch_json", fetch_json)
    assert cli.main(["dataflows", "--serve", "http://df:5060/", "-o", "json"]) == 0
    assert asked == ["http://df:5060/dags"]
    assert json.loads(capsys.readouterr().out) == [
        {"dag": "temperature", "id": "temperature-1", "name": "temperature", "phase": "running"}
    ]
    assert cli.main(["dataflows", "--serve", "http://df:5060"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["DAG", "PHASE"] and out[1].split() == ["temperature", "running"]
