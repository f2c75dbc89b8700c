"""The data plane is closed by default: on a secure master the embedded broker refuses anonymous
clients, and a dataflow task's own login reaches only its own topics (real master, agents, broker)."""

from __future__ import annotations

import aiomqtt
import pytest

from edgerm import dataflow_keys as k
from tests.integration.dataflow.conftest import Cluster, dag
from tests.integration.dataflow.test_pipeline import CHAIN
from tests.integration.dataflow_plane.brokers import Watcher, login_for

#: The embedded broker only: an external one (mosquitto) has the ACLs its operator gives it.
pytestmark = pytest.mark.parametrize("cluster", ["embedded"], indirect=True)


def _address(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("mqtt://").rpartition(":")
    return host, int(port)


async def test_anonymous_clients_and_forged_logins_are_refused(cluster: Cluster) -> None:
    host, port = _address(cluster.broker_url)
    for username, password in [(None, None), ("admin", "not-a-token"), ("task:df-1", "00" * 32)]:
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(host, port, username=username, password=password, timeout=5):
                pass


async def test_a_task_cannot_publish_to_another_operators_topic(cluster: Cluster) -> None:
    await cluster.agent("sensor-1", sensor="sim:sine")
    await cluster.agent("worker-1", role="worker")
    await cluster.agent("cloud-1", domain="cloud")
    gate = cluster.master.broker.gate if cluster.master.broker is not None else None
    assert gate is not None
    async with Watcher(cluster.broker_url, login_for(cluster.master)) as watcher:
        await watcher.subscribe("edgerm/chain/store/out", "edgerm/chain/read/out", "edgerm/chain/scale/out")
        run = cluster.run(dag(CHAIN))
        await run.start()
        assert await run.wait_running(15), run.render()
        scale = next(t for t in await cluster.tasks() if "scale" in t["name"])
        creds = gate.credential_env(scale["id"])
        host, port = _address(cluster.broker_url)
        async with aiomqtt.Client(
            host, port, username=creds[k.BROKER_USERNAME], password=creds[k.BROKER_PASSWORD], timeout=5
        ) as forged:
            await forged.publish("edgerm/chain/store/out", b"planted-by-scale", qos=1)  # the sink's topic
            await forged.publish("edgerm/chain/read/out", b"planted-by-scale", qos=1)  # the source's topic
            await forged.publish("edgerm/chain/scale/out", b"own-by-scale", qos=1)  # its own: delivered
        await watcher.wait(lambda: any(m.payload == b"own-by-scale" for m in watcher.messages), within=15)
        await watcher.wait(lambda: len(watcher.records("edgerm/chain/store/out")) >= 10, within=15)
    planted = [m for m in watcher.messages if b"planted-by-scale" in m.payload]
    assert planted == []
