"""Task output through the master: GET /api/v1/tasks/{id}/logs over the agent's own channel (HTTP and CoAP).

Real master, real agents running wasmtime; the agent opens no port (the
request travels as a pushed command). Failures are real too: an agent that
stopped answering gets a 504 in bounded time, a lost agent a 503, an
unknown task a 404; nothing is left waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgerm.agent.config import AgentConfig, ResourceCaps
from edgerm.agent.main import start_agent
from edgerm.frameworks import HttpDriver
from edgerm.master.main import RunningMaster, start_master
from edgerm.master.state import MasterConfig
from edgerm.model import Offer, TaskState
from tests.integration.agent.test_agent_with_master import WASM_DIR, Launcher, one_task
from tests.support import admin_headers, eventually

FAST = AgentConfig(heartbeat_interval=0.2, executors=frozenset({"wasm"}), resources=ResourceCaps(cpus=2, mem=1024))


@contextlib.asynccontextmanager
async def framework(master: RunningMaster, fw: Launcher) -> AsyncIterator[HttpDriver]:
    driver = HttpDriver(fw, master.url)
    task = asyncio.create_task(driver.run())
    try:
        yield driver
    finally:
        await driver.stop()
        await asyncio.gather(task, return_exceptions=True)


async def logs(master: RunningMaster, task_id: str, **query: Any) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession(headers=admin_headers(master.url)) as http,
        http.get(f"{master.url}/api/v1/tasks/{task_id}/logs", params={k: str(v) for k, v in query.items()}) as r,
    ):
        assert r.content_type == "application/json"
        body: dict[str, Any] = await r.json()
        return r.status, body


def echo(task_id: str, *words: str) -> Any:
    def make(offer: Offer) -> list[Any]:
        return one_task(task_id, WASM_DIR / "echo.wat", *words)(offer)

    return make


@pytest.mark.parametrize("transport", ["http", "coap"])
async def test_a_tasks_output_comes_through_the_master(transport: str, tmp_path: Path) -> None:
    async with start_master(allocation_interval=0.05, coap_port=0 if transport == "coap" else None) as master:
        url = master.coap_url if transport == "coap" else master.url
        assert url is not None
        fw = Launcher(echo("echo-1", "hello", "logs"))
        async with start_agent(url, FAST, tmp_path), framework(master, fw):
            await fw.wait_state("echo-1", TaskState.FINISHED)
            status, piece = await logs(master, "echo-1", stream="stdout")
            assert status == 200, piece
            lines = piece["data"].splitlines()
            assert lines[1:3] == ["hello", "logs"] and piece["offset"] == 0
            assert piece["size"] == piece["length"] == len(piece["data"].encode())
            # a tail and a follow-on read
            status, tail = await logs(master, "echo-1", stream="stdout", offset=-5, limit=100)
            assert status == 200 and tail["offset"] == piece["size"] - 5 and len(tail["data"]) == 5
            status, rest = await logs(master, "echo-1", offset=piece["size"])
            assert status == 200 and rest["data"] == "" and rest["offset"] == piece["size"]
            status, err = await logs(master, "echo-1", stream="stderr")
            assert status == 200 and err["data"] == ""
            assert len(master.handlers.logs) == 0  # nothing left waiting

            for query, code in (({"stream": "stdin"}, 400), ({"limit": "0"}, 400), ({"offset": "x"}, 400)):
                status, body = await logs(master, "echo-1", **query)
                assert status == code and body["error"] == "MalformedMessage", body
            status, body = await logs(master, "no-such-task")
            assert status == 404 and body["error"] == "UnknownTask"


async def test_a_silent_agent_times_out_and_a_lost_one_is_unavailable(tmp_path: Path) -> None:
    slow = AgentConfig(heartbeat_interval=1.0, executors=frozenset({"wasm"}), resources=ResourceCaps(cpus=2, mem=1024))
    config = MasterConfig(unreachable_timeout=1.0)  # silent: UNREACHABLE after 3 s, then LOST a second later
    async with start_master(allocation_interval=0.05, config=config) as master:
        master.handlers.logs.timeout = 0.5  # the test does not wait the default 5 s
        fw = Launcher(echo("echo-2", "bye"))
        agent = await start_agent(master.url, slow, tmp_path)
        async with framework(master, fw):
            await fw.wait_state("echo-2", TaskState.FINISHED)
            await agent.stop()  # gone without a word: the master still holds it for 3 s
            loop = asyncio.get_running_loop()
            started = loop.time()
            status, body = await logs(master, "echo-2")
            assert status == 504 and body["error"] == "AgentTimeout", body
            assert loop.time() - started < 3.0
            assert len(master.handlers.logs) == 0
            # once the master gave the agent up, there is nobody to ask
            core = master.service.core
            await eventually(lambda: not core.agent_known(agent.agent_id), what="the agent declared lost")
            status, body = await logs(master, "echo-2")
            assert status == 503 and body["error"] == "Unavailable", body


async def edgerm_cli(*args: str, within: float = 30.0) -> tuple[int, str, str]:
    env = {**os.environ, "EDGERM_TOKEN": _admin_token(args)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgerm.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(within):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_edgerm_logs_and_task_print_output_and_follow_until_the_end(tmp_path: Path) -> None:
    async with start_master(allocation_interval=0.05) as master:

        def make(offer: Offer) -> list[Any]:
            return [
                *echo("echo-3", "first", "second")(offer),
                *one_task("loop-3", WASM_DIR / "loop.wat", time_limit=1.5)(offer),
            ]

        fw = Launcher(make)
        async with start_agent(master.url, FAST, tmp_path), framework(master, fw):
            await fw.wait_state("echo-3", TaskState.FINISHED)
            code, out, err = await edgerm_cli("--master", master.url, "logs", "echo-3")
            assert code == 0, err
            assert out.splitlines()[1:3] == ["first", "second"]
            code, out, _ = await edgerm_cli("--master", master.url, "logs", "echo-3", "--tail", "7")
            assert code == 0 and out == "second\n"

            await fw.wait_state("loop-3", TaskState.RUNNING)
            code, out, err = await edgerm_cli("--master", master.url, "logs", "-f", "loop-3")
            assert code == 0, err  # it returned because the task ended (its time limit)
            assert fw.states("loop-3")[-1] is TaskState.FAILED

            code, out, err = await edgerm_cli("--master", master.url, "task", "echo-3", "--lines", "2")
            assert code == 0, err
            assert "FINISHED" in out and "STAGING" in out and "RUNNING" in out  # the status history
            assert "--- stdout (last 2 line(s)" in out and "second" in out

            code, _, err = await edgerm_cli("--master", master.url, "logs", "nope")
            assert code == 1 and "does not know a task 'nope'" in err
        code, _, err = await edgerm_cli("--master", "http://127.0.0.1:9", "logs", "echo-3")
        assert code == 2 and "cannot reach the master" in err


def _admin_token(args: tuple[str, ...] | list[str]) -> str:
    """The admin token the in-process master (named by ``--master URL`` in ``args``) provisioned."""
    url = args[list(args).index("--master") + 1]
    return admin_headers(url).get("Authorization", "").removeprefix("Bearer ")
