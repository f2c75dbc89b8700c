"""The dashboard of a real cluster, as a person sees it in headless Chromium.

The cluster: a master with its embedded MQTT broker, real agents running
wasmtime (one named like an XSS attack), the temperature dataflow running
(and moved when its cloud agent dies), a framework whose tasks finish, trap
and time out, an agent that is lost and comes back, and one that stays lost.
Every page is loaded in the browser and checked for what an operator would
look for (agent names, task states, the dataflow's operators); a page left
open must update itself when an agent is lost. Screenshots go to
``$EDGERM_SCREENSHOTS`` or ``bench/results/screens/``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgerm.agent.config import AgentConfig, ResourceCaps
from edgerm.agent.devices import DeviceDeclaration
from edgerm.agent.main import RunningAgent, start_agent
from edgerm.frameworks import HttpDriver
from edgerm.frameworks.dataflow import DataflowRun, RunOptions, load
from edgerm.master.main import RunningMaster, start_master
from edgerm.master.state import MasterConfig
from edgerm.model import Offer, TaskState
from tests.integration.agent.test_agent_with_master import WASM_DIR, Launcher, one_task
from tests.integration.ops.browser import Browser, Tab, require_chromium
from tests.support import admin_headers, eventually

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
TEMPERATURE = ROOT / "examples" / "dataflows" / "temperature.yaml"
SCREENS = Path(os.environ.get("EDGERM_SCREENSHOTS", ROOT / "bench" / "results" / "screens"))
EVIL = '<img src=x onerror="window.pwned=1">evil'
WAIT = 30.0


class Fleet:
    def __init__(self, master: RunningMaster, work: Path) -> None:
        self.master = master
        self.work = work
        self.agents: dict[str, RunningAgent] = {}

    async def agent(self, name: str, *, domain: str = "edge", sensor: str = "", dirname: str = "") -> RunningAgent:
        config = AgentConfig(
            name=name,
            heartbeat_interval=0.2,
            resources=ResourceCaps(cpus=1.0, mem=512),
            attributes={"domain": domain, "site": "lab"},
            devices=(DeviceDeclaration("temperature", sensor),) if sensor else (),
            executors=frozenset({"wasm"}),
        )
        agent = await start_agent(self.master.url, config, self.work / (dirname or name))
        self.agents[name] = agent
        return agent

    async def stop(self, name: str) -> str:
        agent = self.agents.pop(name)
        await agent.stop()
        return agent.agent_id

    def lost(self, agent_id: str) -> bool:
        service = self.master.service
        return any(a.info.id == agent_id for a in service.history.departed_agents(service.now()))

    async def close(self) -> None:
        for agent in list(self.agents.values()):
            await agent.stop()
        self.agents.clear()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    b = Browser(require_chromium())
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


async def view(url: str) -> dict[str, Any]:
    base = "{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(url))
    headers = {"Accept": "application/json", **admin_headers(base)}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as r:
        assert r.status == 200, await r.text()
        data: dict[str, Any] = await r.json()
        return data


async def wait_text(tab: Tab, expression: str, expected: str, what: str) -> None:
    async def check() -> bool:
        return str(await tab.js(expression)) == expected

    await eventually(check, within=WAIT, what=what)


async def test_a_person_sees_the_cluster(browser: Browser, tmp_path: Path) -> None:
    config = MasterConfig(unreachable_timeout=1.0)  # a stopped agent is UNREACHABLE, then LOST a second later
    async with start_master(
        broker="embedded", allocation_interval=0.05, framework_heartbeat=0.5, config=config
    ) as master:
        fleet = Fleet(master, tmp_path)
        run: DataflowRun | None = None
        driver: HttpDriver | None = None
        driving: asyncio.Task[None] | None = None
        try:
            await fleet.agent("sensor-1", sensor="sim:sine")
            edge = await fleet.agent("edge-2")
            cloud = await fleet.agent("cloud-1", domain="cloud")
            flaky = await fleet.agent("flaky-3")
            await fleet.agent(EVIL)

            options = RunOptions(deadline=20.0, status_interval=0, retry_seconds=0.5)
            run = DataflowRun(load(TEMPERATURE), master.url, broker_url=master.broker_url, options=options)
            await run.start()
            assert await run.wait_running(WAIT), run.failure

            def tasks(offer: Offer) -> list[Any]:
                made = [
                    *one_task("hello-1", WASM_DIR / "hello.wat")(offer),
                    *one_task("trap-1", WASM_DIR / "trap.wat")(offer),
                    *one_task("loop-1", WASM_DIR / "loop.wat", time_limit=0.3)(offer),
                ]
                return [dataclasses.replace(t, name=f"demo-{t.task_id}") for t in made]

            fw = Launcher(tasks, on=lambda offer: offer.agent_id == edge.agent_id)  # not on cloud-1, stopped below
            driver = HttpDriver(fw, master.url)
            driving = asyncio.create_task(driver.run())
            await fw.wait_state("hello-1", TaskState.FINISHED)
            await fw.wait_state("trap-1", TaskState.FAILED)
            await fw.wait_state("loop-1", TaskState.FAILED)

            # flaky-3 is lost, then comes back with the same identity
            flaky_id = await fleet.stop("flaky-3")
            await eventually(lambda: fleet.lost(flaky_id), within=WAIT, what="flaky-3 declared lost")
            back = await fleet.agent("flaky-3")
            assert back.agent_id == flaky.agent_id
            await eventually(lambda: not fleet.lost(flaky_id), within=WAIT, what="flaky-3 back")

            # Home, left open: the cloud agent dies, the page counts it lost without a reload.
            tab = await browser.tab()
            token = admin_headers(master.url)["Authorization"].removeprefix("Bearer ")
            await tab.goto(master.url + "/?token=" + token)  # signs the browser in (a session cookie)
            assert await tab.js("document.querySelector('[data-k=\"totals.agents_lost\"]').textContent") == "0"
            await tab.js("window.stillTheSamePage = true")
            cloud_id = await fleet.stop("cloud-1")
            assert cloud_id == cloud.agent_id
            await wait_text(tab, "document.querySelector('[data-k=\"totals.agents_lost\"]').textContent", "1", "lost=1")
            assert await tab.js("window.stillTheSamePage") is True
            home = await tab.text()
            for name in ("sensor-1", "edge-2", "flaky-3", "cloud-1", EVIL):
                assert name in home, name
            assert "LOST" in home and "trap-1" in home and "Utilisation" in home
            await tab.screenshot(SCREENS / "home.png")

            # The dataflow moved off the lost cloud agent; the master heard its operators' stats.
            flow_url = master.url + "/ui/dataflows/temperature"

            async def moved_and_measured() -> bool:
                data = await view(flow_url)
                return bool(data["moves"] >= 1 and data["running"] == 4 and data["stats"])

            await eventually(moved_and_measured, within=WAIT, what="the dataflow moved, running, with stats")

            await tab.goto(master.url + "/ui/agents")
            agents = await tab.text()
            assert EVIL in agents  # shown as text ...
            assert await tab.js("window.pwned") is None  # ... never run
            assert await tab.js("document.querySelectorAll('main img').length") == 0
            rows = await tab.js(
                "[...document.querySelectorAll('tbody[data-list=agents] tr')].map(r => r.innerText.split('\\t')[0])"
            )
            assert set(rows) >= {"sensor-1", "edge-2", "flaky-3", "cloud-1", EVIL}
            lost_row = await tab.js(
                "[...document.querySelectorAll('tbody[data-list=agents] tr')]"
                ".find(r => r.innerText.startsWith('cloud-1')).querySelector('.st').textContent"
            )
            assert lost_row == "LOST"
            await tab.screenshot(SCREENS / "agents.png")

            await tab.goto(master.url + "/ui/frameworks")
            frameworks = await tab.text()
            assert "agent-tests" in frameworks and "dataflow:temperature" in frameworks
            await tab.screenshot(SCREENS / "frameworks.png")

            await tab.goto(master.url + "/ui/tasks?state=FAILED")
            failed = await tab.text()
            assert "trap-1" in failed and "loop-1" in failed and "hello-1" not in failed
            assert "TIME_LIMIT" in failed
            await tab.goto(master.url + "/ui/tasks")
            everything = await tab.text()
            assert "hello-1" in everything and "FINISHED" in everything and "RUNNING" in everything
            await tab.screenshot(SCREENS / "tasks.png")

            await tab.goto(master.url + "/ui/tasks/trap-1")
            states = await tab.js(
                "[...document.querySelectorAll('tbody[data-list=history] .st')].map(e => e.textContent)"
            )
            assert states[0] == "FAILED" and "STAGING" in states, states
            task_page = await tab.text()
            assert "demo-trap-1" in task_page and "unreachable" in task_page
            await tab.screenshot(SCREENS / "task-failed.png")

            # the output of a task, fetched from its agent through the master, as the page shows it
            await tab.goto(master.url + "/ui/tasks/hello-1")
            await wait_text(tab, "document.getElementById('log-stdout').textContent", "hello from edgerm\n", "stdout")
            await asyncio.sleep(3.5)  # the page's log poll ran: the text is still there once, not twice
            assert await tab.js("document.getElementById('log-stdout').textContent") == "hello from edgerm\n"
            await tab.screenshot(SCREENS / "task.png")

            await tab.goto(master.url + "/ui/dataflows")
            assert "temperature" in await tab.text()
            await tab.goto(flow_url)
            graph = await tab.js("[...document.querySelectorAll('svg text.title')].map(t => t.textContent)")
            assert {g.split()[0] for g in graph} == {"read", "fahrenheit", "average", "report"}
            flow = await tab.text()
            assert "sensor-1" in flow and "RUNNING" in flow
            edges = await tab.js("document.querySelectorAll('svg path.edge').length")
            assert edges == 3
            await asyncio.sleep(2.5)  # one live update of the rates: visible in the screenshot, not asserted
            await tab.screenshot(SCREENS / "dataflow.png")
            await tab.close()
        finally:
            if driver is not None:
                await driver.stop()
            if driving is not None:
                await asyncio.gather(driving, return_exceptions=True)
            if run is not None:
                await run.stop()
            await fleet.close()


async def test_pages_render_without_javascript_and_escape_everything(tmp_path: Path) -> None:
    """What a browser with JavaScript off (or curl) gets: the content itself, escaped."""
    async with start_master(allocation_interval=0.05) as master:
        fleet = Fleet(master, tmp_path)
        try:
            await fleet.agent(EVIL)
            async with aiohttp.ClientSession(headers=admin_headers(master.url)) as http:
                for path in ("/", "/ui/agents"):
                    async with http.get(master.url + path) as r:
                        assert r.status == 200 and r.content_type == "text/html"
                        page = await r.text()
                    assert "&lt;img src=x onerror=&quot;window.pwned=1&quot;&gt;evil" in page
                    assert EVIL not in page
                async with http.get(master.url + "/ui/tasks?page=-3&size=100000&state=<x>") as r:
                    assert r.status == 200
                    assert "<x>" not in await r.text()
                async with http.get(master.url + "/ui/tasks/%3Cscript%3E") as r:
                    assert r.status == 404
                    assert "<script>" not in (await r.text()).split("<main>")[1]
                async with http.get(master.url + "/ui/dataflows/nope", headers={"Accept": "application/json"}) as r:
                    assert r.status == 404 and "error" in await r.json()
        finally:
            await fleet.close()
