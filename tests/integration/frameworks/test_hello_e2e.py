"""End to end: the real master, the real agent (wasmtime), and the hello
example as a separate process, with the example's default WAT module."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgerm.frameworks import Framework, FrameworkDriver, run, wasm_task
from edgerm.model import Offer, Reason, TaskState, TaskStatus
from tests.support import admin_headers

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "hello_framework.py"
TRAP_WAT = '(module (func (export "_start") unreachable))'


@pytest.fixture
async def agent(master: Any, tmp_path: Path) -> Any:
    agent_main = pytest.importorskip("edgerm.agent.main")
    config_mod = pytest.importorskip("edgerm.agent.config")
    config = config_mod.AgentConfig(name="e2e-agent", heartbeat_interval=0.2, executors=frozenset({"wasm"}))
    async with await agent_main.start_agent(master.url, config, tmp_path / "agent") as running:
        yield running


async def hello(master: Any, *args: str) -> tuple[int, list[str], str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        *("--master", master.url, "--timeout", "60", *args),
        env={**os.environ, "EDGERM_TOKEN": master.tokens.framework},  # a process of its own: the token by env
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(90):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode().splitlines(), err.decode()


async def test_hello_tasks_finish_and_exit_0(master: Any, agent: Any) -> None:
    code, lines, err = await hello(master, "--tasks", "3")
    assert code == 0, err
    short = agent.agent_id[:8]
    for i in (1, 2, 3):
        assert f"task hello-{i} on agent {short}: FINISHED" in lines, lines
    async with (
        aiohttp.ClientSession() as http,
        http.get(master.url + "/api/v1/state", headers=admin_headers(master.url)) as resp,
    ):
        tasks = (await resp.json())["tasks"]
    assert sorted(t["name"] for t in tasks if t["state"] == "FINISHED") == ["hello-1", "hello-2", "hello-3"]


async def test_hello_exits_non_zero_when_a_task_fails(master: Any, agent: Any, tmp_path: Path) -> None:
    trap = tmp_path / "trap.wat"
    trap.write_text(TRAP_WAT)
    code, lines, err = await hello(master, "--tasks", "1", "--module", str(trap))
    assert code == 1, err
    assert f"task hello-1 on agent {agent.agent_id[:8]}: FAILED" in lines


async def test_a_framework_sees_the_real_failure_reason(master: Any, agent: Any, tmp_path: Path) -> None:
    trap = tmp_path / "trap.wat"
    trap.write_text(TRAP_WAT)

    class Once(Framework):
        name = "once"
        final: TaskStatus | None = None
        launched = False

        async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
            for o in offers:
                if self.launched:
                    await driver.decline([o.id])
                else:
                    self.launched = True
                    await driver.accept([o.id], [wasm_task(o, "trap", trap)])

        async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
            if status.state.terminal:
                self.final = status
                await driver.stop()

    fw = Once()
    async with asyncio.timeout(30):
        await run(fw, master.url)
    assert fw.final is not None and fw.final.state is TaskState.FAILED and fw.final.reason is Reason.TRAP
