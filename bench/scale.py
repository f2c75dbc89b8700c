"""A fleet against one master: N emulated agents at 0.1 Hz over the real protocols, per transport.

    python bench/scale.py [--transport http,coap] [--agents 1000,5000,10000] [--duration 30]
                          [--interval 10] [--workers 0] [--http-heartbeats keepalive|close] [--no-echo]
                          [--security insecure|secure|insecure,secure] [--join-rate 150]

A real ``edgerm-master`` runs as its own process. The load comes from worker
processes (multiprocessing), each running many light emulated agents on one
event loop; they speak the real wire protocol, written by hand so that the
generator stays cheap:

- HTTP agent: REGISTER, then a SUBSCRIBE push stream held open on its own
  connection for the whole run, then one HEARTBEAT every ``--interval``
  seconds (random phase) on a second keep-alive connection, as the real
  agent does (``--http-heartbeats close`` opens one connection per
  heartbeat instead, halving the master's connections).
- CoAP agent: its own UDP socket; REGISTER and HEARTBEAT as CON POSTs
  (retransmitted after 2 s, as RFC 7252), and an Observe registration of its
  command resource kept for the whole run.
- Both send their heartbeats on a fixed schedule, one interval after the
  last one was due (random phase), as the real agent's heartbeat loop does,
  not one interval after the last answer (results before 2026-12-03, night).

Where a tail comes from: ``slow_heartbeats`` (those over 50 ms, by when they
were sent and by worker), ``retransmissions`` (CoAP, before and in the
window) and ``udp_receive_buffer_drops`` (the kernel's ``RcvbufErrors``).

``--security insecure`` (the default, as in earlier results) starts the
master with ``--insecure``. ``--security secure`` starts it as the product
does by default, on a state dir made by ``edgerm-master init``
(bench/_common.py ``secure_master``), and every agent authenticates:

- Join phase, before the REGISTER ramp: each emulated agent joins once
  (``POST /api/v1/join`` with the join token as Bearer, ``{"agent_id": ...}``;
  a CoAP agent adds ``"coap": true`` and gets its OSCORE context), paced at
  ``--join-rate`` per second for the whole fleet (the join token is one
  principal, rate limited by the master: 200 calls/s), at most
  ``JOIN_CONCURRENCY`` in flight, 429/503 and refused connections retried
  (``Retry-After`` if given, else a jittered backoff), a timeout not retried
  (the master may have taken that join in). Once the whole fleet has joined
  the run goes on exactly as an insecure one (ramp, warm-up, window, idle);
  a slow join path moves the window later instead of overlapping it.
  Reported: ``join`` (per agent, first attempt to its answer: p50/p99/max;
  the time to join the fleet, first attempt to last answer; retries).
- HTTP agents send ``Authorization: Bearer <own agent token>`` on every
  REGISTER, SUBSCRIBE, HEARTBEAT and UPDATE.
- CoAP agents protect every request with OSCORE (RFC 8613) and unprotect
  every response and notification, with aiocoap's own ``aiocoap.oscore``
  (no crypto here): an in-memory context (``_AgentOscore``: aiocoap's
  ``CanProtect``/``CanUnprotect``/``SecurityContextUtils`` mixins, its
  replay window) built from the join answer's material, sender id the
  agent's kid; the protected message is encoded with the generator's own
  message id and token. A response without OSCORE (the master's typed
  4.01/4.00 refusals) is taken at its outer code.
- The framework probe, ``/metrics`` scrapes and ``/api/v1/state`` reads use
  the admin token (``EDGERM_TOKEN``).
- A refusal (HTTP 401/403/429, CoAP 4.01/4.03/4.29) of any agent call is
  counted under ``errors``. Before the fleet starts, an unauthenticated and
  a wrongly authenticated HEARTBEAT (HTTP), and a plain CoAP one, must be
  refused: ``auth_check`` (a call not refused is counted as an error).

The bare echo servers (bench/_echo_*.py) are never authenticated: they stay
the transport baseline (``"echo_security": "none"``; an echo run's
``security`` is "none"), measured once per transport and N whatever
``--security`` says. Every master run records its ``security``.

Agents register over a ramp (500 per second), heartbeat for one interval of
warm-up, then for ``--duration`` seconds of measurement, then pause their
heartbeats for one interval (streams and observations stay open) to measure
what idle push channels cost the master. Reported per transport and N (for the master, not the echoes):
offer latency, from a real framework (edgerm.frameworks.HttpDriver, in a process of its own) that
subscribes during the window: SUBSCRIBE -> its first OFFERS, then, over and over, a task launched on one
emulated HTTP agent, which reports it RUNNING and FINISHED at once (its push stream is parsed for LAUNCH
commands), from the agent's UPDATE call to the framework's OFFERS of the freed resources (what a framework
waits for resources that became free while the whole fleet heartbeats; HTTP fleets only). And:
p50/p99/p999 heartbeat latency (measurement window), false losses (agents
the master forgot or whose stream/observation it ended, and agents missing
from ``/api/v1/state`` at the end), master CPU % (busy and idle windows),
RSS per agent ((RSS with the fleet - RSS before) / N), server CPU per
answered heartbeat (robust to a loaded machine, unlike latency), and the same fleet's
heartbeats against a bare aiohttp / aiocoap echo server (bench/_echo_*.py)
measured in the same run. Results: bench/results/scale.json.

File descriptors: each process may hold at most RLIMIT_NOFILE sockets (the
script raises the soft limit to the hard one). HTTP needs one connection
per agent for its stream and, with keep-alive heartbeats, a second one, so
the master's hard fd limit caps the HTTP fleet (see the JSON's ``fd_limit``).
A secure CoAP master also holds one open lock file per agent's OSCORE context.
Client sockets are spread over 127.0.0.2-127.0.0.65 so ephemeral ports do
not run out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import random
import resource
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiocoap
import aiocoap.error
import psutil
from aiocoap import oscore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, get_state, pct, save, secure_master

from edgerm import messages as m
from edgerm import wire
from edgerm.auth.oscore_contexts import OscoreMaterial
from edgerm.errors import MalformedMessage
from edgerm.ids import AgentId, TaskId
from edgerm.model import AgentInfo, Source, TaskState, TaskStatus
from edgerm.resources import Resources

HERE = Path(__file__).resolve().parent
RAMP_PER_SECOND = 500
SOURCE_ADDRESSES = [f"127.0.0.{i}" for i in range(2, 66)]
REQUEST_TIMEOUT = 20.0
SLOW_S = 0.05  # a heartbeat slower than this (the p99 target) is also recorded with its time (``slow_heartbeats``)
# Secure mode: joins, paced for the whole fleet below the join token's rate limit (edgerm.auth.limits: 200/s).
JOIN_PER_SECOND = 150.0
JOIN_CONCURRENCY = 64  # joins in flight at most, the whole fleet (split over the workers)
JOIN_TIMEOUT = 120.0  # one join call; generous: a master's join path may be slow (it is reported)
JOIN_PATIENCE = 300.0  # seconds past its paced slot an agent keeps retrying a join (429/503/refused)
JOIN_BACKOFF_INITIAL, JOIN_BACKOFF_MAX = 0.2, 5.0
TOKEN_ENV = ("EDGERM_TOKEN", "EDGERM_JOIN_TOKEN")
USER_TOKENS = {k: os.environ.get(k) for k in TOKEN_ENV}  # restored for insecure runs after a secure one


def _raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _bodies(agent_id: str, interval: float) -> tuple[bytes, bytes, bytes]:
    aid = AgentId(agent_id)
    info = AgentInfo(
        aid,
        f"{agent_id}.bench",
        Resources.parse("cpus:4;mem:4096"),
        {"os": "linux", "executors": frozenset({"wasm"})},
        heartbeat_interval=interval,
    )
    return (
        wire.encode_agent_call(m.RegisterAgent(info)),
        wire.encode_agent_call(m.AgentHeartbeat(aid)),
        wire.encode_agent_call(m.SubscribeAgent(aid)),
    )


# -- what a worker reports ------------------------------------------------------------------


@dataclass
class Report:
    latencies: list[float] = field(default_factory=list)
    registered: int = 0
    channels: int = 0  # streams / observations open
    heartbeats: int = 0
    forgotten: int = 0  # heartbeat answered UNKNOWN_AGENT: the master lost the agent
    channel_ended: int = 0  # the master ended a stream or observation
    errors: dict[str, int] = field(default_factory=dict)
    loop_lags: list[float] = field(default_factory=list)  # the worker's own event-loop lag, measurement window
    retransmits: list[float] = field(default_factory=list)  # CoAP: wall clock of each retransmission
    slow: list[tuple[float, float]] = field(default_factory=list)  # (sent, seconds) of heartbeats over SLOW_S
    # secure mode: the join phase
    joined: int = 0
    join_latencies: list[float] = field(default_factory=list)  # per agent: first attempt sent -> its answer
    join_retries: dict[str, int] = field(default_factory=dict)  # by cause (HTTP 429, HTTP 503, ConnectionError...)
    join_first: float | None = None  # wall clock: this worker's first join attempt
    join_last: float | None = None  # ... and its last join answered

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


@dataclass(frozen=True)
class Plan:
    transport: str
    host: str
    port: int
    first: int
    count: int
    interval: float
    t_start: float  # wall clock: agent 0 joins
    t_measure: float  # measurement window [t_measure, t_idle)
    t_idle: float  # heartbeats pause [t_idle, t_end)
    t_end: float
    echo: bool  # against the echo server: no push channel
    http_close: bool
    seed: int
    # secure mode (``security == "secure"``): joins at http://host:join_port, paced at join_rate for this
    # worker from t_join on, at most join_slots in flight; the times above are sent once the fleet joined
    security: str = "insecure"
    join_port: int = 0
    join_token: str = ""
    join_rate: float = JOIN_PER_SECOND
    join_slots: int = JOIN_CONCURRENCY
    t_join: float = 0.0
    ramp_rate: float = RAMP_PER_SECOND  # agents starting per second (the whole fleet)


# -- HTTP ---------------------------------------------------------------------------------------


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, int | None, float | None]:
    """An HTTP response's status line and headers: status, Content-Length (None: a stream), Retry-After."""
    status = int((await reader.readuntil(b"\r\n")).split()[1])
    length = retry_after = None
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"retry-after":
            with contextlib.suppress(ValueError):
                retry_after = float(value)
    return status, length, retry_after


async def _http_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes, close: bool = False, auth: bytes = b""
) -> tuple[int, bytes | None]:
    """``POST /api/v1/agent``; ``auth``: the agent's ``Authorization`` header line (secure mode), else empty."""
    head = (
        b"POST /api/v1/agent HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-protobuf\r\n"
        b"Content-Length: %d\r\n%s%s\r\n" % (len(body), auth, b"Connection: close\r\n" if close else b"")
    )
    writer.write(head + body)
    status, length, _ = await _read_head(reader)
    if length is None:
        return status, None  # a stream
    return status, await reader.readexactly(length)


async def _http_agent(plan: Plan, index: int, report: Report, stopping: asyncio.Event, auth: Any = b"") -> None:
    """``auth``: the agent's ``Authorization`` header line (secure mode), sent on every call."""
    agent_id = f"bench-{plan.transport}-{index}"
    register, heartbeat, subscribe = _bodies(agent_id, plan.interval)
    local = (SOURCE_ADDRESSES[index % len(SOURCE_ADDRESSES)], 0)
    rng = random.Random(plan.seed + index)
    await _sleep_until(plan.t_start + (index / plan.ramp_rate))
    try:
        reader, writer = await asyncio.open_connection(plan.host, plan.port, local_addr=local)
        status, _ = await asyncio.wait_for(_http_request(reader, writer, register, auth=auth), REQUEST_TIMEOUT)
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
        report.error(f"register: {type(e).__name__}")
        return
    if status != 200:
        report.error(f"register: HTTP {status}")
        return
    report.registered += 1
    stream_task = None
    if not plan.echo:
        stream_task = asyncio.create_task(_http_stream(plan, local, subscribe, report, stopping, auth))
    if plan.http_close:
        writer.close()
    due = time.time() + rng.uniform(0, plan.interval)
    try:
        while True:
            await _sleep_until(due)
            now = time.time()
            if now >= plan.t_end or stopping.is_set():
                break
            due = _next_due(due, plan.interval, now)
            if not plan.t_idle <= now < plan.t_end:
                try:
                    if plan.http_close:
                        reader, writer = await asyncio.open_connection(plan.host, plan.port, local_addr=local)
                    t0 = time.perf_counter()
                    status, _ = await asyncio.wait_for(
                        _http_request(reader, writer, heartbeat, close=plan.http_close, auth=auth), REQUEST_TIMEOUT
                    )
                    elapsed = time.perf_counter() - t0
                    if plan.http_close:
                        writer.close()
                except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
                    report.error(f"heartbeat: {type(e).__name__}")
                    with contextlib.suppress(OSError, TimeoutError):
                        reader, writer = await asyncio.wait_for(
                            asyncio.open_connection(plan.host, plan.port, local_addr=local), REQUEST_TIMEOUT
                        )
                else:
                    report.heartbeats += 1
                    if status == 404:
                        report.forgotten += 1
                    elif status != 200:
                        report.error(f"heartbeat: HTTP {status}")
                    elif plan.t_measure <= now < plan.t_idle:
                        report.latencies.append(elapsed)
                        if elapsed > SLOW_S:
                            report.slow.append((now, elapsed))
    finally:
        if not plan.http_close:
            writer.close()
        if stream_task is not None:
            stream_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream_task


async def _http_stream(
    plan: Plan, local: tuple[str, int], body: bytes, report: Report, stopping: asyncio.Event, auth: bytes
) -> None:
    try:
        reader, writer = await asyncio.open_connection(plan.host, plan.port, local_addr=local)
        status, _ = await asyncio.wait_for(_http_request(reader, writer, body, auth=auth), REQUEST_TIMEOUT)
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
        report.error(f"stream: {type(e).__name__}")
        return
    if status != 200:
        report.error(f"stream: HTTP {status}")
        writer.close()
        return
    report.channels += 1
    commands = _Commands()
    try:
        while chunk := await reader.read(65536):
            for task in commands.launches(chunk):  # only the offer probe launches (on one agent at a time)
                await _finish(plan, local, task, report, auth)
        if not stopping.is_set() and time.time() < plan.t_end:
            report.channel_ended += 1
    except OSError:
        if not stopping.is_set():
            report.channel_ended += 1
    finally:
        writer.close()


class _Commands:
    """The LAUNCH commands in an agent's push stream: HTTP chunked transfer coding, then RecordIO frames."""

    def __init__(self) -> None:
        self._raw = bytearray()
        self._records = wire.RecordReader()

    def launches(self, data: bytes) -> list[m.LaunchCommand]:
        self._raw += data
        body = bytearray()
        while (eol := self._raw.find(b"\r\n")) >= 0:
            size = int(self._raw[:eol].split(b";")[0] or b"0", 16)
            if len(self._raw) < eol + 2 + size + 2:
                break
            body += self._raw[eol + 2 : eol + 2 + size]
            del self._raw[: eol + 2 + size + 2]
        events = [wire.decode_agent_event(r) for r in self._records.feed(bytes(body))] if body else []
        return [e for e in events if isinstance(e, m.LaunchCommand)]


async def _finish(plan: Plan, local: tuple[str, int], launch: m.LaunchCommand, report: Report, auth: bytes) -> None:
    """The task ran and ended at once: RUNNING and FINISHED in one UPDATE, FINISHED stamped with the wall
    clock just before the call (the offer probe measures from it to the offer of the freed resources)."""
    task, aid = launch.task.task_id, launch.task.agent_id
    running = TaskStatus(task, aid, TaskState.RUNNING, uuid=f"{task}-r", source=Source.AGENT)
    finished = TaskStatus(
        task, aid, TaskState.FINISHED, uuid=f"{task}-f", message=f"sent={time.time():.6f}", source=Source.AGENT
    )
    body = wire.encode_agent_call(m.StatusUpdate(aid, running, (finished,)))
    try:
        reader, writer = await asyncio.open_connection(plan.host, plan.port, local_addr=local)
        try:
            status, _ = await asyncio.wait_for(
                _http_request(reader, writer, body, close=True, auth=auth), REQUEST_TIMEOUT
            )
        finally:
            writer.close()
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
        report.error(f"update: {type(e).__name__}")
    else:
        if not 200 <= status < 300:  # e.g. a refused credential (401/403)
            report.error(f"update: HTTP {status}")


# -- CoAP ---------------------------------------------------------------------------------------

_CON, _ACK = 0, 2
_POST, _GET = 2, 1


def _opt(number: int, value: bytes, last: int) -> tuple[bytes, int]:
    delta = number - last

    def nibble(n: int) -> tuple[int, bytes]:
        if n < 13:
            return n, b""
        if n < 269:
            return 13, bytes([n - 13])
        return 14, struct.pack(">H", n - 269)

    d, dx = nibble(delta)
    ln, lx = nibble(len(value))
    return bytes([d << 4 | ln]) + dx + lx + value, number


def _coap(
    code: int, mid: int, token: bytes, path: tuple[str, ...], payload: bytes = b"", observe: bool = False
) -> bytes:
    out = bytes([0x40 | (_CON << 4) | len(token), code]) + struct.pack(">H", mid) + token
    last = 0
    if observe:
        data, last = _opt(6, b"", last)  # Observe: 0 (empty uint)
        out += data
    for segment in path:
        data, last = _opt(11, segment.encode(), last)
        out += data
    if payload:
        out += b"\xff" + payload
    return out


_UNVERIFIED = -1  # the code call() returns for a protected response that does not unprotect


def _code_name(code: int) -> str:
    return "OSCORE response does not verify" if code == _UNVERIFIED else f"CoAP {code >> 5}.{code & 31:02d}"


class _AgentOscore(oscore.CanProtect, oscore.CanUnprotect, oscore.SecurityContextUtils):
    """An agent's OSCORE security context, in memory, from its join answer: aiocoap's own mixins do all the
    crypto (key derivation, protect, unprotect, replay window), as its FilesystemSecurityContext does, minus
    the files (one lock fd each would not fit thousands of agents in a worker). The agent's sender id is its
    kid, its recipient id the master's; AES-CCM-16-64-128, HKDF-SHA256, a window of 32, as the master's
    context directory says (edgerm.auth.oscore_contexts writes no other parameters)."""

    def __init__(self, material: OscoreMaterial) -> None:
        self.alg_aead = oscore.algorithms[oscore.DEFAULT_ALGORITHM]
        self.hashfun = oscore.hashfunctions[oscore.DEFAULT_HASHFUNCTION]
        self.sender_id = material.agent_kid
        self.recipient_id = material.master_kid
        self.id_context = None
        self.derive_keys(material.salt, material.secret)
        self.sender_sequence_number = 0
        self.recipient_replay_window = oscore.ReplayWindow(oscore.DEFAULT_WINDOWSIZE, lambda: None)
        self.recipient_replay_window.initialize_empty()  # a new secret: nothing seen yet
        self.echo_recovery = None  # a client: it answers no requests, so never a 4.01 Echo

    def post_seqnoincrease(self) -> None:
        """Nothing to persist: the context lives for one run, and its secret is never used again."""


class _CoapAgent(asyncio.DatagramProtocol):
    def __init__(self, report: Report, security: _AgentOscore | None = None) -> None:
        self.report = report
        self.security = security  # secure mode: every request protected, every response unprotected
        self.transport: Any = None
        self.waiting: dict[bytes, asyncio.Future[tuple[int, bytes]]] = {}
        self.observe_token = b""
        self.observe_request: Any = None  # secure mode: the observation's request id (its notifications')
        self.mid = random.randrange(0x10000)
        self.token = random.randrange(1 << 30)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 4:
            return
        kind = (data[0] >> 4) & 3
        tkl = data[0] & 0xF
        code = data[1]
        mid = data[2:4]
        token = data[4 : 4 + tkl]
        if kind == _CON:  # a notification or separate response: acknowledge it
            self.transport.sendto(bytes([0x60, 0]) + mid)
        if code == 0:
            return
        future = self.waiting.pop(token, None)
        if future is not None and not future.done():
            future.set_result((code, data))
        elif token == self.observe_token:
            if self.security is not None and self.observe_request is not None:
                code = self._unprotect(data, self.observe_request)  # the inner code says whether it ended
                if code == _UNVERIFIED:
                    self.report.error("observe: notification does not verify")
            if code >= 0x80:  # 4.xx/5.xx: the observation ended
                self.report.channel_ended += 1

    def _unprotect(self, data: bytes, request_id: Any) -> int:
        """The inner code of a protected response; the outer code of an unprotected one (a typed refusal)."""
        assert self.security is not None
        try:
            outer = aiocoap.Message.decode(data)
            if outer.opt.oscore is None:
                return int(outer.code)
            inner, _ = self.security.unprotect(outer, request_id)
        except (aiocoap.error.Error, ValueError):  # oscore.ProtectionInvalid included
            return _UNVERIFIED
        return int(inner.code)

    def _protect(self, code: int, mid: int, token: bytes, path: tuple[str, ...], payload: bytes, observe: bool) -> Any:
        """The OSCORE-protected datagram of a request, and its request id (to unprotect the responses)."""
        assert self.security is not None
        inner = aiocoap.Message(code=code, uri_path=path, payload=payload, observe=0 if observe else None)
        outer, request_id = self.security.protect(inner)  # outer POST (FETCH if observing), Observe outer
        outer.mtype, outer.mid, outer.token = aiocoap.CON, mid, token
        return outer.encode(), request_id

    async def call(self, code: int, path: tuple[str, ...], payload: bytes = b"", observe: bool = False) -> int:
        self.mid = (self.mid + 1) & 0xFFFF
        self.token += 1
        token = struct.pack(">I", self.token)
        request_id = None
        if self.security is None:
            datagram = _coap(code, self.mid, token, path, payload, observe)
        else:
            datagram, request_id = self._protect(code, self.mid, token, path, payload, observe)
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.waiting[token] = future
        if observe:
            self.observe_token = token
            self.observe_request = request_id
        timeout = 2.0
        try:
            for attempt in range(5):  # CON: retransmitted with the same message id (and OSCORE sequence number)
                if attempt:
                    self.report.retransmits.append(time.time())
                self.transport.sendto(datagram)
                try:
                    got, data = await asyncio.wait_for(asyncio.shield(future), timeout)
                    return got if request_id is None else self._unprotect(data, request_id)
                except TimeoutError:
                    timeout *= 2
            raise TimeoutError
        finally:
            self.waiting.pop(token, None)


async def _coap_observe(agent: _CoapAgent, agent_id: str, report: Report) -> None:
    try:
        code = await agent.call(_GET, ("agents", agent_id, "commands"), observe=True)
    except TimeoutError:
        report.error("observe: timeout")
        return
    if code == 0x45:  # 2.05
        report.channels += 1
    else:
        report.error(f"observe: {_code_name(code)}")


async def _coap_agent(plan: Plan, index: int, report: Report, stopping: asyncio.Event, security: Any = None) -> None:
    """``security``: the agent's OSCORE context (secure mode), protecting every call."""
    agent_id = f"bench-{plan.transport}-{index}"
    register, heartbeat, _ = _bodies(agent_id, plan.interval)
    rng = random.Random(plan.seed + index)
    await _sleep_until(plan.t_start + (index / plan.ramp_rate))
    loop = asyncio.get_running_loop()
    observing: asyncio.Task[None] | None = None
    try:
        transport, agent = await loop.create_datagram_endpoint(
            lambda: _CoapAgent(report, security),
            local_addr=(SOURCE_ADDRESSES[index % len(SOURCE_ADDRESSES)], 0),
            remote_addr=(plan.host, plan.port),
        )
    except OSError as e:
        report.error(f"socket: {type(e).__name__}")
        return
    try:
        try:
            code = await agent.call(_POST, ("agent",), register)
        except TimeoutError:
            report.error("register: timeout")
            return
        if code != 0x44:  # 2.04
            report.error(f"register: {_code_name(code)}")
            return
        report.registered += 1
        if not plan.echo:  # observed beside the heartbeats, as the real agent does
            observing = asyncio.create_task(_coap_observe(agent, agent_id, report))
        due = time.time() + rng.uniform(0, plan.interval)
        while True:
            await _sleep_until(due)
            now = time.time()
            if now >= plan.t_end or stopping.is_set():
                break
            due = _next_due(due, plan.interval, now)
            if not plan.t_idle <= now < plan.t_end:
                t0 = time.perf_counter()
                try:
                    code = await agent.call(_POST, ("agent",), heartbeat)
                except TimeoutError:
                    report.error("heartbeat: timeout")
                else:
                    elapsed = time.perf_counter() - t0
                    report.heartbeats += 1
                    if code == 0x84:  # 4.04
                        report.forgotten += 1
                    elif code != 0x44:
                        report.error(f"heartbeat: {_code_name(code)}")
                    elif plan.t_measure <= now < plan.t_idle:
                        report.latencies.append(elapsed)
                        if elapsed > SLOW_S:
                            report.slow.append((now, elapsed))
    finally:
        if observing is not None:
            observing.cancel()
        transport.close()


# -- joining (secure mode) ---------------------------------------------------------------------


async def _join_call(plan: Plan, local: tuple[str, int], head: bytes) -> tuple[int, float | None, bytes]:
    """One ``POST /api/v1/join`` on a connection of its own: status, Retry-After, body."""
    reader, writer = await asyncio.open_connection(plan.host, plan.join_port, local_addr=local)
    try:
        writer.write(head)
        status, length, retry_after = await _read_head(reader)
        body = await (reader.readexactly(length) if length is not None else reader.read())
        return status, retry_after, body
    finally:
        writer.close()


async def _join(plan: Plan, index: int, report: Report, slots: asyncio.Semaphore) -> dict[str, Any] | None:
    """Join as agent ``index`` at its paced slot, as edgerm.auth.join does (join token as Bearer, the agent id
    in JSON; ``"coap": true`` for a CoAP agent): the join answer, or None (an error is reported). 429, 503 and
    a refused or reset connection are retried, for ``JOIN_PATIENCE`` seconds past the slot; a timeout is not
    (the master may have taken the join in: a second one would be refused as "already joined")."""
    agent_id = f"bench-{plan.transport}-{index}"
    local = (SOURCE_ADDRESSES[index % len(SOURCE_ADDRESSES)], 0)
    doc: dict[str, Any] = {"agent_id": agent_id}
    if plan.transport == "coap":
        doc["coap"] = True
    body = json.dumps(doc).encode()
    head = (
        b"POST /api/v1/join HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % (plan.join_token.encode(), len(body))
    ) + body
    slot = plan.t_join + (index - plan.first) / plan.join_rate
    await _sleep_until(slot)
    t0 = time.perf_counter()
    if report.join_first is None:
        report.join_first = time.time()
    backoff = JOIN_BACKOFF_INITIAL
    while True:
        status: int | None = None
        retry_after: float | None = None
        cause = ""
        async with slots:
            try:
                status, retry_after, answer = await asyncio.wait_for(_join_call(plan, local, head), JOIN_TIMEOUT)
            except TimeoutError:
                report.error(f"join: no answer within {JOIN_TIMEOUT:.0f}s")
                return None
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
                cause = type(e).__name__
        if status == 200:
            try:
                joined = json.loads(answer)
                if not isinstance(joined.get("token"), str) or not joined["token"]:
                    raise ValueError("no token")
            except (ValueError, AttributeError):
                report.error("join: the answer has no token")
                return None
            report.join_latencies.append(time.perf_counter() - t0)
            report.join_last = time.time()
            report.joined += 1
            return dict(joined)
        if status is not None and status not in (429, 503):
            report.error(f"join: HTTP {status}")
            return None
        cause = f"HTTP {status}" if status is not None else cause
        report.join_retries[cause] = report.join_retries.get(cause, 0) + 1
        delay = retry_after if retry_after is not None else backoff * random.uniform(0.5, 1.0)
        backoff = min(2 * backoff, JOIN_BACKOFF_MAX)
        if time.time() + delay > slot + JOIN_PATIENCE:
            report.error(f"join: {cause}, given up after {JOIN_PATIENCE:.0f}s")
            return None
        await asyncio.sleep(delay)


async def _join_fleet(plan: Plan, report: Report) -> list[Any]:
    """Join this worker's agents: per agent its credential (HTTP: its ``Authorization`` header line; CoAP: its
    OSCORE context), or None if it could not join (it then does not register)."""
    slots = asyncio.Semaphore(plan.join_slots)
    answers = await asyncio.gather(*(_join(plan, plan.first + i, report, slots) for i in range(plan.count)))
    credentials: list[Any] = []
    for answer in answers:
        if answer is None:
            credentials.append(None)
        elif plan.transport == "http":
            credentials.append(b"Authorization: Bearer %s\r\n" % str(answer["token"]).encode())
        else:
            try:
                credentials.append(_AgentOscore(OscoreMaterial.from_json(answer.get("oscore"))))
            except MalformedMessage as e:
                report.error(f"join: no usable OSCORE context ({e.message})")
                credentials.append(None)
    return credentials


# -- workers and the driver ----------------------------------------------------------------------


def _next_due(due: float, interval: float, now: float) -> float:
    """When an agent's next heartbeat is due: one interval after this one was due, as the real agent's
    heartbeat loop does (``edgerm.agent.service``: it sleeps an interval and feeds ``HeartbeatDue``, whatever
    the last answer took), never in the past. Before 2026-12-03 (night) an emulated agent slept an interval
    after each answer, so a master's stall of a moment made the heartbeats it delayed leave together one
    interval later, and again after that: a burst the real agents never make."""
    return max(due + interval, now)


async def _sleep_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


LAG_PROBE_INTERVAL = 0.01


async def _probe_lag(plan: Plan, report: Report) -> None:
    """How late this worker's loop wakes up (every 10 ms): its own lag adds to every latency it measures."""
    while time.time() < plan.t_idle:
        t0 = time.perf_counter()
        await asyncio.sleep(LAG_PROBE_INTERVAL)
        if time.time() >= plan.t_measure:
            report.loop_lags.append(max(0.0, time.perf_counter() - t0 - LAG_PROBE_INTERVAL))


async def _run_worker(plan: Plan, report: Report, credentials: list[Any] | None) -> Report:
    """The agents' run; ``credentials`` (secure mode): each agent's, from the join phase (None: not joined)."""
    stopping = asyncio.Event()
    run: Any = _http_agent if plan.transport == "http" else _coap_agent
    if credentials is None:
        tasks = [asyncio.create_task(run(plan, plan.first + i, report, stopping)) for i in range(plan.count)]
    else:
        tasks = [
            asyncio.create_task(run(plan, plan.first + i, report, stopping, credential))
            for i, credential in enumerate(credentials)
            if credential is not None
        ]
    tasks.append(asyncio.create_task(_probe_lag(plan, report)))
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), plan.t_end - time.time() + 2 * plan.interval + 30)
    except TimeoutError:
        report.error("worker: agents still running at the end")
    stopping.set()
    return report


def _worker(plan: Plan, conn: Any) -> None:
    """A load process. Secure mode: the join phase first, then ("joined", count) to the driver, which answers
    with the run's times (None: give up), then the run. The Report goes back at the end."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # forked from the driver, whose handler is not for us
    _raise_fd_limit()
    report = Report()
    credentials = None
    if plan.security == "secure":
        credentials = asyncio.run(_join_fleet(plan, report))
        conn.send(("joined", report.joined))
        times = conn.recv()
        if times is None:
            conn.send(report)
            conn.close()
            return
        plan = dataclasses.replace(plan, **times)
    report = asyncio.run(_run_worker(plan, report, credentials))
    conn.send(report)
    conn.close()


# -- offer latency: a real framework ------------------------------------------------------------------


FIRST_OFFERS_SAMPLES = 5  # SUBSCRIBE -> first OFFERS samples, one framework at a time
FIRST_OFFERS_EVERY = 2.0  # seconds between them


def _offer_probe(url: str, subscribe_at: float, until: float, out: Any) -> None:
    """A framework process (the real HttpDriver): SUBSCRIBE -> its first OFFERS; then, one agent at a time,
    it launches a task taking the whole offer there (an emulated HTTP agent reports it RUNNING and FINISHED at
    once, stamping the
    FINISHED with its wall clock) and measures from that stamp to the OFFERS of the agent's freed resources,
    then launches there again. The other offers it declines for an hour. It subscribes before the fleet joins,
    so each agent is offered to it, and filtered, as it registers, not all at once in the window (declining
    a whole fleet 100 offers per cycle would itself load the master for the whole window).

    SUBSCRIBE -> first OFFERS is measured by other frameworks, one at a time: each subscribes (the first at
    ``subscribe_at``, in the window, then every ``FIRST_OFFERS_EVERY`` seconds, ``FIRST_OFFERS_SAMPLES`` in all)
    and is torn down once it has them."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # forked from the driver, whose handler is not for us
    from edgerm.frameworks import Framework, FrameworkDriver, HttpDriver
    from edgerm.model import Offer, TaskInfo, WasmSpec

    whole = Resources.parse("cpus:4;mem:4096")  # an emulated agent, all free

    class Probe(Framework):
        name = "scale-offer-probe"

        def __init__(self) -> None:
            self.target: str | None = None  # the agent running the probe's task
            self.finished_sent: float | None = None  # its FINISHED's stamp, once reported
            self.freed_at: float | None = None  # when an offer of its freed resources arrived
            self.freed: list[float] = []
            self.launched = 0

        def _done(self) -> None:
            if self.freed_at is not None and self.finished_sent is not None:
                self.freed.append(self.freed_at - self.finished_sent)
                self.target = self.finished_sent = self.freed_at = None

        async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
            now = time.time()
            freed: Offer | None = None
            for o in offers:
                # Freed: the agent whole again (the task's share is back), or any offer of it once the FINISHED
                # was reported (the master handled it before, so the offer has what it freed).
                mine = o.agent_id == self.target and self.freed_at is None
                if mine and (whole <= o.resources or self.finished_sent is not None):
                    self.freed_at, freed = now, o
            self._done()
            take: Offer | None = None
            if self.target is None and now < until:
                # The same agent again once it is free; the first one to start with.
                take = freed or next((o for o in offers if str(o.agent_id).startswith("bench-http-")), None)
            rest = [o.id for o in offers if o is not take]
            if rest:
                # A polite framework: what it does not want it declines for long, so it holds no offers and
                # stays under its offer limit (a framework at its limit is offered nothing, freed or not).
                await driver.decline(rest, refuse_seconds=3600)
            if take is not None:
                await asyncio.sleep(0.05)  # about 20 samples a second at most: the probe must not load the master
                self.launched += 1
                # The task takes the whole offer: no leftover offer is outstanding when it ends, so what it frees
                # is offered at once (a held or just-declined offer of the agent would wait for the next cycle).
                task = TaskInfo(
                    TaskId(f"probe-{self.launched}"), "probe", take.agent_id, take.resources, WasmSpec(b"\0asm")
                )
                self.target = str(take.agent_id)
                await driver.accept([take.id], [task])

        async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
            done = status.state is TaskState.FINISHED and str(status.agent_id) == self.target
            if done and status.message.startswith("sent="):
                self.finished_sent = float(status.message.removeprefix("sent="))
                self._done()

    class FirstOffers(Framework):
        name = "scale-first-offers"

        def __init__(self) -> None:
            self.t_subscribe = 0.0
            self.first: float | None = None
            self.got = asyncio.Event()

        async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
            if self.first is None:
                self.first = time.perf_counter() - self.t_subscribe
                self.got.set()

    async def first_offers(at: float) -> float | None:
        await asyncio.sleep(max(0.0, at - time.time()))
        fw = FirstOffers()
        driver = HttpDriver(fw, url)
        fw.t_subscribe = time.perf_counter()
        job = asyncio.create_task(driver.run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fw.got.wait(), 10.0)
        await driver.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(job, 5.0)
        return fw.first

    async def go() -> None:
        probe = Probe()
        driver = HttpDriver(probe, url)
        job = asyncio.create_task(driver.run())
        first = [await first_offers(subscribe_at + i * FIRST_OFFERS_EVERY) for i in range(FIRST_OFFERS_SAMPLES)]
        await asyncio.sleep(max(0.0, until - time.time()) + 1.0)
        await driver.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(job, 5.0)
        out.send({"first": first, "freed": probe.freed, "launched": probe.launched})

    try:
        asyncio.run(go())
    except Exception as e:  # reported, not raised: the fleet's figures stand without it
        out.send({"error": f"{type(e).__name__}: {e}"})


def _offer_figures(got: dict[str, Any] | None) -> dict[str, Any]:
    if got is None or "error" in got:
        return {"error": (got or {}).get("error", "the probe sent nothing")}
    lat = got["freed"]
    first = [f for f in got["first"] if f is not None]
    return {
        "subscribe_to_first_offers_ms": {
            "n": len(first),
            "missed": len(got["first"]) - len(first),
            "p50": round(statistics.median(first) * 1000, 2) if first else None,
            "max": round(max(first) * 1000, 2) if first else None,
            "all": [round(f * 1000, 2) for f in first],
        },
        "tasks_launched": got["launched"],
        # the agent's FINISHED sent (its UPDATE call) -> the OFFERS of the freed resources at the framework
        "finished_to_offer_of_freed_ms": {
            "n": len(lat),
            "p50": round(pct(lat, 50) * 1000, 2),
            "p99": round(pct(lat, 99) * 1000, 2),
            "max": round(max(lat) * 1000, 2) if lat else None,
        },
    }


def _spawn_server(args: list[str], log: Path) -> psutil.Popen:
    def limits() -> None:
        _raise_fd_limit()

    with log.open("wb") as f:
        return psutil.Popen(args, stdout=subprocess.DEVNULL, stderr=f, preexec_fn=limits)


def _wait_http(url: str, proc: psutil.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError as e:
            if hasattr(e, "code"):
                return
            time.sleep(0.1)
    raise RuntimeError(f"no answer at {url}")


def _stop(proc: psutil.Popen) -> None:
    """SIGTERM, then SIGKILL: a master ending thousands of observations may take a while."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _admin_headers() -> dict[str, str]:
    """The admin token a secure run exported (bench/_common.py ``secure_master``), as a header."""
    token = os.environ.get("EDGERM_TOKEN", "")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _security_env(security: str, state_dir: Path) -> list[str]:
    """The master's security flags; for a secure run also its state dir made by ``edgerm-master init``, whose
    tokens this process (and the workers and probe it forks) get by environment. An insecure run gets back the
    tokens the user's environment had (none, usually), not those of an earlier secure run."""
    if security == "secure":
        return secure_master(state_dir)
    for name, value in USER_TOKENS.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    # A registry of its own, fresh: the default state dir is shared by every master run as this
    # user, and a master started on an earlier run's registry restores that fleet first.
    return ["--insecure", "--state-dir", str(state_dir)]


def _auth_check(transport: str, http_port: int, coap_port: int) -> dict[str, Any]:
    """What a secure master answers to agent calls without a valid credential (each must be refused):
    a HEARTBEAT without a token and with a wrong one (HTTP), and a plain, unprotected CoAP one."""
    _, heartbeat, _ = _bodies("bench-unauthenticated", 10.0)
    out: dict[str, Any] = {}
    for name, auth in (("http_no_token", {}), ("http_wrong_token", {"Authorization": "Bearer edgerm_agent_wrong"})):
        request = urllib.request.Request(
            f"http://127.0.0.1:{http_port}/api/v1/agent",
            data=heartbeat,
            headers={"Content-Type": "application/x-protobuf", **auth},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                out[name] = r.status
        except urllib.error.HTTPError as e:
            out[name] = e.code
        except OSError as e:
            out[name] = type(e).__name__
    if transport == "coap":
        out["coap_plain"] = None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            sock.connect(("127.0.0.1", coap_port))
            for attempt in range(3):
                sock.send(_coap(_POST, attempt, b"auth", ("agent",), heartbeat))
                try:
                    while (data := sock.recv(2048))[1] == 0:  # an empty ACK: the response follows
                        pass
                except (OSError, IndexError):
                    continue
                if (data[0] >> 4) & 3 == _CON:
                    sock.send(bytes([0x60, 0]) + data[2:4])
                out["coap_plain"] = _code_name(data[1])
                break
    out["refused"] = all(v in (401, "CoAP 4.01") for v in list(out.values()))  # UNAUTHENTICATED, each
    return out


def _scrape(url: str) -> dict[tuple[str, str], float]:
    """The master's /metrics as {(name, labels): value} (histogram buckets, sums and counts included)."""
    out: dict[tuple[str, str], float] = {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=_admin_headers()), timeout=30) as r:
            text = r.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        out[(name, labels.rstrip("}"))] = float(value)
    return out


def _histogram(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float], name: str, match: str = ""
) -> dict[str, Any]:
    """One histogram's observations between two scrapes (series whose labels contain ``match``):
    count, mean, and the bucket bounds holding the p99 and the largest one."""
    buckets: dict[float, float] = {}
    total = count = 0.0
    for (n, labels), v in after.items():
        if match not in labels:
            continue
        d = v - before.get((n, labels), 0.0)
        if n == name + "_bucket":
            le = labels.rsplit('le="', 1)[1].rstrip('"')
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + d
        elif n == name + "_sum":
            total += d
        elif n == name + "_count":
            count += d
    bounds = sorted(buckets)  # cumulative counts by upper bound

    def upper(q: float) -> float | None:
        for b in bounds:
            if buckets[b] >= q * count and count:
                return None if b == float("inf") else round(b * 1000, 3)
        return None

    return {
        "n": int(count),
        "mean_ms": round(1000 * total / count, 3) if count else None,
        "p99_le_ms": upper(0.99),
        "max_le_ms": upper(1.0),
        "sum_ms": round(1000 * total, 1),
    }


def _udp_drops() -> int:
    """UDP datagrams the kernel dropped for a full socket receive buffer (``RcvbufErrors``), machine-wide."""
    try:
        lines = [x.split() for x in Path("/proc/net/snmp").read_text().splitlines() if x.startswith("Udp:")]
        return int(lines[1][lines[0].index("RcvbufErrors")])
    except (OSError, IndexError, ValueError):
        return 0


def _bins(offsets: list[float], width: float) -> dict[str, int]:
    """Counts of these offsets (seconds) by bin of ``width`` seconds, keyed by the bin's start."""
    out: dict[str, int] = {}
    for x in offsets:
        key = f"{width * (x // width):g}"
        out[key] = out.get(key, 0) + 1
    return out


def _rss(proc: psutil.Process) -> int:
    return int(proc.memory_info().rss)


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def _stop_quietly(proc: psutil.Popen) -> None:
    if proc.poll() is None:
        _stop(proc)


def _end_processes(children: list[Any]) -> None:
    """Workers and probes still running (a run that failed or was interrupted): ended, then reaped."""
    for p in children:
        if p.is_alive():
            p.terminate()
    for p in children:
        p.join(timeout=10)
        if p.is_alive():
            p.kill()
            p.join(timeout=10)


def _start_probe(ctx: Any, http_port: int, when: dict[str, float], args: argparse.Namespace) -> tuple[Any, Any]:
    """The offer probe (see _offer_probe), started before the fleet registers."""
    probe_pipe, probe_end = ctx.Pipe(duplex=False)
    probe_args = (f"http://127.0.0.1:{http_port}", when["t_measure"] + args.duration / 4, when["t_idle"] - 2, probe_end)
    probe = ctx.Process(target=_offer_probe, args=probe_args, daemon=True)
    probe.start()
    probe_end.close()
    return probe, probe_pipe


def _join_figures(reports: list[Report], n: int, args: argparse.Namespace, cpu: dict[str, float]) -> dict[str, Any]:
    lat = [x for r in reports for x in r.join_latencies]
    joined = sum(r.joined for r in reports)
    firsts = [r.join_first for r in reports if r.join_first is not None]
    lasts = [r.join_last for r in reports if r.join_last is not None]
    fleet = max(lasts) - min(firsts) if firsts and lasts else None
    retries: dict[str, int] = {}
    for r in reports:
        for k, v in r.join_retries.items():
            retries[k] = retries.get(k, 0) + v
    return {
        "joined": joined,
        "failed": n - joined,
        "paced_per_second": args.join_rate,
        # per agent: its first join attempt sent -> the answer with its credential (retries included)
        "latency_ms": {
            "n": len(lat),
            "p50": round(pct(lat, 50) * 1000, 2),
            "p99": round(pct(lat, 99) * 1000, 2),
            "max": round(max(lat) * 1000, 2) if lat else None,
        },
        # the whole fleet: the first join attempt sent -> the last join answered
        "fleet_s": round(fleet, 2) if fleet is not None else None,
        "joins_per_second": round(joined / fleet, 1) if fleet else None,
        "retries": retries,
        "master_cpu_ms_per_join": round(1000 * cpu["master"] / joined, 2) if joined else None,
        "load_generator_cpu_ms_per_join": round(1000 * cpu["load"] / joined, 2) if joined else None,
    }


def run_one(transport: str, n: int, args: argparse.Namespace, echo: bool, security: str = "insecure") -> dict[str, Any]:
    """One fleet against one server; the server, workers and probe are ended whatever happens."""
    with contextlib.ExitStack() as cleanup:
        return _run_one(transport, n, args, echo, security, cleanup)


def _run_one(
    transport: str, n: int, args: argparse.Namespace, echo: bool, security: str, cleanup: contextlib.ExitStack
) -> dict[str, Any]:
    secure = security == "secure" and not echo  # the echo servers are never authenticated
    http_port = free_port()
    coap_port = free_port(2)  # SOCK_DGRAM
    tag = f"{transport}-{n}{'-echo' if echo else ''}{'-secure' if secure else ''}"
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"edgerm-scale-{tag}.log"
    py = sys.executable
    state_dir = tempfile.TemporaryDirectory(prefix="edgerm-scale-")
    cleanup.callback(state_dir.cleanup)
    auth_check = None
    if echo:
        script = "_echo_http.py" if transport == "http" else "_echo_coap.py"
        port = http_port if transport == "http" else coap_port
        proc = _spawn_server([py, str(HERE / script), "--port", str(port)], log)
        cleanup.callback(_stop_quietly, proc)
        if transport == "http":
            _wait_http(f"http://127.0.0.1:{http_port}/", proc)
        else:
            time.sleep(1.5)
    else:
        cmd = [py, "-m", "edgerm.master.main", "--port", str(http_port), "--no-broker", "--log-level", "WARNING"]
        cmd += _security_env(security, Path(state_dir.name))
        cmd += ["--coap-port", str(coap_port)] if transport == "coap" else ["--no-coap"]
        proc = _spawn_server(cmd, log)
        cleanup.callback(_stop_quietly, proc)
        _wait_http(f"http://127.0.0.1:{http_port}/metrics", proc)
        port = http_port if transport == "http" else coap_port
        if secure:
            auth_check = _auth_check(transport, http_port, coap_port)
    time.sleep(0.5)
    rss_before = _rss(proc)
    fds_per_agent = (1 if echo else 2) if transport == "http" else 1
    # Enough worker loops that the generator's own lag stays small (reported as load_generator_lag_ms):
    # a CoAP agent costs a worker more per heartbeat than an HTTP one (a socket and a datagram each way).
    per_worker = 2500 if transport == "coap" else 15000 // fds_per_agent
    workers = args.workers or max(2, -(-n // per_worker))
    ramp = n / args.ramp

    def times() -> dict[str, float]:
        t_start = time.time() + 2.0  # agent 0 registers
        t_measure = t_start + ramp + args.interval + 2
        t_idle = t_measure + args.duration
        return {"t_start": t_start, "t_measure": t_measure, "t_idle": t_idle, "t_end": t_idle + args.interval}

    # A secure run's times are sent to the workers once the fleet has joined.
    when = dict.fromkeys(("t_start", "t_measure", "t_idle", "t_end"), 0.0) if secure else times()
    per = -(-n // workers)
    chunks = [(w * per, min(per, n - w * per)) for w in range(workers) if n - w * per > 0]
    t_join = time.time() + 1.0
    plans = [
        Plan(
            transport=transport,
            host="127.0.0.1",
            port=port,
            first=first,
            count=count,
            interval=args.interval,
            echo=echo,
            http_close=args.http_heartbeats == "close",
            seed=args.seed,
            security="secure" if secure else "insecure",
            join_port=http_port,
            join_token=os.environ.get("EDGERM_JOIN_TOKEN", "") if secure else "",
            join_rate=args.join_rate / len(chunks),
            join_slots=max(1, JOIN_CONCURRENCY // len(chunks)),
            t_join=t_join,
            ramp_rate=args.ramp,
            **when,
        )
        for first, count in chunks
    ]
    ctx = mp.get_context("fork")
    children: list[Any] = []
    cleanup.callback(_end_processes, children)  # before the server is stopped (last in, first out)
    probe = probe_pipe = None
    with_probe = not echo and transport == "http"
    if with_probe and not secure:  # before the fleet registers (see _offer_probe)
        probe, probe_pipe = _start_probe(ctx, http_port, when, args)
        children.append(probe)
    pipes, procs = [], []
    cpu_join0 = _cpu(proc)
    for plan in plans:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(plan, child), daemon=True)
        p.start()
        children.append(p)
        child.close()
        pipes.append(parent)
        procs.append(p)
    join_cpu = None
    rss_joined = rss_before
    if secure:
        print(f"  {tag}: {n} agents in {len(plans)} workers join at {args.join_rate:g}/s", flush=True)
        loaders = [psutil.Process(p.pid) for p in procs]
        deadline = t_join + n / args.join_rate + JOIN_PATIENCE + JOIN_TIMEOUT + 30
        joined = 0
        for pipe in pipes:
            if not pipe.poll(max(0.0, deadline - time.time())):
                raise RuntimeError(f"{tag}: the join phase did not end by its deadline")
            _, count = pipe.recv()
            joined += count
        join_cpu = {"master": _cpu(proc) - cpu_join0, "load": sum(_cpu(x) for x in loaders)}
        rss_joined = _rss(proc)
        print(f"  {tag}: {joined} of {n} joined in {time.time() - t_join:.1f}s", flush=True)
        when = times()
        if with_probe:
            probe, probe_pipe = _start_probe(ctx, http_port, when, args)
            children.append(probe)
        for pipe in pipes:
            pipe.send(when)
    udp0 = _udp_drops()
    t_measure, t_idle, t_end = when["t_measure"], when["t_idle"], when["t_end"]
    print(f"  {tag}: {n} agents in {len(plans)} workers, ramp {ramp:.0f}s, measuring {args.duration:.0f}s", flush=True)
    metrics_url = f"http://127.0.0.1:{http_port}/metrics"
    if not echo:
        # The first scrape renders every agent's lines (0.4 s on the loop at 10,000 agents; later ones
        # re-render only what changed): taken in the warm-up, well before the window.
        time.sleep(max(0.0, t_measure - args.interval - time.time()))
        _scrape(metrics_url)
    time.sleep(max(0.0, t_measure - 2 - time.time()))
    scraped0 = {} if echo else _scrape(metrics_url)  # before the window: a scrape walks every agent
    time.sleep(max(0.0, t_measure - time.time()))
    loaders = [psutil.Process(p.pid) for p in procs]
    load0 = sum(_cpu(x) for x in loaders)
    cpu0, w0 = _cpu(proc), time.monotonic()
    udp1 = _udp_drops()
    rss_samples = []
    while time.time() < t_idle:
        time.sleep(min(1.0, max(0.0, t_idle - time.time())))
        rss_samples.append(_rss(proc))
    cpu1, w1 = _cpu(proc), time.monotonic()
    udp2 = _udp_drops()
    load1 = sum(_cpu(x) for x in loaders)
    offers = None
    if probe is not None and probe_pipe is not None:
        got = probe_pipe.recv() if probe_pipe.poll(15) else None
        probe.join(timeout=5)
        if probe.is_alive():
            probe.terminate()
        offers = _offer_figures(got)
    time.sleep(max(0.0, t_idle + 1 - time.time()))  # in-flight heartbeats finish
    scraped1 = {} if echo else _scrape(metrics_url)
    cpu2, w2 = _cpu(proc), time.monotonic()
    time.sleep(max(0.0, t_end - 1 - time.time()))
    cpu3, w3 = _cpu(proc), time.monotonic()
    known = None
    if not echo:
        try:
            state = get_state(f"http://127.0.0.1:{http_port}", timeout=60)  # with the admin token, if secure
            known = sum(1 for a in state.get("agents", []) if str(a.get("id", "")).startswith(f"bench-{transport}-"))
        except (OSError, ValueError) as e:
            print(f"  state: {e}", flush=True)
    reports: list[Report] = []
    for pipe, p in zip(pipes, procs, strict=True):
        if pipe.poll(t_end - time.time() + 2 * args.interval + 60):
            reports.append(pipe.recv())
        p.join(timeout=10)
        if p.is_alive():
            p.terminate()
    master_log = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    _stop(proc)
    state_dir.cleanup()
    lat = [x for r in reports for x in r.latencies]
    errors: dict[str, int] = {}
    for r in reports:
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
    if auth_check is not None and not auth_check["refused"]:
        errors["auth check: a call without a valid credential was not refused"] = 1
    registered = sum(r.registered for r in reports)
    rss_fleet = max(rss_samples) if rss_samples else rss_before
    result: dict[str, Any] = {
        "transport": transport,
        "agents": n,
        "server": f"echo ({'aiohttp' if transport == 'http' else 'aiocoap'})" if echo else "edgerm-master",
        "security": "none" if echo else security,
        "workers": len(plans),
        "ramp_per_second": args.ramp,
        "window_unix_s": [round(t_measure, 1), round(t_idle, 1)],
        "registered": registered,
        "channels": sum(r.channels for r in reports),
        "heartbeats": sum(r.heartbeats for r in reports),
        "latency_ms": {
            "n": len(lat),
            "p50": round(pct(lat, 50) * 1000, 2),
            "p99": round(pct(lat, 99) * 1000, 2),
            "p999": round(pct(lat, 99.9) * 1000, 2),
            "max": round(max(lat) * 1000, 2) if lat else None,
        },
        "false_losses": {
            "forgotten": sum(r.forgotten for r in reports),
            "channel_ended": sum(r.channel_ended for r in reports),
            # registered by the workers and not known to the master (a REGISTER whose reply timed
            # out may still have been taken in: the master can know more agents, never fewer)
            "missing_from_state": max(0, registered - known) if known is not None else None,
        },
        "errors": errors,
        "master_cpu_percent": round(100 * (cpu1 - cpu0) / max(1e-9, w1 - w0), 1),
        # CPU per answered heartbeat in the window (includes the tick and everything else the server did)
        "cpu_us_per_heartbeat": round(1e6 * (cpu1 - cpu0) / max(1, len(lat)), 1),
        "idle_cpu_percent": round(100 * (cpu3 - cpu2) / max(1e-9, w3 - w2), 1),
        "load_generator_cpu_percent": round(100 * (load1 - load0) / max(1e-9, w1 - w0), 1),
        "machine_load_average": round(os.getloadavg()[0], 1),
        "rss_mib": round(rss_fleet / 2**20, 1),
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_per_agent_kib": round((rss_fleet - rss_before) / max(1, n) / 1024, 2),
    }
    if join_cpu is not None:
        result["join"] = _join_figures(reports, n, args, join_cpu)
        # What the joined fleet holds before any agent registered (credentials, contexts, and what the join
        # phase's garbage left allocated): part of rss_per_agent_kib.
        result["join"]["rss_per_agent_kib"] = round((rss_joined - rss_before) / max(1, n) / 1024, 2)
    if auth_check is not None:
        result["auth_check"] = auth_check
    if offers is not None:
        result["offer_latency"] = offers
    # Where a tail comes from: when the slow heartbeats were sent (seconds into the window, 5 s bins) and how
    # many CoAP requests were retransmitted (before the window: the ramp and warm-up; in it).
    slow = sorted((x - t_measure, y) for r in reports for x, y in r.slow)
    by_tenth: dict[float, list[float]] = {}
    for x, y in slow:
        by_tenth.setdefault(round(x - x % 0.1, 1), []).append(y)
    worst = sorted(by_tenth.items(), key=lambda kv: -len(kv[1]))[:8]
    result["slow_heartbeats"] = {
        "over_ms": SLOW_S * 1000,
        "n": len(slow),
        "by_5s_of_window": _bins([x for x, _ in slow], 5.0),
        # the tenths of a second (into the window) that sent the most: [start, count, max ms]
        "worst_tenths": [[k, len(v), round(max(v) * 1000, 1)] for k, v in sorted(worst)],
        "by_worker": [len(r.slow) for r in reports],  # one worker's own stall, or the master's (all of them)
    }
    resent = [x for r in reports for x in r.retransmits]
    result["retransmissions"] = {
        "before_window": sum(1 for x in resent if x < t_measure),
        "in_window": sum(1 for x in resent if t_measure <= x < t_idle),
        "by_5s_of_window": _bins(sorted(x - t_measure for x in resent if t_measure <= x < t_idle), 5.0),
    }
    # The kernel's count of datagrams dropped for a full receive buffer (machine-wide; the run's are on loopback).
    result["udp_receive_buffer_drops"] = {"ramp_and_warmup": udp1 - udp0, "in_window": udp2 - udp1}
    lags = [x for r in reports for x in r.loop_lags]
    result["load_generator_lag_ms"] = {
        "p50": round(pct(lags, 50) * 1000, 2),
        "p99": round(pct(lags, 99) * 1000, 2),
        "max": round(max(lags) * 1000, 2) if lags else None,
    }
    if not echo:
        # The master's own view of the window (its /metrics, diffed): where a latency tail comes from.
        result["master_inside"] = {
            "event_loop_lag": _histogram(scraped0, scraped1, "edgerm_event_loop_lag_seconds"),
            "gc_pauses_gen2": _histogram(scraped0, scraped1, "edgerm_gc_pause_seconds", 'generation="2"'),
            "gc_pauses_gen1": _histogram(scraped0, scraped1, "edgerm_gc_pause_seconds", 'generation="1"'),
            "gc_pauses_gen0": _histogram(scraped0, scraped1, "edgerm_gc_pause_seconds", 'generation="0"'),
            "gc_cpu_ms": {
                g: round(
                    1000
                    * (
                        scraped1.get(("edgerm_gc_cpu_seconds_total", f'generation="{g}"'), 0.0)
                        - scraped0.get(("edgerm_gc_cpu_seconds_total", f'generation="{g}"'), 0.0)
                    ),
                    1,
                )
                for g in "012"
            },
            "gc_freezes": scraped1.get(("edgerm_gc_freezes_total", ""), 0.0),
            "gc_young_collections": scraped1.get(("edgerm_gc_young_collections_total", ""), 0.0)
            - scraped0.get(("edgerm_gc_young_collections_total", ""), 0.0),
            "tick": _histogram(scraped0, scraped1, "edgerm_allocation_cycle_seconds"),
            "heartbeat_core": _histogram(scraped0, scraped1, "edgerm_core_event_seconds", 'event="HeartbeatReceived"'),
            "heartbeat_handler": _histogram(
                scraped0, scraped1, "edgerm_request_seconds", f'type="HEARTBEAT",transport="{transport}"'
            ),
        }
    if errors or not registered:
        result["server_log_tail"] = master_log[-600:]
    print("  " + json.dumps({k: v for k, v in result.items() if k != "server_log_tail"}), flush=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--transport", default="http,coap")
    p.add_argument("--agents", default="1000,5000,10000", help="comma-separated fleet sizes")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of measurement per size")
    p.add_argument("--interval", type=float, default=10.0, help="heartbeat interval (0.1 Hz)")
    p.add_argument("--workers", type=int, default=0, help="load processes (0: enough for the fd limit)")
    p.add_argument("--http-heartbeats", choices=["keepalive", "close"], default="keepalive")
    p.add_argument("--no-echo", action="store_true", help="skip the echo baselines")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--security",
        default="insecure",
        help="insecure (an --insecure master, as earlier results), secure (agents join and authenticate), "
        "or both: insecure,secure",
    )
    p.add_argument(
        "--ramp",
        type=float,
        default=RAMP_PER_SECOND,
        help=f"agents that start (REGISTER) per second, the whole fleet (default {RAMP_PER_SECOND})",
    )
    p.add_argument(
        "--join-rate",
        type=float,
        default=JOIN_PER_SECOND,
        help="secure: joins per second for the whole fleet (the master allows the join token 200/s)",
    )
    p.add_argument("--out", default="scale", help="result name under bench/results/, or a path")
    args = p.parse_args()
    securities = args.security.split(",")
    if not securities or any(x not in ("insecure", "secure") for x in securities):
        p.error("--security: insecure, secure or insecure,secure")
    if args.join_rate <= 0:
        p.error("--join-rate must be > 0")
    hard = _raise_fd_limit()
    # SIGTERM unwinds like an error (run_one ends the server, workers and probe), not at once.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    runs: list[dict[str, Any]] = []
    for transport in args.transport.split(","):
        for n in (int(x) for x in args.agents.split(",")):
            # The master once per security mode; the echo baseline (never authenticated) once.
            cases = [(False, s) for s in securities] + ([] if args.no_echo else [(True, "none")])
            for echo, security in cases:
                runs.append(run_one(transport, n, args, echo=echo, security=security))
                path = save(  # after every run: a long run interrupted still leaves its figures
                    args.out,
                    {
                        "command": " ".join(sys.argv),
                        "interval_s": args.interval,
                        "duration_s": args.duration,
                        "http_heartbeats": args.http_heartbeats,
                        "fd_limit": hard,
                        "security": securities,
                        "echo_security": "none",
                        "runs": runs,
                    },
                )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
