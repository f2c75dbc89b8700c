"""The data plane over TLS: a master with ``--tls-cert/--tls-key`` serves its embedded broker as
``mqtts://``; plain MQTT and a broker certificate from another CA are refused; agents hand their ``--ca``
to dataflow tasks, which verify the broker with it, and a whole dataflow runs over TLS."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import aiomqtt
import pytest

from edgerm.agent.config import AgentConfig, DeviceDeclaration, ResourceCaps
from edgerm.agent.main import start_agent
from edgerm.frameworks.dataflow import RunOptions, loads
from edgerm.frameworks.dataflow.runner import DataflowRun
from edgerm.master.main import TlsFiles, start_master
from tests.integration.dataflow.test_pipeline import CHAIN
from tests.integration.security.test_tls import pki  # noqa: F401  (the module's test CA fixture)
from tests.support import eventually

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def _address(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("mqtts://").rpartition(":")
    return host, int(port)


async def test_the_embedded_broker_speaks_tls_and_refuses_plain_mqtt(pki: Path) -> None:  # noqa: F811
    tls = TlsFiles(pki / "master.pem", pki / "master.key")
    async with start_master(tls=tls, broker="embedded", broker_port=0) as master:
        assert master.broker_url.startswith("mqtts://127.0.0.1:")
        host, port = _address(master.broker_url)
        admin = master.tokens.admin if master.tokens is not None else None
        with pytest.raises(aiomqtt.MqttError):  # plain MQTT to the TLS port
            async with aiomqtt.Client(host, port, username="admin", password=admin, timeout=5):
                pass
        other = ssl.create_default_context(cafile=str(pki / "other-ca.pem"))
        with pytest.raises(aiomqtt.MqttError):  # a client trusting another CA
            async with aiomqtt.Client(host, port, username="admin", password=admin, tls_context=other, timeout=5):
                pass
        fleet = ssl.create_default_context(cafile=str(pki / "fleet-ca.pem"))
        async with aiomqtt.Client(host, port, username="admin", password=admin, tls_context=fleet, timeout=5) as c:
            await c.subscribe("edgerm/#")


async def test_a_dataflow_runs_over_tls(pki: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    ca = str(pki / "fleet-ca.pem")
    monkeypatch.setenv("EDGERM_CA", ca)  # the framework's driver and monitor verify the master with it
    tls = TlsFiles(pki / "master.pem", pki / "master.key")
    async with start_master(tls=tls, broker="embedded", broker_port=0, allocation_interval=0.05) as master:
        agents = []
        for name, attrs, devices in [
            ("sensor-1", {"domain": "edge"}, (DeviceDeclaration("temperature", "sim:sine"),)),
            ("worker-1", {"domain": "edge", "role": "worker"}, ()),
            ("cloud-1", {"domain": "cloud"}, ()),
        ]:
            config = AgentConfig(
                name=name,
                heartbeat_interval=0.2,
                resources=ResourceCaps(cpus=1.0, mem=512),
                attributes=attrs,
                devices=devices,
                executors=frozenset({"wasm"}),
            )
            agents.append(await start_agent(master.url, config, tmp_path / name, ca=ca))
        try:
            run = DataflowRun(loads(CHAIN), master.url, broker_url=master.broker_url, options=RunOptions(deadline=15))
            await run.start()
            try:
                assert await run.wait_running(15), run.render()
                await eventually(lambda: run.watch.view(0).sink_records >= 20, 20, "sink records over mqtts")
            finally:
                await run.stop()
        finally:
            for agent in agents:
                await agent.stop()
