"""A Python operator in Docker, end to end: a real master and broker (embedded amqtt, and mosquitto),
a wasmtime source and sink, and the SDK's example operator in the Debian-based test image
(scripts/build_python_image.sh) on an agent with a real Docker engine.

Skipped without Docker or the image on a developer's machine; CI (``CI`` set) must run it.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from edgerm.scheduler import Instance
from tests.integration.dataflow.conftest import Cluster, agent_containers, dag, eventually, remove_containers
from tests.integration.dataflow_plane.brokers import Watcher, login_for
from tests.support import docker_unavailable, require_docker

IMAGE = os.environ.get("EDGERM_PYTHON_IMAGE", "edgerm-test/python:latest")  # scripts/build_python_image.sh
_WHY_NOT = docker_unavailable(IMAGE)

PIPELINE = f"""
name: pydocker
operators:
  read:
    kind: source
    wasm: builtin:sensor
    devices: [temperature]
    env: {{EDGERM_DF_PERIOD: "0.02", EDGERM_DF_BATCH_MS: "20"}}
    resources: {{cpus: 0.1, mem: 32}}
  fahrenheit:
    kind: operator
    docker: {IMAGE}
    args: [python3, /opt/edgerm/operators/scale.py, --scale, "1.8", --offset, "32"]
    resources: {{cpus: 0.5, mem: 128}}
  store:
    kind: sink
    wasm: builtin:sink
    resources: {{cpus: 0.1, mem: 32}}
edges:
  - read -> fahrenheit -> store
"""


@pytest.fixture(autouse=True)
def docker_required() -> None:
    require_docker(_WHY_NOT)


async def test_records_flow_through_a_python_operator_in_docker(cluster: Cluster) -> None:
    await cluster.agent("sensor-1", sensor="sim:sine")
    box = await cluster.agent("docker-1", cpus=2.0, mem=1024, executors=frozenset({"wasm", "docker"}))
    try:
        async with Watcher(cluster.broker_url, login_for(cluster.master)) as watcher:
            await watcher.subscribe("edgerm/pydocker/read/out", "edgerm/pydocker/store/out")
            run = cluster.run(dag(PIPELINE), deadline=30.0)
            await run.start()
            assert await run.wait_running(30), run.render()
            assert run.framework.live[Instance("fahrenheit")].placement.hostname == "docker-1"
            await watcher.wait(lambda: len(watcher.records("edgerm/pydocker/store/out")) >= 30, within=30)
            # the SDK's stats reach the framework like the operator host's do
            await eventually(
                lambda: any(
                    s.operator == "fahrenheit" and s.received > 0 and s.agent == box.agent_id
                    for s in run.watch.view(0).instances
                ),
                what="stats from the Python operator",
            )
        raw = {(f[0], int(f[1])): float(f[3]) for f in watcher.records("edgerm/pydocker/read/out")}
        out = watcher.records("edgerm/pydocker/store/out")
        checked = 0
        for f in out:
            key = (f[0], int(f[1]))
            if key in raw:
                assert float(f[3]) == pytest.approx(raw[key] * 1.8 + 32, abs=1e-6), f
                checked += 1
        assert checked >= 20, (len(raw), len(out))
        fahrenheit = next(s for s in run.watch.view(0).instances if s.operator == "fahrenheit")
        assert fahrenheit.errors == 0 and fahrenheit.task == run.framework.live[Instance("fahrenheit")].task_id
        await run.stop()
        assert run.exit_code == 0
        # the container is gone with its task
        await eventually(lambda: not agent_containers(box.agent_id), what="the operator's container removed")
    finally:  # whatever happened, nothing of this agent stays in the engine
        await asyncio.to_thread(remove_containers, await asyncio.to_thread(agent_containers, box.agent_id))


async def test_a_python_operator_that_keeps_failing_ends_failed_with_its_error(embedded_cluster: Cluster) -> None:
    cluster = embedded_cluster
    await cluster.agent("sensor-1", sensor="sim:sine")
    box = await cluster.agent("docker-1", cpus=2.0, mem=1024, executors=frozenset({"wasm", "docker"}))
    failing = PIPELINE.replace('--offset, "32"]', '--offset, "32", --fail-above, "-1000"]')  # every record raises
    assert "--fail-above" in failing
    try:
        run = cluster.run(dag(failing), deadline=30.0, max_failures=2)
        await run.start()
        await eventually(lambda: run.framework.done.is_set(), within=60, what="the DAG to fail")
        assert run.exit_code == 1
        # each container ended with status 1 after 10 failed batches; the user's error reached the framework
        assert "fahrenheit#0 failed 2 times" in run.failure
        assert "ValueError: value" in run.failure and "batches failed in a row" in run.failure, run.failure
        await run.stop()
        await eventually(lambda: not agent_containers(box.agent_id), what="the failed containers removed")
    finally:
        await asyncio.to_thread(remove_containers, await asyncio.to_thread(agent_containers, box.agent_id))
