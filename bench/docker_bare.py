"""Docker launch latency: DockerRuntime.launch -> TaskStarted, against a bare ``containers.run`` in the same run.

    python bench/docker_bare.py [--runs 20] [--image edgerm-test/busybox:latest] [--network bridge|host|none]

The baseline is the docker SDK's ``containers.run(detach=True)``: the time until it returns, when the container
is running. The runtime figure is the time from ``launch()`` to its ``TaskStarted`` report. Both start the same
long-sleeping command; runs alternate between the two so drift on the machine hits both alike, and one warm-up
of each is dropped (the first bridge-network container is slower). Every container made is removed at the end.
Results: bench/results/docker_bare.json (docker_bare_host.json, ... for other networks). Needs a Docker engine
and the test image (scripts/setup_docker.sh).

``bare_run_seconds`` and ``runtime_launch_seconds`` are meant for reuse (bench/launch_latency.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save, summary_ms

from edgerm.agent.docker import DockerRuntime
from edgerm.agent.docker_engine import DockerEngine
from edgerm.agent.runtime import RuntimeReport, TaskStarted
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.model import DockerSpec, Network, TaskInfo
from edgerm.resources import Resources

COMMAND = ("sleep", "3600")
RESOURCES = "cpus:0.1;mem:32"


def bare_run_seconds(client: Any, image: str, agent_label: str, network: Network = Network.BRIDGE) -> float:
    """One bare ``containers.run(detach=True)`` with the same limits as a task; seconds until it returns."""
    began = time.perf_counter()
    client.containers.run(
        image,
        list(COMMAND),
        detach=True,
        labels={"edgerm.agent": agent_label},
        network_mode=network.value.lower(),
        nano_cpus=100_000_000,
        mem_limit=32 * 1024 * 1024,
        memswap_limit=32 * 1024 * 1024,
    )
    return time.perf_counter() - began


async def runtime_launch_seconds(
    runtime: DockerRuntime, image: str, workdir: Path, network: Network = Network.BRIDGE
) -> float:
    """One ``DockerRuntime.launch``; seconds until its ``TaskStarted`` report."""
    started = asyncio.Event()
    task = TaskInfo(
        task_id=TaskId(f"bench-{uuid.uuid4().hex[:10]}"),
        name="bench",
        agent_id=runtime.agent_id,
        resources=Resources.parse(RESOURCES),
        container=DockerSpec(image=image, network=network),
        args=COMMAND,
        framework_id=FrameworkId("bench"),
    )

    ended: list[RuntimeReport] = []

    def report(r: RuntimeReport) -> None:
        if isinstance(r, TaskStarted):
            started.set()
        elif not started.is_set():  # an end before a start: the launch failed
            ended.append(r)
            started.set()

    began = time.perf_counter()
    await runtime.launch(task, workdir / task.task_id, report)
    await started.wait()
    took = time.perf_counter() - began
    if ended:
        raise RuntimeError(f"bench task did not start: {ended[0]}")
    return took


async def measure(runs: int, image: str, network: Network) -> dict[str, Any]:
    bare_label = f"bench-bare-{uuid.uuid4().hex[:8]}"
    runtime = DockerRuntime(AgentId(f"bench-docker-{uuid.uuid4().hex[:8]}"), mount_workdir=False)
    client = docker.from_env()
    bare: list[float] = []
    launched: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(runs + 1):
                b = await asyncio.to_thread(bare_run_seconds, client, image, bare_label, network)
                r = await runtime_launch_seconds(runtime, image, Path(tmp), network)
                if i > 0:  # the first of each is a warm-up
                    bare.append(b)
                    launched.append(r)
    finally:
        await runtime.kill_all()
        await runtime.close()
        await asyncio.to_thread(DockerEngine().remove_labelled, AgentId(bare_label))
        client.close()
    bare_s, rt_s = summary_ms(bare), summary_ms(launched)
    return {
        "image": image,
        "network": network.value.lower(),
        "bare_containers_run": bare_s,
        "runtime_launch_to_started": rt_s,
        "ratio_p50": round(rt_s["p50_ms"] / bare_s["p50_ms"], 3),
        "ratio_mean": round(rt_s["mean_ms"] / bare_s["mean_ms"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--image", default="edgerm-test/busybox:latest")
    parser.add_argument("--network", choices=["bridge", "host", "none"], default="bridge")
    args = parser.parse_args()
    result = asyncio.run(measure(args.runs, args.image, Network(args.network.upper())))
    b, r = result["bare_containers_run"], result["runtime_launch_to_started"]
    print(f"bare containers.run      p50 {b['p50_ms']:8.1f} ms  p99 {b['p99_ms']:8.1f} ms  mean {b['mean_ms']:8.1f} ms")
    print(f"runtime launch->started  p50 {r['p50_ms']:8.1f} ms  p99 {r['p99_ms']:8.1f} ms  mean {r['mean_ms']:8.1f} ms")
    print(f"ratio (p50) {result['ratio_p50']:.2f}x   (mean) {result['ratio_mean']:.2f}x")
    name = "docker_bare" if args.network == "bridge" else f"docker_bare_{args.network}"
    print(f"saved {save(name, result)}")


if __name__ == "__main__":
    main()
