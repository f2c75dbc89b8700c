"""``examples/hello_framework.py --docker IMAGE`` as its own process, against a real master and real agents.

The cluster has a Docker agent and a WebAssembly-only agent: the example
must skip the offers of the latter (``supports``) and run every task as a
container on the former, then exit 0; the containers are removed once the
tasks' ends are acknowledged.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from edgerm.auth.client import resolve_token
from edgerm.auth.principal import Role
from tests.integration.docker_cluster.conftest import IMAGE, Cluster, containers_of, eventually
from tests.support import admin_headers

pytestmark = pytest.mark.docker

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "hello_framework.py"


async def hello(master_url: str, *args: str) -> tuple[int, list[str], str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        *("--master", master_url, "--timeout", "60", *args),
        env={**os.environ, "EDGERM_TOKEN": resolve_token(None, master_url, Role.FRAMEWORK, env={}) or ""},
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


async def test_hello_docker_runs_every_task_as_a_container_and_exits_0(cluster: Cluster) -> None:
    docker_agent = await cluster.start_agent("docker-agent")
    wasm_agent = await cluster.start_agent("wasm-agent", executors=("wasm",))

    code, lines, err = await hello(cluster.master.url, "--tasks", "3", "--docker", IMAGE)

    assert code == 0, (lines, err)
    for i in (1, 2, 3):
        assert f"task hello-{i} on agent {docker_agent.agent_id[:8]}: FINISHED" in lines, lines
    async with (
        aiohttp.ClientSession() as http,
        http.get(cluster.master.url + "/api/v1/state", headers=admin_headers(cluster.master.url)) as resp,
    ):
        tasks = (await resp.json())["tasks"]
    assert sorted((t["name"], t["state"], t["executor"], t["agent_id"]) for t in tasks) == [
        (f"hello-{i}", "FINISHED", "docker", docker_agent.agent_id) for i in (1, 2, 3)
    ]
    assert all(t["agent_id"] != wasm_agent.agent_id for t in tasks)
    await eventually(lambda: not containers_of(docker_agent.agent_id), "the hello containers' removal")
