"""Chaos, framework side: ``kill -9`` of a framework process, restarted with its id file.

The master and an agent run in the test's process; the framework is a real
process (tests/chaos/framework_proc.py) running ``edgerm.frameworks.run``
with ``framework_id_file``. Killed with its tasks running, then started
again, it subscribes as the same framework, learns its tasks are RUNNING,
and kills them: nothing was lost, stopped or run twice meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from edgerm.agent.config import AgentConfig, ResourceCaps
from edgerm.agent.dataflow.runtime import DataflowRuntime
from edgerm.agent.wasm import WasmRuntime
from edgerm.master.main import RunningMaster
from edgerm.model import TaskState
from tests.harness import ROOT, Cluster
from tests.support import eventually

pytestmark = pytest.mark.slow

BOUND = 30.0
COUNT = 3
SCRIPT = str(ROOT / "tests" / "chaos" / "framework_proc.py")


def records(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.endswith("}")]


def latest(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in records(path):
        if "task" in r:
            out[r["task"]] = r["state"]
    return out


async def test_a_framework_killed_9_and_restarted_with_its_id_file_reclaims_its_tasks(
    cluster: Cluster, tmp_path: Path
) -> None:
    config = AgentConfig(
        heartbeat_interval=0.5, executors=frozenset({"wasm"}), resources=ResourceCaps(cpus=4, mem=1024)
    )
    id_file, first_out, second_out = tmp_path / "framework_id", tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    master = await cluster.master()
    agent = await cluster.agent(master, config, tmp_path / "a")
    assert master.tokens is not None
    cluster.env["EDGERM_TOKEN"] = master.tokens.framework  # the framework processes present it
    runtime = agent.service.runtimes["wasm"]
    assert isinstance(runtime, DataflowRuntime) and isinstance(runtime.inner, WasmRuntime)
    wasm = runtime.inner
    first = await cluster.spawn("framework", SCRIPT, master.url, str(id_file), str(first_out), "launch", str(COUNT))

    def all_running() -> bool:
        states = latest(first_out)
        return len(states) == COUNT and set(states.values()) == {"RUNNING"}

    await eventually(all_running, BOUND, "the first process saw its tasks RUNNING")
    framework_id = id_file.read_text().strip()
    assert records(first_out)[0] == {"registered": framework_id}
    tasks = sorted(latest(first_out))
    await first.kill9()

    # Nothing happened to the tasks: the master keeps them, the agent runs them.
    await eventually(lambda: not _active(master, framework_id), BOUND, "the master saw the stream go")
    assert all(_state(master, t) is TaskState.RUNNING for t in tasks)
    assert sorted(wasm.running()) == tasks

    second = await cluster.spawn("framework", SCRIPT, master.url, str(id_file), str(second_out), "reclaim")
    assert await asyncio.wait_for(second.proc.wait(), BOUND) == 0, second.output()
    got = records(second_out)
    assert got[0] == {"registered": framework_id}  # the same framework
    for task_id in tasks:
        states = [r["state"] for r in got if r.get("task") == task_id]
        assert states[0] == "RUNNING" and states[-1] == "KILLED", (task_id, states)
        assert states.count("KILLED") == 1
    await eventually(lambda: wasm.running() == [], BOUND, "every task stopped on the agent")
    assert all(_state(master, t) is TaskState.KILLED for t in tasks)


def _active(master: RunningMaster, framework_id: str) -> bool:
    return master.service.core.framework_active(framework_id)  # type: ignore[arg-type]


def _state(master: RunningMaster, task_id: str) -> TaskState | None:
    record = master.service.core.task(task_id)  # type: ignore[arg-type]
    return record.state if record is not None else None
