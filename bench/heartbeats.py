"""Master CPU per agent heartbeat, against a bare protobuf echo server measured in the same run.

    python bench/heartbeats.py [--agents 50] [--heartbeats 20000] [--concurrency 16] [--transport http|coap|both]

Both servers run as their own processes; this process plays the agents. The figure is the server process's CPU time
(user + system, from psutil) spent during the heartbeat phase divided by the number of heartbeats. Target: the
master within 1.5x of the baseline. Over HTTP the master runs three ways in the same run: ``--insecure``,
authenticated (each simulated agent joined with the join token and presents its own bearer token) and
authenticated over TLS (a test CA made with the openssl CLI; keep-alive connections, as agents hold them); the
cost of authentication and of TLS is their CPU per heartbeat against the insecure figure (target: authenticated
<= 1.3x insecure). Over HTTP the baseline is a bare aiohttp server (_echo_http.py); over CoAP a
bare aiocoap server (_echo_coap.py), both parsing the AgentCall and answering HEARTBEAT_ACK. Over CoAP each of the
``concurrency`` simulated agents has its own client context (CoAP allows one CON in flight per context and
server), as real agents would. CoAP also runs a secure master: each simulated agent joins with ``"coap": true``
and protects its heartbeats with its own OSCORE context (RFC 8613); its CPU per heartbeat against plain CoAP on an
``--insecure`` master in the same run is the cost of OSCORE (target <= 2x). Results: bench/results/heartbeats.json
(``--transport coap``: heartbeats-coap.json).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiocoap
import aiohttp
import psutil
from aiocoap.transports.oscore import OSCOREAddress

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, save, spawn, stop, summary_ms

from edgerm import messages as m
from edgerm import wire
from edgerm.auth import oscore_contexts
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


async def _drive(pid: int, bodies: list[Any], heartbeats: int, posts: list[Any]) -> dict[str, Any]:
    """Send ``heartbeats`` bodies through the ``posts`` lanes at once; the server's CPU per heartbeat."""
    proc = psutil.Process(pid)
    latencies: list[float] = []
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for i in range(heartbeats):
        queue.put_nowait(bodies[i % len(bodies)])

    async def worker(post: Any) -> None:
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


async def _post(session: aiohttp.ClientSession, url: str, item: tuple[bytes, dict[str, str]]) -> None:
    body, headers = item
    async with session.post(url, data=body, headers=headers) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url} answered {resp.status}")


async def _join_all(base: str, join_token: str, agents: int, context: ssl.SSLContext | None) -> list[dict[str, str]]:
    """Join every simulated agent (as edgerm-agent does): the headers each one's heartbeats carry."""
    out: list[dict[str, str]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context or False)) as session:
        for i in range(agents):
            body = json.dumps({"agent_id": f"bench-agent-{i}"})
            auth = {"Authorization": f"Bearer {join_token}", "Content-Type": "application/json"}
            async with session.post(base + "/api/v1/join", data=body, headers=auth) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"join answered {resp.status}: {await resp.text()}")
                token = (await resp.json())["token"]
            out.append({**HEADERS, "Authorization": f"Bearer {token}"})
    return out


async def http_load(
    base: str,
    agents: int,
    heartbeats: int,
    concurrency: int,
    pid: int,
    join_token: str | None = None,
    context: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    url = base + "/api/v1/agent"
    registers, bodies = _agent_bodies(agents)
    headers = await _join_all(base, join_token, agents, context) if join_token else [HEADERS] * agents
    conn = aiohttp.TCPConnector(limit=concurrency, ssl=context or False)
    async with aiohttp.ClientSession(connector=conn) as session:
        for item in zip(registers, headers, strict=True):
            await _post(session, url, item)
        items = list(zip(bodies, headers, strict=True))
        for item in items[: min(len(items), 200)]:  # warm-up
            await _post(session, url, item)
        post = functools.partial(_post, session, url)
        return await _drive(pid, items, heartbeats, [post] * concurrency)


def _master_cmd(port: int, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "edgerm.master.main", "--host", "127.0.0.1", "--port", str(port)]
    # This run measures HTTP only: leave UDP 5683 alone, and no broker.
    return [*cmd, "--log-level", "WARNING", "--no-coap", "--no-broker", *extra]


def _test_pki(d: Path) -> None:
    """A CA and a certificate for 127.0.0.1, made with the openssl CLI (the commands of docs/security.md)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl("req", "-x509", *ec, "-days", "2", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=bench CA")
    (d / "master.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("req", *ec, "-keyout", "master.key", "-out", "master.csr", "-subj", "/CN=bench master")
    openssl(
        "x509",
        "-req",
        "-in",
        "master.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "master.ext",
        "-out",
        "master.pem",
    )


def _init(state: Path) -> str:
    """``edgerm-master init`` in ``state``: its join token."""
    cmd = [sys.executable, "-m", "edgerm.master.main", "init", "--state-dir", str(state), "--format", "json"]
    token: str = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)["join_token"]
    return token


def run_http(args: argparse.Namespace) -> dict[str, Any]:
    here = Path(__file__).resolve().parent
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgerm-bench-") as tmpdir:
        tmp = Path(tmpdir)
        _test_pki(tmp)
        context = ssl.create_default_context(cafile=str(tmp / "ca.pem"))
        tls = ("--tls-cert", str(tmp / "master.pem"), "--tls-key", str(tmp / "master.key"))
        # One state dir per secured run: the simulated agents join afresh in each.
        auth_join, tls_join = _init(tmp / "auth"), _init(tmp / "tls")
        runs: list[tuple[str, Any, str | None, ssl.SSLContext | None]] = [
            ("baseline_echo", lambda p: [sys.executable, str(here / "_echo_http.py"), "--port", str(p)], None, None),
            ("master_insecure", lambda p: _master_cmd(p, "--insecure"), None, None),
            ("master_auth", lambda p: _master_cmd(p, "--state-dir", str(tmp / "auth")), auth_join, None),
            ("master_auth_tls", lambda p: _master_cmd(p, "--state-dir", str(tmp / "tls"), *tls), tls_join, context),
        ]
        for name, cmd, token, ctx in runs:
            port = free_port()
            proc = spawn(cmd(port), ready_url=None if ctx is not None else f"http://127.0.0.1:{port}/")
            try:
                if ctx is not None:
                    _wait_tls(port, ctx)
                base = f"{'https' if ctx is not None else 'http'}://127.0.0.1:{port}"
                out[name] = asyncio.run(
                    http_load(base, args.agents, args.heartbeats, args.concurrency, proc.pid, token, ctx)
                )
            finally:
                stop(proc)
    cpu = {name: out[name]["cpu_us_per_heartbeat"] for name in out}
    out["master"] = out["master_insecure"]  # the figure earlier runs called "master"
    out["ratio_cpu_master_vs_baseline"] = round(cpu["master_insecure"] / cpu["baseline_echo"], 3)
    out["ratio_cpu_auth_vs_insecure"] = round(cpu["master_auth"] / cpu["master_insecure"], 3)
    out["ratio_cpu_auth_tls_vs_insecure"] = round(cpu["master_auth_tls"] / cpu["master_insecure"], 3)
    return out


def _wait_tls(port: int, context: ssl.SSLContext, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                context.wrap_socket(sock, server_hostname="127.0.0.1").close()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no TLS server on port {port}") from None
            time.sleep(0.05)


# -- CoAP ----------------------------------------------------------------------------------


async def _coap_post(ctx: Any, remote: Any, body: bytes | tuple[bytes, Any]) -> None:
    security = None
    if isinstance(body, tuple):  # OSCORE: the heartbeat and its agent's security context
        body, security = body
    message = aiocoap.Message(code=aiocoap.POST, uri_path=("agent",), payload=body)
    # Resolved once, as the agent's transport does; with OSCORE through that agent's context.
    message.remote = remote if security is None else OSCOREAddress(security, remote)
    response = await asyncio.wait_for(ctx.request(message, handle_blockwise=False).response, 10.0)
    if response.code != aiocoap.CHANGED:
        raise RuntimeError(f"CoAP heartbeat answered {response.code}")


async def _coap_contexts(url: str, n: int) -> list[tuple[Any, Any]]:
    """``n`` client contexts, each with the server's address resolved (retried until the server answers)."""
    out: list[tuple[Any, Any]] = []
    deadline = time.monotonic() + 20.0
    ping = wire.encode_agent_call(m.AgentHeartbeat(AgentId("bench-ping")))
    for _ in range(n):
        ctx = await aiocoap.Context.create_client_context(transports=["oscore", "udp6"])
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


async def _join_coap_all(base: str, join_token: str, agents: int, work: Path, coap_url: str) -> list[Any]:
    """Join every simulated agent for CoAP (as edgerm-agent --coap does): each one's OSCORE context."""
    out: list[Any] = []
    async with aiohttp.ClientSession() as session:
        for i in range(agents):
            agent_id = AgentId(f"bench-agent-{i}")
            body = json.dumps({"agent_id": agent_id, "coap": True})
            auth = {"Authorization": f"Bearer {join_token}", "Content-Type": "application/json"}
            async with session.post(base + "/api/v1/join", data=body, headers=auth) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"join answered {resp.status}: {await resp.text()}")
                material = oscore_contexts.OscoreMaterial.from_json((await resp.json())["oscore"])
            oscore_contexts.save_agent_context(work / agent_id, coap_url, agent_id, material)
            out.append(oscore_contexts.load_agent_context(work / agent_id, coap_url, agent_id))
    return out


async def coap_load(
    url: str, agents: int, heartbeats: int, concurrency: int, pid: int, oscore: Any = None
) -> dict[str, Any]:
    """``oscore``: (HTTP base URL, join token, work dir) to join every agent and protect its heartbeats."""
    registers, bodies = _agent_bodies(agents)
    contexts: list[Any] = []
    if oscore is not None:
        contexts = await _join_coap_all(*oscore[:2], agents, oscore[2], url)
        registers = list(zip(registers, contexts, strict=True))  # type: ignore[arg-type]
        bodies = list(zip(bodies, contexts, strict=True))  # type: ignore[arg-type]
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
        for context in contexts:
            oscore_contexts.close_context(context)


def run_coap(args: argparse.Namespace) -> dict[str, Any]:
    here = Path(__file__).resolve().parent
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgerm-bench-coap-") as tmpdir:
        tmp = Path(tmpdir)
        join_token = _init(tmp / "state")
        for name in ("baseline_echo", "master", "master_oscore"):
            coap_port = free_port(socket.SOCK_DGRAM)
            oscore = None
            if name == "baseline_echo":
                proc = spawn([sys.executable, str(here / "_echo_coap.py"), "--port", str(coap_port)])
            else:
                http_port = free_port()
                cmd = [sys.executable, "-m", "edgerm.master.main", "--host", "127.0.0.1", "--port", str(http_port)]
                cmd += ["--coap-port", str(coap_port), "--no-broker", "--log-level", "WARNING"]
                if name == "master":
                    cmd.append("--insecure")
                else:  # secure: every simulated agent joins and protects its heartbeats with OSCORE
                    cmd += ["--state-dir", str(tmp / "state")]
                    oscore = (f"http://127.0.0.1:{http_port}", join_token, tmp / "agents")
                proc = spawn(cmd, ready_url=f"http://127.0.0.1:{http_port}/")
            try:
                out[name] = asyncio.run(
                    coap_load(
                        f"coap://127.0.0.1:{coap_port}",
                        args.agents,
                        args.heartbeats,
                        args.concurrency,
                        proc.pid,
                        oscore,
                    )
                )
            finally:
                stop(proc)
    cpu = {name: out[name]["cpu_us_per_heartbeat"] for name in out}
    out["ratio_cpu_master_vs_baseline"] = round(cpu["master"] / cpu["baseline_echo"], 3)
    out["ratio_cpu_oscore_vs_plain"] = round(cpu["master_oscore"] / cpu["master"], 3)
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
        print(f"{label:5} edgerm master : {r['master']['cpu_us_per_heartbeat']:8.1f} us CPU/heartbeat (insecure)")
        print(f"{label:5} ratio         : {r['ratio_cpu_master_vs_baseline']:8.2f}x   (target <= 1.5x)")
        if "master_auth" in r:
            for run, ratio, what in (
                ("master_auth", "ratio_cpu_auth_vs_insecure", "authenticated"),
                ("master_auth_tls", "ratio_cpu_auth_tls_vs_insecure", "auth + TLS"),
            ):
                us = r[run]["cpu_us_per_heartbeat"]
                print(f"{label:5} {what:14}: {us:8.1f} us CPU/heartbeat, {r[ratio]:.2f}x insecure")
        if "master_oscore" in r:
            us = r["master_oscore"]["cpu_us_per_heartbeat"]
            ratio = r["ratio_cpu_oscore_vs_plain"]
            print(f"{label:5} OSCORE        : {us:8.1f} us CPU/heartbeat, {ratio:.2f}x plain CoAP   (target <= 2x)")
    # A CoAP-only run keeps its own file, so the full run's figures stay.
    name = "heartbeats" if args.transport == "both" else f"heartbeats-{args.transport}"
    print(f"saved {save(name, results)}")


if __name__ == "__main__":
    main()
