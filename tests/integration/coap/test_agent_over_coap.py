"""The real agent over CoAP: modules cross once, a lost observation is recovered, ``edgerm-agent --coap``."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from edgerm.agent.coap_transport import CoapAgentTransport
from edgerm.agent.config import AgentConfig
from edgerm.agent.main import DEFAULT_COAP_MASTER, master_url_for, start_agent
from edgerm.errors import ConfigError
from edgerm.ids import AgentId
from edgerm.master.main import RunningMaster
from edgerm.model import TaskState
from tests.contract.cluster import FAST, Recorder, running
from tests.contract.test_agent_transports import HELLO, LOOP, launch, task
from tests.integration.coap.helpers import eventually


class CountingTransport(CoapAgentTransport):
    """The real transport, counting module downloads."""

    def __init__(self, master_url: str) -> None:
        super().__init__(master_url)
        self.fetched: list[str] = []

    async def fetch_module(self, sha256: str) -> bytes:
        self.fetched.append(sha256)
        return await super().fetch_module(sha256)


async def test_a_module_crosses_the_link_once_per_agent(master: RunningMaster, tmp_path: Path) -> None:
    assert master.coap_url is not None
    counting = CountingTransport(master.coap_url)
    fw = Recorder()
    async with start_agent(master.coap_url, FAST, tmp_path, transport=counting) as agent, running(fw, master):
        for name in ("first", "second", "third"):
            await launch(fw, agent, (name, HELLO, 0.0))
            await fw.wait_state(name, TaskState.FINISHED)
    # LAUNCH carried the module's hash only; the agent fetched it once and ran it from its cache.
    assert len(counting.fetched) == 1


async def test_a_silently_lost_observation_is_recovered_by_the_heartbeat(master: RunningMaster, tmp_path: Path) -> None:
    assert master.coap_url is not None and master.coap is not None
    fw = Recorder()
    async with start_agent(master.coap_url, FAST, tmp_path) as agent, running(fw, master):
        adapter = master.coap._adapter  # the test reaches in to lose the observation without a word
        await eventually(lambda: len(adapter.observations) == 1)
        assert master.service.metrics.calls[("agent", "SUBSCRIBE")] == 1
        for observation in list(adapter.observations):
            observation.finish()  # no final notification: the agent still believes it observes
        await eventually(lambda: master.coap is not None and master.coap.channels.window(agent.agent_id) is None)
        # A launch now waits in the outbox; the heartbeat says so and the agent observes again.
        await launch(fw, agent, ("late", LOOP, 0.3))
        await fw.wait_state("late", TaskState.RUNNING)
        await fw.wait_state("late", TaskState.FAILED)
        assert master.service.metrics.calls[("agent", "SUBSCRIBE")] == 2  # observed again


def test_coap_flag_picks_the_coap_default_unless_a_coap_master_is_named() -> None:
    none = AgentConfig()
    assert master_url_for(None, True, {}, none) == DEFAULT_COAP_MASTER == "coap://127.0.0.1:5683"
    assert master_url_for(None, False, {}, none) == "http://127.0.0.1:5050"
    env = {"EDGERM_MASTER": "coap+tcp://10.0.0.2:5683"}
    assert master_url_for(None, True, env, none) == "coap+tcp://10.0.0.2:5683"
    configured = AgentConfig(master="coap://edge-master:5683")
    assert master_url_for(None, True, {}, configured) == "coap://edge-master:5683"
    assert master_url_for("coap://flag:1", True, env, configured) == "coap://flag:1"
    with pytest.raises(ConfigError, match="--coap"):
        master_url_for("http://127.0.0.1:5050", True, {}, none)


async def test_edgerm_agent_coap_process_runs_a_wasm_task_to_finished(master: RunningMaster, tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("heartbeat_interval: 0.2\nexecutors: [wasm]\n")
    env = {k: v for k, v in os.environ.items() if k != "EDGERM_MASTER"}
    assert master.coap_url is not None
    env["EDGERM_MASTER"] = master.coap_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgerm.agent.main",
        "--coap",
        "--config",
        str(config),
        "--work-dir",
        str(tmp_path / "state"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        fw = Recorder()
        async with running(fw, master):
            await eventually(lambda: (tmp_path / "state" / "agent_id").is_file(), within=20.0)
            agent_id = AgentId((tmp_path / "state" / "agent_id").read_text().strip())
            await eventually(lambda: master.service.core.agent_known(agent_id), within=20.0)
            offer = await fw.take_offer(agent_id)
            await fw.act().accept([offer.id], [task(offer, "from-cli", HELLO)])
            await fw.wait_state("from-cli", TaskState.FINISHED)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            output, _ = await proc.communicate()
        assert proc.returncode == 0, output.decode()
        assert b"Traceback" not in output
        assert not re.search(rb" INFO coap[\w.-]*: ", output), output.decode()  # aiocoap's loggers stay quiet
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
