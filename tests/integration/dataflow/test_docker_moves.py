"""Python operators in Docker moved by a dead device, with every record at the sink counted.

A real master and broker (embedded amqtt, and mosquitto), a wasmtime source and sink on agents of their own,
and an SDK operator in the test image on a Docker agent. The operator's device dies: its agent stops and its
container is killed (force-removed) mid-stream; the framework moves the operator to a second Docker agent.

- stateless (``scale.py``): on mosquitto every record the source produced after the operator first subscribed
  reaches the sink, once (the sink drops duplicates), transformed;
- stateful (``window_sum.py``, the SDK's ``state=``): on mosquitto the window sums go on with no gap and none
  counted twice, also the window the move cut in two; on amqtt (no session for anonymous clients) what came
  while no instance was there is lost, but the window counter goes on from the checkpoint (a window may come
  twice, the second time with other inputs: amqtt does not send the unacknowledged ones again).

The image is ``EDGERM_PYTHON_IMAGE`` (default edgerm-test/python:latest, built by scripts/build_python_image.sh
from this checkout). Skipped without Docker or the image on a developer's machine; CI (``CI`` set) must run it.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from edgerm.frameworks.dataflow import DataflowRun, MoveKind
from edgerm.scheduler import Instance
from tests.integration.dataflow.conftest import Cluster, agent_containers, dag, eventually, remove_containers
from tests.integration.dataflow_plane.brokers import Watcher, login_for
from tests.support import docker_unavailable, require_docker

IMAGE = os.environ.get("EDGERM_PYTHON_IMAGE", "edgerm-test/python:latest")
_WHY_NOT = docker_unavailable(IMAGE)
DOCKER = frozenset({"wasm", "docker"})


def pipeline(name: str, args: str) -> str:
    return f"""
name: {name}
operators:
  read:
    kind: source
    wasm: builtin:sensor
    devices: [temperature]
    env: {{EDGERM_DF_PERIOD: "0.02"}}
    resources: {{cpus: 0.1, mem: 32}}
  py:
    kind: operator
    docker: {IMAGE}
    args: [{args}]
    resources: {{cpus: 0.5, mem: 128}}
    constraints: [role == worker]
  store:
    kind: sink
    wasm: builtin:sink
    resources: {{cpus: 0.1, mem: 32}}
    constraints: [domain == cloud]
edges:
  - read -> py -> store
"""


@pytest.fixture(autouse=True)
def docker_required() -> None:
    require_docker(_WHY_NOT)


async def move_by_a_dead_device(cluster: Cluster, w: Watcher, text: str, name: str) -> DataflowRun:
    """Run the DAG, kill the operator's device (agent and container) under load, wait for the stream to go on."""
    await cluster.agent("sensor-1", sensor="sim:sine")
    await cluster.agent("cloud-1", domain="cloud")
    first = await cluster.agent("docker-1", cpus=2.0, mem=1024, executors=DOCKER, role="worker")
    await w.subscribe(f"edgerm/{name}/read/out", f"edgerm/{name}/store/out")
    run = cluster.run(dag(text), deadline=30.0)
    await run.start()
    assert await run.wait_running(30), run.render()
    assert run.framework.live[Instance("py")].placement.hostname == "docker-1"
    second = await cluster.agent("docker-2", cpus=2.0, mem=1024, executors=DOCKER, role="worker")
    try:
        await w.wait(lambda: len(w.records(f"edgerm/{name}/store/out")) >= 12, within=30)
        containers = await asyncio.to_thread(agent_containers, first.agent_id)
        await cluster.kill_agent("docker-1")  # the device dies: its agent and its container
        await asyncio.to_thread(remove_containers, containers)
        await eventually(lambda: len(run.framework.moves) == 1, within=30, what="the move")
        (move,) = run.framework.moves
        assert move.kind is MoveKind.MOVED and move.instance == Instance("py")
        assert run.framework.live[Instance("py")].placement.hostname == "docker-2"
        at_move = len(w.records(f"edgerm/{name}/store/out"))
        await w.wait(lambda: len(w.records(f"edgerm/{name}/store/out")) >= at_move + 12, within=30)
        await run.stop()
        assert run.exit_code == 0
        await eventually(lambda: not agent_containers(second.agent_id), what="the operator's container removed")
    finally:
        for agent in (first, second):
            await asyncio.to_thread(remove_containers, await asyncio.to_thread(agent_containers, agent.agent_id))
    return run


async def test_a_stateless_python_operator_loses_nothing_when_its_device_dies(
    cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    async with Watcher(cluster.broker_url, login_for(cluster.master)) as w:
        args = 'python3, /opt/edgerm/operators/scale.py, --scale, "2", --offset, "1"'
        run = await move_by_a_dead_device(cluster, w, pipeline("pymove", args), "pymove")
    raw = {int(f[1]): float(f[3]) for f in w.records("edgerm/pymove/read/out")}
    out = w.records("edgerm/pymove/store/out")
    seqs = [int(f[1]) for f in out]
    assert len(seqs) == len(set(seqs)), "the sink delivered a record twice"
    for f in out:
        if int(f[1]) in raw:
            assert float(f[3]) == pytest.approx(raw[int(f[1])] * 2 + 1, abs=1e-6), f
    missing = set(range(seqs[0], seqs[-1] + 1)) - set(seqs)
    view = run.watch.view(0)
    if request.node.callspec.params["cluster"] == "mosquitto":
        # the slot's session kept what the dead container had not acknowledged and what came meanwhile
        assert not missing, sorted(missing)
        assert view.lost_in_moves == 0 and view.skipped == 0, view.gaps
    else:
        print(f"amqtt: {len(missing)} of {seqs[-1] - seqs[0] + 1} records lost in the move")
        assert view.skipped == 0, view.gaps  # every gap is explained by the move


async def test_a_stateful_python_operator_continues_its_windows_when_its_device_dies(
    cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    async with Watcher(cluster.broker_url, login_for(cluster.master)) as w:
        args = 'python3, /opt/edgerm/operators/window_sum.py, --window, "5"'
        await move_by_a_dead_device(cluster, w, pipeline("pysum", args), "pysum")
    by_t = {f[2]: (int(f[1]), float(f[3])) for f in w.records("edgerm/pysum/read/out")}
    out = w.records("edgerm/pysum/store/out")
    windows = [int(f[1]) for f in out]
    # the counter goes on: no restart at 0, no gap
    assert sorted(set(windows)) == list(range(windows[-1] + 1)) and windows == sorted(windows), windows
    if request.node.callspec.params["cluster"] == "mosquitto":
        assert len(windows) == len(set(windows)), "the sink delivered a window twice"
        # window k ends with the source record of its t, and sums that record and the 4 before it: no input
        # lost or counted twice, also in the window the move cut in two
        ends = []
        for f in out:
            last, _ = by_t[f[2]]
            ends.append(last)
            expected = sum(by_t_value(by_t, s) for s in range(last - 4, last + 1))
            assert float(f[3]) == pytest.approx(expected, abs=1e-4), (f, last)
        assert ends == list(range(ends[0], ends[0] + 5 * len(ends), 5)), ends


def by_t_value(by_t: dict[str, tuple[int, float]], seq: int) -> float:
    return next(v for s, v in by_t.values() if s == seq)
