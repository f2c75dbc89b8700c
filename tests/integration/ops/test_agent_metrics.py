"""An agent serving /metrics (opt-in ``metrics_port``) next to a real master, with real wasmtime tasks.

The exposition is parsed by prometheus_client; the figures must show what ran:
launches, outcomes by state, run times, the module cache's hits.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from edgerm.agent.config import AgentConfig, ResourceCaps
from edgerm.agent.main import main as agent_main
from edgerm.agent.main import start_agent
from edgerm.frameworks import HttpDriver
from edgerm.master.main import start_master
from edgerm.model import TaskState
from tests.integration.agent.test_agent_with_master import WASM_DIR, Launcher, framework_runner, one_task
from tests.support import eventually

__all__ = ["framework_runner"]  # a fixture, used by name

FAST = AgentConfig(heartbeat_interval=0.2, executors=frozenset({"wasm"}), resources=ResourceCaps(cpus=2, mem=1024))


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        assert r.status == 200 and r.content_type == "text/plain"
        text = await r.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_agent_serves_task_figures_only_when_asked(tmp_path: Path) -> None:
    async with (
        start_master(allocation_interval=0.05) as master,
        start_agent(master.url, FAST, tmp_path / "quiet") as quiet,
    ):
        assert quiet.metrics_url is None  # default: the agent listens on no port
    async with (
        start_master(allocation_interval=0.05) as master,
        start_agent(master.url, FAST, tmp_path / "a", metrics_port=0) as agent,
    ):
        assert agent.metrics_url is not None

        def make(offer: object) -> list[object]:
            return [
                *one_task("hello-1", WASM_DIR / "hello.wat")(offer),  # type: ignore[arg-type]
                *one_task("hello-2", WASM_DIR / "hello.wat")(offer),  # type: ignore[arg-type]
                *one_task("trap-1", WASM_DIR / "trap.wat")(offer),  # type: ignore[arg-type]
            ]

        fw = Launcher(make)
        driver = HttpDriver(fw, master.url)
        run = asyncio.create_task(driver.run())
        try:
            for task_id, state in (("hello-1", "FINISHED"), ("hello-2", "FINISHED"), ("trap-1", "FAILED")):
                await fw.wait_state(task_id, TaskState(state))
            url = agent.metrics_url

            async def outcomes_counted() -> bool:
                s = await scrape(url)
                key = (
                    "edgerm_agent_task_outcomes_total",
                    (("executor", "wasm"), ("reason", "COMMAND_EXITED"), ("state", "FINISHED")),
                )
                return s.get(key, 0) == 2

            await eventually(outcomes_counted, what="two FINISHED outcomes on the agent's /metrics")
            s = await scrape(url)
            assert s[("edgerm_agent_tasks_launched_total", (("executor", "wasm"),))] == 3
            assert (
                s[
                    (
                        "edgerm_agent_task_outcomes_total",
                        (("executor", "wasm"), ("reason", "TRAP"), ("state", "FAILED")),
                    )
                ]
                == 1
            )
            assert s[("edgerm_agent_task_run_seconds_count", (("executor", "wasm"), ("state", "FINISHED")))] == 2
            # two modules compiled at least once each; a launch that found one compiled counts as a hit
            hits = s[("edgerm_agent_module_cache_hits_total", (("executor", "wasm"),))]
            assert s[("edgerm_agent_modules_compiled_total", (("executor", "wasm"),))] + hits >= 2
            assert s[("edgerm_agent_registered", ())] == 1
            assert s[("edgerm_agent_process_resident_memory_bytes", ())] > 0
        finally:
            await driver.stop()
            await asyncio.gather(run, return_exceptions=True)


def test_metrics_port_flag_is_documented_and_off_by_default(capsys: object) -> None:
    with contextlib.suppress(SystemExit):
        agent_main(["--help"])
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "--metrics-port" in out and "default: off" in out
