"""Master CPU per agent heartbeat, against a bare protobuf echo server measured in the same run.

    python bench/heartbeats.py [--agents 50] [--heartbeats 20000] [--concurrency 16] [--transport http|coap|both]

Both servers run as their own processes; this process plays the agents. The figure is the server process's CPU time
(user + system, from psutil) spent during the heartbeat phase divided by the number of heartbeats. Target: the
master within 1.5x of the baseline. Over HTTP the baseline is a bare aiohttp server (_echo_http.py); over CoAP a
bare aiocoap server (_echo_coap.py), both parsing the AgentCall and answering HEARTBEAT_ACK. Over CoAP each of the
``concurrency`` simulated agents has its own client context (CoAP allows one CON in flight per context and
server), as real agents would. Results: bench/results/heartbeats.json.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiocoap
import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, save, spawn, stop, summary_ms

from edgerm import messages as m
from edgerm import wire
from edgerm.ids import AgentId
from edgerm.model import AgentInfo
from edgerm.resources import Resources

HEADERS = {"Content-Type": "application/x-protobuf"}
#: One lane of load: sends one body and waits for its answer.
Post = Callable[[bytes], Awaitable[None]]


def _agent_bodies(agents: int) -> tuple[list[bytes], list[bytes]]:
    """REGISTER and HEARTBEAT bodies for ``agents`` fake agents (long heartbeat interval: none times out)."""
    ids = [AgentId(f"bench-agent-{i}") for i in range(agents)]
    res = Resources.parse("cpus:4;mem:4096;disk:10000")
    attrs = {"os": "linux", "executors": frozenset({"wasm"})}
    registers = [
        wire.encode_agent_call(m.RegisterAgent(AgentInfo(aid, f"host-{aid}", res, attrs, heartbeat_interval=3600.0)))
        for aid in ids
    ]
    return registers, [wire.encode_agent_call(m.AgentHeartbeat(aid)) for aid in ids]


async def _drive(pid: int, bodies: list[bytes], heartbeats: int, posts: list[Post]) -> dict[str, Any]:
    """Send ``heartbeats`` bodies through the ``posts`` lanes at once; the server's CPU per heartbeat."""
    proc = psutil.Process(pid)
    latencies: list[float] = []
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for i in range(heartbeats):
        queue.put_nowait(bodies[i % len(bodies)])

    async def worker(post: Post) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            t0 = time.perf_counter()
            await post(body)
            latencies.append(time.perf_counter() - t0)

    cpu0 = proc.cpu_times()
    wall0 = time.perf_counter()
    await asyncio.gather(*(worker(post) for post in posts))
    wall = time.perf_counter() - wall0
    cpu1 = proc.cpu_times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {
        "heartbeats": heartbeats,
        "server_cpu_s": round(cpu, 4),
        "cpu_us_per_heartbeat": round(cpu / heartbeats * 1e6, 2),
        "throughput_per_s": round(heartbeats / wall, 1),
        "latency": summary_ms(latencies),
    }


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> None:
    async with session.post(url, data=body, headers=HEADERS) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url} answered {resp.status}")


async def http_load(base: str, agents: int, heartbeats: int, concurrency: int, pid: int) -> dict[str, Any]:
    url = base + "/api/v1/agent"
    registers, bodies = _agent_bodies(agents)
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        for body in registers:
            await _post(session, url, body)
        for b in bodies[: min(len(bodies), 200)]:  # warm-up
            await _post(session, url, b)
        post = functools.partial(_post, session, url)
        return await _drive(pid, bodies, heartbeats, [post] * concurrency)


def run_http(args: argparse.Namespace) -> dict[str, Any]:
    here = Path(__file__).resolve().parent
    out: dict[str, Any] = {}
    for name, cmd in (
        ("baseline_echo", lambda p: [sys.executable, str(here / "_echo_http.py"), "--port", str(p)]),
        (
            "master",
            lambda p: [
                sys.executable,
                "-m",
                "edgerm.master.main",
                "--host",
                "127.0.0.1",
                "--port",
                str(p),
                "--log-level",
                "WARNING",
                "--no-coap",  # this run measures HTTP only; leave UDP 5683 alone
                "--no-broker",
            ],
        ),
    ):
        port = free_port()
        proc = spawn(cmd(port), ready_url=f"http://127.0.0.1:{port}/")
        try:
            out[name] = asyncio.run(
                http_load(f"http://127.0.0.1:{port}", args.agents, args.heartbeats, args.concurrency, proc.pid)
            )
        finally:
            stop(proc)
    out["ratio_cpu_master_vs_baseline"] = round(
        out["master"]["cpu_us_per_heartbeat"] / out["baseline_echo"]["cpu_us_per_heartbeat"], 3
    )
    return out


# -- CoAP ----------------------------------------------------------------------------------


async def _coap_post(ctx: Any, remote: Any, body: bytes) -> None:
    message = aiocoap.Message(code=aiocoap.POST, uri_path=("agent",), payload=body)
    message.remote = remote  # resolved once, as the agent's transport does
    response = await asyncio.wait_for(ctx.request(message, handle_blockwise=False).response, 10.0)
    if response.code != aiocoap.CHANGED:
        raise RuntimeError(f"CoAP heartbeat answered {response.code}")


async def _coap_contexts(url: str, n: int) -> list[tuple[Any, Any]]:
    """``n`` client contexts, each with the server's address resolved (retried until the server answers)."""
    out: list[tuple[Any, Any]] = []
    deadline = time.monotonic() + 20.0
    ping = wire.encode_agent_call(m.AgentHeartbeat(AgentId("bench-ping")))
    for _ in range(n):
        ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
        while True:
            request = aiocoap.Message(code=aiocoap.POST, uri=url + "/agent", payload=ping)
            try:
                await asyncio.wait_for(ctx.request(request).response, 1.0)
                break
            except (TimeoutError, aiocoap.error.Error):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no CoAP server answers at {url}") from None
        out.append((ctx, request.remote))
    return out


async def coap_load(url: str, agents: int, heartbeats: int, concurrency: int, pid: int) -> dict[str, Any]:
    registers, bodies = _agent_bodies(agents)
    lanes = await _coap_contexts(url, concurrency)
    try:
        ctx, remote = lanes[0]
        for body in registers:
            await _coap_post(ctx, remote, body)
        for b in bodies[: min(len(bodies), 200)]:  # warm-up
            await _coap_post(ctx, remote, b)
        posts: list[Post] = [functools.partial(_coap_post, c, r) for c, r in lanes]
        return await _drive(pid, bodies, heartbeats, posts)
    finally:
        for ctx, _ in lanes:
            await ctx.shutdown()


def run_coap(args: argparse.Namespace) -> dict[str, Any]:
    here = Path(__file__).resolve().parent
    out: dict[str, Any] = {}
    for name in ("baseline_echo", "master"):
        coap_port = free_port(socket.SOCK_DGRAM)
        if name == "master":
            http_port = free_port()
            cmd = [sys.executable, "-m", "edgerm.master.main", "--host", "127.0.0.1", "--port", str(http_port)]
            cmd += ["--coap-port", str(coap_port), "--no-broker", "--log-level", "WARNING"]
            proc = spawn(cmd, ready_url=f"http://127.0.0.1:{http_port}/")
        else:
            proc = spawn([sys.executable, str(here / "_echo_coap.py"), "--port", str(coap_port)])
        try:
            out[name] = asyncio.run(
                coap_load(f"coap://127.0.0.1:{coap_port}", args.agents, args.heartbeats, args.concurrency, proc.pid)
            )
        finally:
            stop(proc)
    out["ratio_cpu_master_vs_baseline"] = round(
        out["master"]["cpu_us_per_heartbeat"] / out["baseline_echo"]["cpu_us_per_heartbeat"], 3
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--heartbeats", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--transport", choices=["http", "coap", "both"], default="both")
    args = parser.parse_args()
    results: dict[str, Any] = {"params": vars(args)}
    if args.transport in ("http", "both"):
        results["http"] = run_http(args)
    if args.transport in ("coap", "both"):
        results["coap"] = run_coap(args)
    for key, label in (("http", "HTTP"), ("coap", "CoAP")):
        if key not in results:
            continue
        r = results[key]
        print(f"{label:5} baseline echo : {r['baseline_echo']['cpu_us_per_heartbeat']:8.1f} us CPU/heartbeat")
        print(f"{label:5} edgerm master : {r['master']['cpu_us_per_heartbeat']:8.1f} us CPU/heartbeat")
        print(f"{label:5} ratio         : {r['ratio_cpu_master_vs_baseline']:8.2f}x   (target <= 1.5x)")
    print(f"saved {save('heartbeats', results)}")


if __name__ == "__main__":
    main()
