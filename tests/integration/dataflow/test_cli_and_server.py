"""`edgerm-dataflow plan` / `run` as processes (Ctrl-C tears down), and the `serve` HTTP API,
against a real master, broker and agents."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from edgerm.auth.client import resolve_token
from edgerm.auth.principal import Role
from edgerm.frameworks.dataflow import start_server
from tests.integration.dataflow.conftest import Cluster

ROOT = Path(__file__).resolve().parents[3]
TEMPERATURE = ROOT / "examples" / "dataflows" / "temperature.yaml"


def _env(args: tuple[str, ...]) -> dict[str, str]:
    """The environment with the framework token of the in-process master named by ``--master``."""
    env = dict(os.environ)
    if "--master" in args:
        token = resolve_token(None, args[args.index("--master") + 1], Role.FRAMEWORK, env={})
        if token:
            env["EDGERM_TOKEN"] = token
    return env


async def cli(*args: str, within: float = 60.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgerm.frameworks.dataflow.cli",
        *args,
        env=_env(args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
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


async def three_agents(cluster: Cluster) -> None:
    await cluster.agent("sensor-1", sensor="sim:sine")
    await cluster.agent("edge-2")
    await cluster.agent("cloud-1", domain="cloud")


async def test_plan_prints_placements_or_the_reasons(embedded_cluster: Cluster) -> None:
    cluster = embedded_cluster
    await cluster.agent("cloud-1", domain="cloud")
    code, out, _ = await cli("plan", str(TEMPERATURE), "--master", cluster.master.url, "--wait", "1")
    assert code == 1
    assert "read#0 could not be placed" in out and "missing device temperature" in out
    await cluster.agent("sensor-1", sensor="sim:sine")
    code, out, err = await cli("plan", str(TEMPERATURE), "--master", cluster.master.url, "--wait", "3")
    assert code == 0, out + err
    assert "4 placed, 0 unplaced" in out and "average#0 ->" in out
    assert "WARNING" not in err, err  # the master ending the stream on the probe's TEARDOWN is expected
    assert not await cluster.tasks()  # nothing launched


async def test_run_fails_with_the_reasons_when_the_deadline_passes(embedded_cluster: Cluster) -> None:
    cluster = embedded_cluster
    await cluster.agent("edge-2")
    code, out, err = await cli(
        "run", str(TEMPERATURE), "--master", cluster.master.url, "--deadline", "1", "--status-interval", "0"
    )
    assert code == 1
    assert "could not be placed within 1s" in err and "missing device temperature" in err
    assert "temperature: failed" in out


async def test_run_shows_live_status_and_ctrl_c_tears_everything_down(embedded_cluster: Cluster) -> None:
    cluster = embedded_cluster
    await three_agents(cluster)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgerm.frameworks.dataflow.cli",
        *("run", str(TEMPERATURE), "--master", cluster.master.url, "--broker", cluster.broker_url),
        *("--status-interval", "0.5"),
        env=_env(("--master", cluster.master.url)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            while not any(line.startswith("[report]") for line in lines):
                lines.append((await proc.stdout.readline()).decode())
        assert any("== temperature: running" in line for line in lines)
        assert any("read#0" in line and "sensor-1" in line and "RUNNING" in line for line in lines)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            rest, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert "temperature: stopped" in rest.decode()
    tasks = await cluster.tasks()
    assert tasks and all(t["state"] == "KILLED" for t in tasks), tasks


async def test_serve_accepts_reports_and_deletes_dags(embedded_cluster: Cluster) -> None:
    cluster = embedded_cluster
    await three_agents(cluster)
    server = await start_server(cluster.master.url, broker_url=cluster.broker_url)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(server.url + "/dags", data=TEMPERATURE.read_bytes()) as resp:
                assert resp.status == 201, await resp.text()
                created = await resp.json()
            run_id = created["id"]
            assert created["name"] == "temperature" and created["status"] == f"/dags/{run_id}"

            async def status() -> dict[str, object]:
                async with http.get(f"{server.url}/dags/{run_id}") as resp:
                    assert resp.status == 200
                    body: dict[str, object] = await resp.json()
                    return body

            last: dict[str, object] = {}

            async def running() -> bool:
                nonlocal last
                last = await status()
                stream = last["stream"]
                assert isinstance(stream, dict)
                return last["phase"] == "running" and int(stream["sink_records"]) > 0

            for _ in range(300):
                if await running():
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"not running with records within 30s: {last}")
            instances = last["instances"]
            assert isinstance(instances, list) and {i["instance"] for i in instances} == {
                "read#0",
                "fahrenheit#0",
                "average#0",
                "report#0",
            }
            async with http.get(server.url + "/metrics") as resp:
                assert resp.status == 200
                samples = {
                    (s.name, tuple(sorted(s.labels.items()))): s.value
                    for f in text_string_to_metric_families(await resp.text())
                    for s in f.samples
                }
            assert (
                samples[("edgerm_dataflow_phase", (("dag", "temperature"), ("phase", "running"), ("run", run_id)))] == 1
            )
            assert samples[("edgerm_dataflow_instances", (("dag", "temperature"), ("state", "RUNNING")))] == 4
            assert samples[("edgerm_dataflow_moves_total", (("dag", "temperature"),))] == 0
            assert samples[("edgerm_dataflow_sink_records_total", (("dag", "temperature"),))] > 0
            assert ("edgerm_dataflow_operator_dropped_total", (("dag", "temperature"), ("operator", "read"))) in samples
            assert any(name == "edgerm_dataflow_operator_records_per_second" for name, _ in samples)
            async with http.post(server.url + "/dags", data=TEMPERATURE.read_bytes()) as resp:
                assert resp.status == 409
            async with http.post(server.url + "/dags", data=b"name: x\noperators:\n  a: {kind: nope}\n") as resp:
                assert resp.status == 400
                problems = (await resp.json())["problems"]
                assert {(p["line"], p["path"]) for p in problems} >= {(3, "operators.a.kind")}
            async with http.get(server.url + "/dags") as resp:
                assert await resp.json() == [{"id": run_id, "name": "temperature", "phase": "running"}]
            async with http.delete(f"{server.url}/dags/{run_id}") as resp:
                assert resp.status == 200
                assert (await resp.json())["phase"] == "stopped"
            async with http.get(f"{server.url}/dags/{run_id}") as resp:
                assert resp.status == 404
        assert all(t["state"] == "KILLED" for t in await cluster.tasks())
    finally:
        await server.stop()
