"""``edgerm-agent`` as a process: it registers, and SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from edgerm.agent.main import main
from edgerm.master.main import RunningMaster, start_master
from tests.integration.agent.helpers import eventually
from tests.support import admin_headers


@pytest.fixture
async def master() -> AsyncIterator[RunningMaster]:
    async with start_master(allocation_interval=0.05) as running:
        yield running


async def agents_of(master: RunningMaster) -> list[dict[str, object]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(master.url + "/api/v1/state", headers=admin_headers(master.url)) as resp,
    ):
        agents: list[dict[str, object]] = (await resp.json())["agents"]
        return agents


async def test_agent_process_registers_and_stops_on_sigterm(master: RunningMaster, tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("heartbeat_interval: 0.2\nexecutors: [wasm]\nattributes: {domain: cli-test}\n")
    env = {k: v for k, v in os.environ.items() if k != "EDGERM_MASTER"}
    env["EDGERM_MASTER"] = master.url  # the flag-less way to name the master
    assert master.tokens is not None
    env["EDGERM_JOIN_TOKEN"] = master.tokens.join  # joins once, then keeps its credential in the work dir
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgerm.agent.main",
        "--config",
        str(config),
        "--work-dir",
        str(tmp_path / "state"),
        "--name",
        "cli-agent",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await eventually(lambda: _registered(master), within=20.0)
        agent_id = (tmp_path / "state" / "agent_id").read_text().strip()
        [entry] = await agents_of(master)
        assert agent_id in str(entry) and "cli-agent" in str(entry) and "cli-test" in str(entry)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            output, _ = await proc.communicate()
        assert proc.returncode == 0, output.decode()
        assert b"stopping" in output
        assert master.tokens.join.encode() not in output  # no token in the agent's log
        credential = tmp_path / "state" / "credential.json"
        assert credential.stat().st_mode & 0o777 == 0o600
        assert json.loads(credential.read_text())["token"].encode() not in output
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _registered(master: RunningMaster) -> bool:
    return len(await agents_of(master)) == 1


@pytest.mark.expect_errors(r"devices\[0\]\.handle: expected a string")  # the one line it exits with
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("devices:\n  - name: cam\n    handle: 7\n")
    assert main(["--config", str(config)]) == 2
    assert "devices[0].handle: expected a string" in capsys.readouterr().err


async def test_a_second_agent_on_the_same_work_dir_exits_at_once_naming_dir_and_pid(
    master: RunningMaster, tmp_path: Path
) -> None:
    work_dir = tmp_path / "state"
    config = tmp_path / "agent.yaml"
    config.write_text("heartbeat_interval: 0.2\nexecutors: [wasm]\n")
    args = [sys.executable, "-m", "edgerm.agent.main", "--master", master.url, "--config", str(config)]
    assert master.tokens is not None
    env = {**os.environ, "EDGERM_JOIN_TOKEN": master.tokens.join}
    first = await asyncio.create_subprocess_exec(
        *args,
        "--work-dir",
        str(work_dir),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    try:
        await eventually(lambda: _registered(master), within=20.0)
        second = await asyncio.create_subprocess_exec(
            *args, "--work-dir", str(work_dir), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
        )
        async with asyncio.timeout(20):
            out, err = await second.communicate()
        assert second.returncode == 2
        lines = err.decode().strip().splitlines()
        assert len(lines) == 1, lines  # one line, no traceback
        assert lines[0].endswith(f"edgerm-agent: work dir {work_dir} is in use by another agent (pid {first.pid})")
        assert out == b""
        assert first.returncode is None  # the first agent is untouched
        assert len(await agents_of(master)) == 1
    finally:
        first.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            await first.wait()
