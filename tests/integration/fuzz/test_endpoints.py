"""Fuzz every HTTP and CoAP endpoint of a real master with random and mutated protobuf.

About 100,000 inputs in all (issue #10, item 10): over a real HTTP socket
(``POST /api/v1/agent``, ``POST /api/v1/scheduler``, the read-only GETs,
unknown paths, wrong methods and content types), over a real UDP socket
(``POST /agent``, ``/agents/{id}/commands`` with and without Observe,
``/modules/{sha256}``, unknown paths, and whole datagrams mangled below the
CoAP layer), and, for the bulk, through the handler layer the two adapters
share (``wire.decode_*`` then :class:`edgerm.master.handlers.Handlers`).
Inputs are seeded mutations of valid calls that name the master's real
agents, framework, task and offer (:mod:`world`), plus Hypothesis-built
messages with arbitrary field values.

For every input: no 5xx (HTTP) and no 5.xx (CoAP) except a typed 5.03; a
refused input gets a typed ``edgerm.v1.Error`` and leaves the whole cluster
state exactly as it was; every reply comes within a bound (no hang); and
nothing is logged at ERROR or with a traceback during the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
from collections.abc import AsyncIterator
from typing import Any

import aiocoap
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgerm import messages as m
from edgerm import wire
from edgerm.errors import MalformedMessage, WireError
from edgerm.v1 import agent_pb2, common_pb2, scheduler_pb2
from tests.integration.fuzz.world import LogTrap, Mutator, World, agent_seeds, populated_master, scheduler_seeds
from tests.support import eventually

pytestmark = pytest.mark.slow

DATAGRAM_PAYLOAD = 3000  # aiocoap reads 4096 bytes of a datagram
REPLY_WITHIN = 10.0  # seconds: a reply later than this is a hang
# 100,400 inputs in all; the environment variables scale a run up (or down, while debugging).
N_HTTP = int(os.environ.get("EDGERM_FUZZ_HTTP", "15000"))
N_COAP = int(os.environ.get("EDGERM_FUZZ_COAP", "15000"))
N_DIRECT = int(os.environ.get("EDGERM_FUZZ_DIRECT", "70000"))
N_HYPOTHESIS = int(os.environ.get("EDGERM_FUZZ_HYPOTHESIS", "400"))


@pytest.fixture
async def world() -> AsyncIterator[World]:
    trap = LogTrap()
    with trap.installed():
        async with populated_master() as w:
            yield w
    assert not trap.bad, f"logged during the fuzz run: {trap.bad[:5]}"


class Tally:
    """Counts by outcome, and checks that refused inputs leave the state as it was.

    An input that decodes (``start(decodes=True)``) reaches the handlers: the
    state is compared right before and right after it. One that does not
    decode is refused at the wire boundary; those are checked in windows of
    :data:`WINDOW` (a snapshot costs ~1 ms, a refused input ~0.1 ms), and a
    changed state names the window's inputs.
    """

    WINDOW = 200

    def __init__(self, world: World) -> None:
        self.world = world
        self.before = world.state()
        self.window: list[str] = []
        self.decodes = False
        self.counts: dict[str, int] = {}

    def start(self, decodes: bool) -> None:
        self.decodes = decodes
        if decodes:
            self.flush()

    def flush(self) -> None:
        now = self.world.state()
        assert now == self.before, f"one of these refused inputs changed the state: {self.window}"
        self.window.clear()

    def accepted(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.window.clear()
        self.before = self.world.state()

    def refused(self, kind: str, what: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.decodes:
            assert self.world.state() == self.before, f"refused input changed the state: {what}"
            return
        self.window.append(what)
        if len(self.window) >= self.WINDOW:
            self.flush()

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def decodes(data: bytes, agent: bool) -> bool:
    """Whether the master's wire layer takes ``data`` (then the handlers see it)."""
    try:
        if agent:
            wire.decode_agent_call(data)
        else:
            wire.decode_call(data)
    except WireError:
        return False
    return True


# -- HTTP over a raw socket -----------------------------------------------------------------


class RawHttp:
    """HTTP/1.1 keep-alive requests on one connection, written and parsed by hand (cheap)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes | None]:
        """(status, body); body None for a streamed reply, whose connection is then closed."""
        for attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            head = f"{method} {path} HTTP/1.1\r\nHost: fuzz\r\nContent-Length: {len(body)}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
            try:
                self.writer.write(head.encode("latin-1") + body)
                status_line = await self.reader.readuntil(b"\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()  # the server closed the connection after the previous reply
                if attempt:
                    raise
                continue
            break
        status = int(status_line.split()[1])
        fields: dict[str, str] = {}
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip()
        if "content-length" not in fields:  # a stream (chunked): read no further
            await self.close()
            return status, None
        data = await self.reader.readexactly(int(fields["content-length"]))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, data


def _http_input(
    mut: Mutator, world: World, agents: list[bytes], calls: list[bytes]
) -> tuple[str, str, bytes, dict[str, str]]:
    r = mut.rng
    pb = {"Content-Type": "application/x-protobuf"}
    roll = r.random()
    if roll < 0.45:
        return "POST", "/api/v1/agent", mut.next(agents), pb
    if roll < 0.90:
        sid = world.stream_id if r.random() < 0.9 else mut.random_bytes(12).hex()
        return "POST", "/api/v1/scheduler", mut.next(calls), dict(pb, **{"Edgerm-Stream-Id": sid})
    other = r.randrange(8)
    if other == 0:
        return "GET", "/api/v1/state", b"", {}
    if other == 1:
        return "GET", "/metrics", b"", {}
    if other == 2:
        sha = r.choice([world.module_sha, "0" * 64, mut.random_bytes(20).hex(), "%ff", "x" * 300])
        return "GET", f"/api/v1/modules/{sha}", b"", {}
    if other == 3:
        return "GET", "/", b"", {}
    if other == 4:
        return r.choice(["GET", "PUT", "DELETE", "PATCH"]), r.choice(["/api/v1/agent", "/api/v1/scheduler"]), b"", {}
    if other == 5:
        ctype = r.choice(["application/json", "", "application/x-protobuf; charset=utf-8", "text/plain"])
        return "POST", "/api/v1/agent", mut.next(agents), {"Content-Type": ctype} if ctype else {}
    return "POST", "/" + mut.random_bytes(8).hex(), mut.next(agents), pb


async def test_http_endpoints_over_a_real_socket(world: World) -> None:
    master = world.master
    http = RawHttp(master.host, master.port)
    tally = Tally(world)
    mut = Mutator(1001)
    agents, calls = agent_seeds(), scheduler_seeds(world)
    try:
        for i in range(N_HTTP):
            method, path, body, headers = _http_input(mut, world, agents, calls)
            what = f"input {i}: {method} {path} {body[:80]!r}"
            api = method == "POST" and path in ("/api/v1/agent", "/api/v1/scheduler")
            ok_type = headers.get("Content-Type", "").startswith("application/x-protobuf")
            tally.start(api and ok_type and decodes(body, path.endswith("agent")))
            status, reply = await asyncio.wait_for(http.request(method, path, body, headers), REPLY_WITHIN)
            assert status < 500, f"{status} for {what}: {reply!r}"
            if reply is None:  # a stream was opened (and closed again at once)
                await _eventually(world.settled, what)
                tally.accepted("stream")
            elif status >= 400:
                if api:
                    wire.decode_error(reply)  # typed: an edgerm.v1.Error body
                tally.refused(f"http {status}", what)
            else:
                tally.accepted(f"http {status}")
        tally.flush()
    finally:
        await http.close()
    assert tally.total == N_HTTP
    assert tally.counts.get("http 400", 0) > N_HTTP // 4, tally.counts  # most mutations are refused...
    assert sum(v for k, v in tally.counts.items() if k.startswith("http 2")) > N_HTTP // 50  # ...not all


async def _eventually(check: Any, what: str) -> None:
    await eventually(check, REPLY_WITHIN, f"streams closed after {what}")


# -- CoAP over a raw UDP socket -------------------------------------------------------------


class RawCoap(asyncio.DatagramProtocol):
    """CoAP messages built with aiocoap's codec, on a plain UDP socket we control byte by byte."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.waiting: dict[bytes, asyncio.Future[aiocoap.Message]] = {}
        self.server_errors: list[str] = []
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1
        try:
            msg = aiocoap.Message.decode(data)
        except aiocoap.error.UnparsableMessage:
            self.server_errors.append(f"the master sent an unparsable datagram {data[:40]!r}")
            return
        if msg.mtype == aiocoap.CON:  # a separate response or a notification: acknowledge it
            ack = aiocoap.Message(code=aiocoap.EMPTY)
            ack.mid, ack.mtype, ack.token = msg.mid, aiocoap.ACK, b""
            self.send(ack.encode())
        if msg.code == aiocoap.EMPTY:
            return
        if msg.code.class_ == 5 and not _typed_unavailable(msg):
            self.server_errors.append(f"{msg.code} {msg.payload[:80]!r}")
        future = self.waiting.pop(msg.token, None)
        if future is not None and not future.done():
            future.set_result(msg)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data)


def _typed_unavailable(msg: aiocoap.Message) -> bool:
    """5.03 with an edgerm.v1.Error: an observation ended (replaced by a newer one)."""
    if msg.code != aiocoap.SERVICE_UNAVAILABLE:
        return False
    try:
        return wire.decode_error(msg.payload).code == "UNAVAILABLE"
    except MalformedMessage:
        return False


@contextlib.asynccontextmanager
async def coap_socket(port: int) -> AsyncIterator[RawCoap]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(RawCoap, remote_addr=("127.0.0.1", port))
    try:
        yield protocol
    finally:
        transport.close()


def _coap_request(mut: Mutator, world: World, agents: list[bytes]) -> aiocoap.Message:
    r = mut.rng
    roll = r.random()
    if roll < 0.80:
        # One datagram (no block-wise here): at most what the master reads of a datagram.
        payload = mut.next(agents)[:DATAGRAM_PAYLOAD]
        return aiocoap.Message(code=aiocoap.POST, uri_path=("agent",), payload=payload)
    agent = r.choice(["fa-1", "fa-2", "nobody", mut.random_bytes(6).hex(), ""])
    if roll < 0.88:
        msg = aiocoap.Message(code=aiocoap.GET, uri_path=("agents", agent, "commands"))
        if r.random() < 0.5:
            msg.opt.observe = r.choice([0, 0, 1, 7])
        return msg
    if roll < 0.93:
        payload = r.choice([bytes(8), mut.random_bytes(12), b""])
        return aiocoap.Message(code=aiocoap.POST, uri_path=("agents", agent, "commands"), payload=payload)
    if roll < 0.97:
        sha = r.choice([world.module_sha, "0" * 64, mut.random_bytes(10).hex()])
        return aiocoap.Message(code=r.choice([aiocoap.GET, aiocoap.PUT]), uri_path=("modules", sha))
    return aiocoap.Message(code=aiocoap.POST, uri_path=(mut.random_bytes(4).hex(),), payload=mut.random_bytes())


async def test_coap_endpoints_over_a_real_socket(world: World) -> None:
    coap = world.master.coap
    assert coap is not None
    tally = Tally(world)
    mut = Mutator(2002)
    agents = agent_seeds()
    mids = itertools.count(1)
    tokens = itertools.count(1)
    sent = 0
    probe = aiocoap.Message(code=aiocoap.GET, uri_path=("modules", world.module_sha))
    async with contextlib.AsyncExitStack() as stack:
        raw = await stack.enter_async_context(coap_socket(coap.port))
        # Mangled datagrams carry any message id: from their own source port, so the
        # master's deduplication never answers a later request with their reply.
        mangler = await stack.enter_async_context(coap_socket(coap.port))
        while sent < N_COAP:
            if next(mids) % 30_000 == 0:  # a fresh source port before message ids repeat
                raw = await stack.enter_async_context(coap_socket(coap.port))
            if mut.rng.random() < 0.01:
                # Whole datagrams mangled below CoAP, sent without waiting; then a probe that must be answered.
                tally.flush()
                before = world.state()
                for _ in range(50):
                    msg = _coap_request(mut, world, agents)
                    msg.mid, msg.token, msg.mtype = next(mids) & 0xFFFF, next(tokens).to_bytes(4, "big"), aiocoap.CON
                    mangler.send(mut.mutate(msg.encode(), []))
                sent += 50
                reply = await _coap_call(raw, probe, next(mids), next(tokens))
                assert reply.code == aiocoap.CONTENT, f"the probe after mangled datagrams got {reply.code}"
                if world.state() != before:
                    tally.accepted("coap mangled, state moved")  # a mangled datagram may still be a valid call
                else:
                    tally.counts["coap mangled"] = tally.counts.get("coap mangled", 0) + 50
                    tally.before = before
                continue
            msg = _coap_request(mut, world, agents)
            tally.start(msg.opt.uri_path == ("agent",) and decodes(msg.payload, True))
            what = f"input {sent}: {msg.code} /{'/'.join(msg.opt.uri_path)} {msg.payload[:80]!r}"
            try:
                reply = await _coap_call(raw, msg, next(mids), next(tokens))
            except TimeoutError:
                raise AssertionError(f"no reply within {REPLY_WITHIN}s to {what} ({len(msg.payload)} bytes)") from None
            sent += 1
            assert reply.code.class_ != 5 or _typed_unavailable(reply), f"{reply.code} for {what}"
            if reply.code.is_successful():
                tally.accepted(f"coap {reply.code.dotted}")
            else:
                ours = bool(msg.opt.uri_path) and msg.opt.uri_path[0] in ("agent", "agents", "modules")
                if ours and reply.code not in (aiocoap.METHOD_NOT_ALLOWED, aiocoap.BAD_OPTION):
                    wire.decode_error(reply.payload)  # typed: an edgerm.v1.Error payload
                tally.refused(f"coap {reply.code.dotted}", what)
        tally.flush()
        assert not raw.server_errors and not mangler.server_errors, (raw.server_errors + mangler.server_errors)[:5]
    assert tally.counts.get("coap 4.00", 0) > N_COAP // 5, tally.counts


async def _coap_call(raw: RawCoap, msg: aiocoap.Message, mid: int, token: int) -> aiocoap.Message:
    msg.mid, msg.token, msg.mtype = mid & 0xFFFF, token.to_bytes(4, "big"), aiocoap.CON
    future: asyncio.Future[aiocoap.Message] = asyncio.get_running_loop().create_future()
    raw.waiting[msg.token] = future
    raw.send(msg.encode())
    try:
        return await asyncio.wait_for(future, REPLY_WITHIN)
    finally:
        raw.waiting.pop(msg.token, None)


# -- the handler layer both adapters share ------------------------------------------------------


async def _direct(world: World, tally: Tally, data: bytes, agent: bool, what: str) -> None:
    handlers = world.handlers
    tally.start(decodes(data, agent))
    try:
        if agent:
            call = wire.decode_agent_call(data)
            if type(call) is m.SubscribeAgent:
                handlers.agent_commands(call.agent_id).close()
            else:
                await handlers.agent_call(call)
        else:
            sched = wire.decode_call(data)
            if isinstance(sched, m.Subscribe):
                stream = await handlers.subscribe(sched)
                await stream.aclose()
            else:
                await handlers.scheduler_call(sched, world.stream_id)
    except WireError as e:
        tally.refused(type(e).code, what)
    else:
        tally.accepted("ok")


async def test_the_shared_handler_layer(world: World) -> None:
    tally = Tally(world)
    mut = Mutator(3003)
    agents, calls = agent_seeds(), scheduler_seeds(world)
    for i in range(N_DIRECT):
        agent = mut.rng.random() < 0.5
        data = mut.next(agents if agent else calls)
        await _direct(world, tally, data, agent, f"input {i}: {'agent' if agent else 'scheduler'} {data[:80]!r}")
        if i % 500 == 0:
            await asyncio.sleep(0)  # let the drained framework stream run
    tally.flush()
    assert tally.total == N_DIRECT
    assert tally.counts.get("MALFORMED", 0) > N_DIRECT // 4, tally.counts


# -- Hypothesis: well-formed protobuf with arbitrary field values -----------------------------------

floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, -1.0, 5e-324]),
)
texts = st.one_of(st.text(max_size=12), st.sampled_from(["fa-1", "fa-2", "ft-1", "", " ", "a/b", "\x00", "é" * 200]))


@st.composite
def resources(draw: st.DrawFn) -> list[common_pb2.Resource]:
    R = common_pb2.Resource
    out = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from([0, 1, 2, 3, 4, 9]))
        r = R(name=draw(st.sampled_from(["cpus", "mem", "ports", "gpu", ""]) | texts), type=kind)  # type: ignore[arg-type]
        r.scalar = draw(floats)
        r.ranges.extend(
            common_pb2.Range(begin=b, end=e)
            for b, e in draw(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)), max_size=3))
        )
        r.set.extend(draw(st.lists(texts, max_size=3)))
        r.device.handle = draw(texts)
        out.append(r)
    return out


@st.composite
def agent_calls(draw: st.DrawFn) -> bytes:
    AC = agent_pb2.AgentCall
    call = AC(agent_id=draw(texts), type=draw(st.integers(0, 6)))  # type: ignore[arg-type]
    call.heartbeat.task_ids.extend(draw(st.lists(texts, max_size=5)))
    info = call.register.agent
    info.id, info.hostname = draw(texts), draw(texts)
    info.heartbeat_interval_seconds = draw(floats)
    info.resources.extend(draw(resources()))
    for _ in range(draw(st.integers(0, 2))):
        info.attributes.add(name=draw(texts), text=draw(texts)).set.extend(draw(st.lists(texts, max_size=2)))
    status = call.update.status
    status.task_id, status.agent_id, status.uuid, status.message = draw(texts), draw(texts), draw(texts), draw(texts)
    status.state, status.reason = draw(st.integers(0, 20)), draw(st.integers(0, 30))  # type: ignore[assignment]
    status.timestamp = draw(floats)
    if draw(st.booleans()):
        call.register.tasks.append(status)
    return call.SerializeToString()


@st.composite
def scheduler_calls(draw: st.DrawFn) -> bytes:
    C = scheduler_pb2.Call
    call = C(framework_id=draw(texts), type=draw(st.integers(0, 12)))  # type: ignore[arg-type]
    call.subscribe.framework.name = draw(texts)
    call.subscribe.framework.id = draw(texts)
    call.subscribe.framework.failover_timeout_seconds = draw(floats)
    call.accept.offer_ids.extend(draw(st.lists(texts, max_size=3)))
    call.accept.filters.refuse_seconds = draw(floats)
    call.decline.filters.refuse_seconds = draw(floats)
    for _ in range(draw(st.integers(0, 2))):
        op = call.accept.operations.add(type=draw(st.integers(0, 3)))  # type: ignore[arg-type]
        t = op.launch.tasks.add(task_id=draw(texts), name=draw(texts), agent_id=draw(texts))
        t.resources.extend(draw(resources()))
        t.kill_grace_seconds = draw(floats)
        if draw(st.booleans()):
            t.container.wasm.module = draw(st.binary(max_size=8))
            t.container.wasm.time_limit_seconds = draw(floats)
        else:
            t.container.docker.image = draw(texts)
        t.env.update(draw(st.dictionaries(texts, texts, max_size=2)))
        t.labels.update(draw(st.dictionaries(texts, texts, max_size=2)))
    call.kill.task_id, call.kill.agent_id = draw(texts), draw(texts)
    call.reconcile.tasks.add(task_id=draw(texts))
    return call.SerializeToString()


@settings(
    max_examples=N_HYPOTHESIS,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.one_of(agent_calls().map(lambda b: (True, b)), scheduler_calls().map(lambda b: (False, b))))
async def test_well_formed_calls_with_arbitrary_values(world: World, data: tuple[bool, bytes]) -> None:
    agent, body = data
    tally = Tally(world)
    await _direct(world, tally, body, agent, f"{'agent' if agent else 'scheduler'} {body!r}")


def test_a_non_utf8_uri_path_is_an_unparsable_datagram_not_a_traceback() -> None:
    from edgerm.coap_util import harden_aiocoap

    harden_aiocoap()
    msg = aiocoap.Message(code=aiocoap.POST, uri_path=("agent",))
    msg.mid, msg.token, msg.mtype = 1, b"", aiocoap.CON
    raw = bytearray(msg.encode())
    raw[raw.index(b"agent")] = 0xFF
    with pytest.raises(aiocoap.error.UnparsableMessage):
        aiocoap.Message.decode(bytes(raw))
