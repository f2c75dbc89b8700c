"""The broker in the master, and a real agent hosting a dataflow task launched through it.

A master embeds its broker and names it in REGISTERED; a real agent (with a
declared ``sim:sine`` device) learns it, and a framework launches a source
that claims the device and sets no ``EDGERM_BROKER``: its records reach the
broker, and its stats name the agent. Also: ``--broker URL``, ``--no-broker``
and a master process that embeds its broker on an ephemeral port.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiomqtt
import pytest

from edgerm.agent.config import AgentConfig
from edgerm.agent.devices import DeviceDeclaration
from edgerm.agent.main import start_agent
from edgerm.dataflow_ops import load_builtin
from edgerm.errors import ConfigError
from edgerm.frameworks import Framework, FrameworkDriver, HttpDriver, supports, wasm_task
from edgerm.ids import TaskId
from edgerm.master.main import parse_args, start_master
from edgerm.model import Offer, TaskState, TaskStatus
from edgerm.resources import Resources
from tests.integration.agent.helpers import eventually
from tests.integration.dataflow_plane.brokers import Watcher, login_for
from tests.support import FAULT_ENV, exit_code, init_state_dir

SOURCE_ENV = {
    "EDGERM_DF_DAG": "m",
    "EDGERM_DF_OPERATOR": "read",
    "EDGERM_DF_ROLE": "source",
    "EDGERM_DF_OUT": "edgerm/m/read/out",
    "EDGERM_DF_REPLICA": "0/1",
    "EDGERM_DF_DEVICE": "temperature",
    "EDGERM_DF_PERIOD": "0.02",
}


class OneSource(Framework):
    """Launches one source claiming the agent's temperature device; records its statuses."""

    name = "df-plane-test"

    def __init__(self) -> None:
        self.task_id = TaskId("")
        self.states: list[TaskState] = []

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        for offer in offers:
            if self.task_id or not supports(offer, "wasm") or "temperature" not in offer.resources.devices:
                await driver.decline([offer.id], refuse_seconds=60)
                continue
            claim = Resources.parse("cpus:0.1;mem:32") + Resources(
                devices={"temperature": offer.resources.devices["temperature"]}
            )
            task = wasm_task(offer, "read", load_builtin("sensor"), resources=claim, env=SOURCE_ENV)
            self.task_id = task.task_id
            await driver.accept([offer.id], [task])

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        self.states.append(status.state)


async def test_agent_learns_the_embedded_broker_and_hosts_a_source() -> None:
    config = AgentConfig(devices=(DeviceDeclaration("temperature", "sim:sine", shared=True),), heartbeat_interval=0.5)
    async with start_master(broker="embedded", allocation_interval=0.05) as master:
        assert master.broker is not None and master.broker_url == f"mqtt://127.0.0.1:{master.broker.port}"
        async with start_agent(master.url, config) as agent, Watcher(master.broker_url, login_for(master)) as w:
            assert agent.service.broker_url == master.broker_url
            await w.subscribe("edgerm/m/read/out", "edgerm/m/read/stats/0")
            fw = OneSource()
            driver = HttpDriver(fw, master.url)
            running = asyncio.create_task(driver.run())
            try:
                await eventually(lambda: TaskState.RUNNING in fw.states)
                await eventually(lambda: len(w.records("edgerm/m/read/out")) >= 5 and w.on("edgerm/m/read/stats/0"))
                records = w.records("edgerm/m/read/out")
                assert {r[0] for r in records} == {"read.0"}
                seqs = [int(r[1]) for r in records]
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
                assert all(10 <= float(r[3]) <= 30 for r in records)  # sim:sine, through the sensor module
                stats = w.stats("edgerm/m/read/stats/0")[-1]
                assert stats["agent"] == agent.agent_id and stats["task"] == fw.task_id
                await driver.kill(fw.task_id)
                await eventually(lambda: TaskState.KILLED in fw.states)
            finally:
                await driver.stop()
                await asyncio.wait_for(running, 10)


async def test_an_external_broker_is_named_and_none_is_embedded() -> None:
    async with start_master(broker="mqtt://broker.example:1884") as master:
        assert master.broker is None and master.broker_url == "mqtt://broker.example:1884"
    async with start_master() as master:
        assert master.broker is None and master.broker_url == ""
    with pytest.raises(ConfigError):
        start_master(broker="http://broker.example:1883")


def test_broker_flags() -> None:
    assert parse_args([]).broker_port == 1883 and not parse_args([]).no_broker
    assert parse_args(["--broker", "mqtt://h:1"]).broker == "mqtt://h:1"
    assert parse_args(["--no-broker"]).no_broker
    with pytest.raises(SystemExit):
        parse_args(["--no-broker", "--broker", "mqtt://h:1"])


async def test_master_process_embeds_its_broker_on_an_ephemeral_port(tmp_path: Path) -> None:
    tokens = await init_state_dir(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "edgerm.master.main", "--port", "0", "--no-coap", "--broker-port", "0", "--log-level", "WARNING"),
        *("--state-dir", str(tmp_path)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=FAULT_ENV,
    )
    try:
        assert proc.stdout is not None
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 20)).decode() for _ in range(2)]
        assert lines[1].startswith("edgerm-master MQTT broker on mqtt://127.0.0.1:"), lines
        url = lines[1].split()[4]
        async with Watcher(url, tokens["admin_token"]) as w:  # the admin may read; only tasks publish
            await w.subscribe("edgerm/x")
        with pytest.raises(aiomqtt.MqttError):
            async with Watcher(url):  # anonymous
                pass
        assert (tmp_path / "broker.key").stat().st_mode & 0o777 == 0o600
        proc.send_signal(signal.SIGTERM)
        assert await exit_code(proc, 20) == 0
        assert proc.stderr is not None
        assert b"Traceback" not in await proc.stderr.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
