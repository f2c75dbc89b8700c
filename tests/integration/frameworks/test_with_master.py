"""Frameworks, the hello example and the CLI against the REAL master on 127.0.0.1.

Agents here are the scripted agent of conftest.py (the real agent protocol,
tasks finish at once); the real agent runs the example in test_hello_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgerm import cli
from edgerm.errors import UnknownOffer
from edgerm.frameworks import Framework, FrameworkDriver, HttpDriver, wasm_task
from edgerm.ids import FrameworkId, OfferId
from edgerm.model import Offer, TaskState, TaskStatus
from tests.support import admin_headers

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "hello_framework.py"
WASM = b"\0asm\1\0\0\0"


async def state(master: Any) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(master.url + "/api/v1/state", headers=admin_headers(master.url)) as resp,
    ):
        result: dict[str, Any] = await resp.json()
        return result


async def edgerm_cli(*argv: str) -> int:
    # The CLI is synchronous (urllib); run it off the loop that serves the master.
    return await asyncio.to_thread(cli.main, list(argv))


class OneTask(Framework):
    """Launches one task on the first offer and remembers what it hears."""

    name = "one-task"

    def __init__(self) -> None:
        self.registrations: list[FrameworkId] = []
        self.states: list[TaskState] = []
        self.finished = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.launched = False

    async def registered(self, driver: FrameworkDriver, framework_id: FrameworkId, master_id: str) -> None:
        self.registrations.append(framework_id)
        self.subscribed.set()

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        if self.launched:
            await driver.decline([o.id for o in offers], refuse_seconds=60)
            return
        first, *rest = offers
        self.launched = True
        await driver.accept([first.id], [wasm_task(first, "only", WASM)])
        if rest:
            await driver.decline([o.id for o in rest])

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        self.states.append(status.state)
        if status.state is TaskState.FINISHED:
            self.finished.set()


async def test_subscribe_call_errors_and_teardown(master: Any, capsys: pytest.CaptureFixture[str]) -> None:
    fw = OneTask()
    driver = HttpDriver(fw, master.url)
    task = asyncio.create_task(driver.run())
    async with asyncio.timeout(5):
        await fw.subscribed.wait()
    assert driver.framework_id and fw.registrations == [driver.framework_id]
    with pytest.raises(UnknownOffer):
        await driver.accept([OfferId("no-such-offer")], [])
    await driver.suppress()
    assert await edgerm_cli("--master", master.url, "frameworks", "--wide") == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:4] == ["ID", "NAME", "ACTIVE", "SUPPRESSED"]
    assert row.split()[:4] == [driver.framework_id, "one-task", "yes", "yes"]
    await driver.stop()  # teardown
    async with asyncio.timeout(5):
        await task
    assert (await state(master))["frameworks"] == []


async def test_task_runs_and_updates_are_acknowledged(
    master: Any, scripted_agent: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fw = OneTask()
    driver = HttpDriver(fw, master.url)
    task = asyncio.create_task(driver.run())
    async with asyncio.timeout(10):
        await fw.finished.wait()
    assert fw.states == [TaskState.RUNNING, TaskState.FINISHED]
    assert [t.name for t in scripted_agent.launched] == ["only"]
    for _ in range(100):  # the acknowledgement follows the callback
        (framework,) = (await state(master))["frameworks"]
        if not framework["unacknowledged"]:
            break
        await asyncio.sleep(0.02)
    assert framework["unacknowledged"] == []
    assert await edgerm_cli("--master", master.url, "--json", "tasks") == 0
    (shown,) = json.loads(capsys.readouterr().out)
    assert shown["name"] == "only" and shown["state"] == "FINISHED" and shown["framework_id"] == driver.framework_id
    assert await edgerm_cli("--master", master.url, "agents") == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == ["agent-a1", "scripted"]
    await driver.stop(teardown=False)
    await task


async def test_driver_resubscribes_when_the_master_restarts(master: Any) -> None:
    main = pytest.importorskip("edgerm.master.main")
    fw = OneTask()
    driver = HttpDriver(fw, master.url, backoff_initial=0.02, backoff_max=0.1)
    task = asyncio.create_task(driver.run())
    async with asyncio.timeout(5):
        await fw.subscribed.wait()
    fw.subscribed.clear()
    port = master.port
    await master.stop()
    # The restarted master keeps its credentials (as it would keep its credentials file).
    same = {"credentials": master.security.store, "tokens": master.tokens}
    async with main.start_master(port=port, framework_heartbeat=0.2, **same) as again:
        async with asyncio.timeout(5):
            await fw.subscribed.wait()
        assert fw.registrations == [fw.registrations[0]] * 2  # the same framework id
        assert [f["id"] for f in (await state(again))["frameworks"]] == [fw.registrations[0]]
        await driver.stop()
    await task


async def test_hello_example_runs_to_completion(master: Any, scripted_agent: Any) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        *("--master", master.url, "--tasks", "3", "--timeout", "30"),
        env={**os.environ, "EDGERM_TOKEN": master.tokens.framework},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    for i in (1, 2, 3):
        assert f"task hello-{i} on agent agent-a1: RUNNING" in lines
        assert f"task hello-{i} on agent agent-a1: FINISHED" in lines
    assert len(scripted_agent.launched) == 3
    assert (await state(master))["frameworks"] == []  # it tore itself down


async def test_cli_exits_2_when_the_master_is_unreachable(master: Any, capsys: pytest.CaptureFixture[str]) -> None:
    url = master.url
    await master.stop()
    assert await edgerm_cli("--master", url, "--timeout", "2", "agents") == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"edgerm: cannot reach the master at {url}")
