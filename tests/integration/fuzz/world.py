"""What the fuzz tests share: a populated real master, the seed corpus and the mutators.

:func:`populated_master` starts a real master (HTTP and CoAP on ephemeral
loopback ports) with no periodic tick and no timeouts within the test, and
fills it over real HTTP: two agents, a subscribed framework whose event
stream is drained, one RUNNING task, an outstanding offer and a stored
module. Its state then changes only when an input is accepted, so a refused
input must leave :meth:`World.state` exactly as it was.

:func:`seeds` are valid encoded ``AgentCall``/``Call`` bodies that name the
real ids (so mutations reach deep into the handlers), plus oversized
variants (huge repeated fields). :class:`Mutator` turns a seed into an input:
bit flips, byte changes, truncation, insertion, splicing, protobuf field
injection, or plain random bytes. It is seeded: a failure names its input
and replays.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from edgerm import messages as m
from edgerm import wire
from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId
from edgerm.master.main import RunningMaster, start_master
from edgerm.master.state import MasterConfig
from edgerm.model import AgentInfo, Filters, FrameworkInfo, TaskInfo, TaskState, TaskStatus, WasmSpec
from edgerm.resources import Resources
from edgerm.v1 import agent_pb2, common_pb2, scheduler_pb2

PB = {"Content-Type": "application/x-protobuf"}
MODULE = b"\0asm\1\0\0\0"
MAX_BODY = 256 * 1024
HOUR = 3600.0


class LogTrap(logging.Handler):
    """Every record at ERROR or above, and every record carrying a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bad: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.bad.append(f"{record.name} {record.levelname}: {record.getMessage()}")

    @contextlib.contextmanager
    def installed(self) -> Any:
        root = logging.getLogger()
        root.addHandler(self)
        try:
            yield self
        finally:
            root.removeHandler(self)


@dataclass
class World:
    master: RunningMaster
    session: aiohttp.ClientSession
    framework_id: FrameworkId
    stream_id: str
    offer_id: OfferId
    module_sha: str
    drained: list[int] = field(default_factory=lambda: [0])

    @property
    def handlers(self) -> Any:
        return self.master.handlers

    def state(self) -> str:
        """The whole cluster state, canonical (compared before and after each refused input)."""
        return json.dumps(self.master.handlers.state(), sort_keys=True, default=str)

    def settled(self) -> bool:
        """No fuzz-opened stream is still attached (their closing changes state asynchronously)."""
        gauges = self.master.service.gauges()
        if gauges["edgerm_agent_channels"]:
            return False
        streams = gauges["edgerm_framework_streams"]
        if streams == 0:
            return True
        try:
            self.master.service.check_stream(self.framework_id, self.stream_id)
        except Exception:
            return False
        return streams == 1


async def _drain(response: aiohttp.ClientResponse, counter: list[int]) -> None:
    with contextlib.suppress(aiohttp.ClientError, asyncio.CancelledError):
        async for chunk in response.content.iter_any():
            counter[0] += len(chunk)


@contextlib.asynccontextmanager
async def populated_master() -> AsyncIterator[World]:
    config = MasterConfig(offer_timeout=HOUR, status_retry_interval=HOUR, launch_retry_interval=HOUR)
    async with (
        # Insecure: the fuzz speaks for many agent ids; authentication has its own tests (tests/integration/security).
        start_master(config=config, allocation_interval=HOUR, max_body=MAX_BODY, coap_port=0, insecure=True) as master,
        aiohttp.ClientSession() as session,
    ):
        agent_url = master.url + "/api/v1/agent"
        sched_url = master.url + "/api/v1/scheduler"

        async def agent_call(call: m.AgentCall) -> m.AgentEvent:
            async with session.post(agent_url, data=wire.encode_agent_call(call), headers=PB) as r:
                assert r.status == 200, r.status
                return wire.decode_agent_event(await r.read())

        for aid in ("fa-1", "fa-2"):
            info = AgentInfo(
                AgentId(aid),
                f"{aid}.test",
                Resources.parse("cpus:4;mem:4096;ports:[8000-8100]"),
                {"executors": frozenset({"wasm", "docker"}), "os": "linux"},
                heartbeat_interval=HOUR,
            )
            await agent_call(m.RegisterAgent(info))
        body = wire.encode_call(m.Subscribe(FrameworkInfo(FrameworkId(""), "fuzzed")))
        response = await session.post(sched_url, data=body, headers=PB)
        assert response.status == 200
        stream_id = response.headers["Edgerm-Stream-Id"]
        reader = wire.RecordReader()
        offers: list[m.Offers] = []
        framework_id = FrameworkId("")
        while len(offers) < 1 or sum(len(o.offers) for o in offers) < 2:
            for record in reader.feed(await response.content.readany()):
                event = wire.decode_event(record)
                if isinstance(event, m.Subscribed):
                    framework_id = event.framework_id
                elif isinstance(event, m.Offers):
                    offers.append(event)
        by_agent = {o.agent_id: o for batch in offers for o in batch.offers}
        task = TaskInfo(
            TaskId("ft-1"), "fuzz", AgentId("fa-1"), Resources.parse("cpus:1;mem:128"), WasmSpec(module=MODULE)
        )
        accept = m.Accept(framework_id, (by_agent[AgentId("fa-1")].id,), (task,), Filters(0))
        headers = dict(PB, **{"Edgerm-Stream-Id": stream_id})
        async with session.post(sched_url, data=wire.encode_call(accept), headers=headers) as r:
            assert r.status == 202, r.status
        await agent_call(
            m.StatusUpdate(AgentId("fa-1"), TaskStatus(TaskId("ft-1"), AgentId("fa-1"), TaskState.RUNNING, uuid="u-1"))
        )
        counter = [0]
        drain = asyncio.create_task(_drain(response, counter))
        world = World(
            master,
            session,
            framework_id,
            stream_id,
            by_agent[AgentId("fa-2")].id,
            WasmSpec(module=MODULE).sha256,
            counter,
        )
        try:
            yield world
        finally:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
            response.close()


# -- the seed corpus ----------------------------------------------------------------------

AC = agent_pb2.AgentCall
C = scheduler_pb2.Call


def _status(task_id: str, state: int = common_pb2.TASK_RUNNING, uuid: str = "u-2") -> common_pb2.TaskStatus:
    return common_pb2.TaskStatus(task_id=task_id, agent_id="fa-1", state=state, uuid=uuid, timestamp=1.0)


def _agent_info(aid: str = "fa-1", n_resources: int = 3) -> common_pb2.AgentInfo:
    R = common_pb2.Resource
    resources = [R(name="cpus", type=R.SCALAR, scalar=4), R(name="mem", type=R.SCALAR, scalar=4096)]
    resources += [R(name=f"r{i}", type=R.SCALAR, scalar=1) for i in range(n_resources - 2)]
    resources.append(R(name="ports", type=R.RANGES, ranges=[common_pb2.Range(begin=8000, end=8100)]))
    attributes = [
        common_pb2.Attribute(name="executors", set=["wasm", "docker"]),
        common_pb2.Attribute(name="os", text="linux"),
    ]
    return common_pb2.AgentInfo(
        id=aid, hostname=f"{aid}.test", resources=resources, attributes=attributes, heartbeat_interval_seconds=HOUR
    )


def _task(task_id: str = "ft-2", agent_id: str = "fa-2") -> common_pb2.TaskInfo:
    R = common_pb2.Resource
    return common_pb2.TaskInfo(
        task_id=task_id,
        name="fuzz",
        agent_id=agent_id,
        resources=[R(name="cpus", type=R.SCALAR, scalar=1), R(name="mem", type=R.SCALAR, scalar=64)],
        container=common_pb2.ContainerInfo(wasm=common_pb2.WasmInfo(module=MODULE, time_limit_seconds=5)),
        args=["a"],
        env={"K": "v"},
        labels={"app": "fuzz"},
        kill_grace_seconds=1,
    )


def agent_seeds() -> list[bytes]:
    out = [
        AC(agent_id="fa-1", type=AC.HEARTBEAT, heartbeat=AC.Heartbeat(task_ids=["ft-1"])),
        AC(agent_id="fa-2", type=AC.HEARTBEAT),
        AC(agent_id="nobody", type=AC.HEARTBEAT, heartbeat=AC.Heartbeat(task_ids=["x"])),
        AC(agent_id="fa-1", type=AC.UPDATE, update=AC.Update(status=_status("ft-1"))),
        AC(agent_id="fa-1", type=AC.UPDATE, update=AC.Update(status=_status("ft-1", common_pb2.TASK_FINISHED))),
        AC(agent_id="fa-1", type=AC.REGISTER, register=AC.Register(agent=_agent_info(), tasks=[_status("ft-1")])),
        AC(agent_id="fa-3", type=AC.REGISTER, register=AC.Register(agent=_agent_info("fa-3"))),
        AC(agent_id="fa-1", type=AC.SUBSCRIBE),
        # huge repeated fields
        AC(agent_id="fa-1", type=AC.HEARTBEAT, heartbeat=AC.Heartbeat(task_ids=[f"t{i}" for i in range(5000)])),
        AC(
            agent_id="fa-1",
            type=AC.REGISTER,
            register=AC.Register(agent=_agent_info(n_resources=300), tasks=[_status(f"t{i}") for i in range(5000)]),
        ),
    ]
    return [c.SerializeToString() for c in out]


def scheduler_seeds(world: World) -> list[bytes]:
    fid, offer = world.framework_id, world.offer_id
    launch = C.Operation(type=C.Operation.LAUNCH, launch=C.Operation.Launch(tasks=[_task()]))
    filters = scheduler_pb2.Filters(refuse_seconds=1)
    out = [
        C(type=C.SUBSCRIBE, subscribe=C.Subscribe(framework=common_pb2.FrameworkInfo(id="fz-other", name="other"))),
        C(framework_id=fid, type=C.ACCEPT, accept=C.Accept(offer_ids=[offer], operations=[launch], filters=filters)),
        C(framework_id=fid, type=C.DECLINE, decline=C.Decline(offer_ids=[offer], filters=filters)),
        C(framework_id=fid, type=C.REVIVE),
        C(framework_id=fid, type=C.SUPPRESS),
        C(framework_id=fid, type=C.KILL, kill=C.Kill(task_id="ft-1", agent_id="fa-1")),
        C(framework_id=fid, type=C.ACKNOWLEDGE, acknowledge=C.Acknowledge(agent_id="fa-1", task_id="ft-1", uuid="u")),
        C(framework_id=fid, type=C.RECONCILE, reconcile=C.Reconcile(tasks=[C.Reconcile.Task(task_id="ft-1")])),
        C(framework_id=fid, type=C.RECONCILE),
        C(framework_id=fid, type=C.TEARDOWN),
        # huge repeated fields
        C(framework_id=fid, type=C.DECLINE, decline=C.Decline(offer_ids=[f"o{i}" for i in range(3000)])),
        C(
            framework_id=fid,
            type=C.ACCEPT,
            accept=C.Accept(
                offer_ids=[offer],
                operations=[C.Operation(type=C.Operation.LAUNCH, launch=C.Operation.Launch(tasks=[_task()] * 1500))],
            ),
        ),
    ]
    return [c.SerializeToString() for c in out]


# -- mutators ------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


class Mutator:
    """Seeded, so every input can be replayed from its index."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def random_bytes(self, limit: int = 64) -> bytes:
        r = self.rng
        return bytes(r.getrandbits(8) for _ in range(r.randint(0, limit)))

    def field(self) -> bytes:
        """One protobuf field with a random number and wire type (sometimes a wrong one)."""
        r = self.rng
        number = r.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 16, 100, 2**29 - 1, r.randint(1, 2**29 - 1)])
        kind = r.choice([0, 1, 2, 5, 3, 4, 6, 7])
        tag = _varint(number << 3 | kind)
        if kind == 0:
            return tag + _varint(r.choice([0, 1, 2, 99, 2**31, 2**63, 2**64 - 1, r.getrandbits(64)]))
        if kind == 1:
            return tag + r.choice([b"\x00\x00\x00\x00\x00\x00\xf8\x7f", b"\x00\x00\x00\x00\x00\x00\xf0\x7f"]) + b""
        if kind == 5:
            return tag + bytes(r.getrandbits(8) for _ in range(4))
        if kind == 2:
            payload = r.choice([self.random_bytes(), b"\xff\xfe", b"a" * r.randint(0, 3000), b"\x00" * 8])
            length = len(payload) if r.random() < 0.9 else r.randint(0, 2**32)
            return tag + _varint(length) + payload
        return tag  # group start/end and invalid wire types

    def mutate(self, seed: bytes, others: list[bytes]) -> bytes:
        r = self.rng
        data = bytearray(seed)
        for _ in range(r.choice([1, 1, 1, 2, 3, 5])):
            op = r.randrange(9)
            if op == 0 and data:  # bit flips
                for _ in range(r.randint(1, 4)):
                    i = r.randrange(len(data))
                    data[i] ^= 1 << r.randrange(8)
            elif op == 1 and data:  # interesting bytes
                i = r.randrange(len(data))
                data[i] = r.choice([0x00, 0x01, 0x7F, 0x80, 0xFF, r.getrandbits(8)])
            elif op == 2 and data:  # truncation
                del data[r.randrange(len(data)) :]
            elif op == 3:  # insertion
                i = r.randint(0, len(data))
                data[i:i] = self.random_bytes(16)
            elif op == 4:  # field injection, at the top level or at any offset
                i = len(data) if r.random() < 0.6 else r.randint(0, len(data))
                data[i:i] = self.field()
            elif op == 5 and others:  # splice with another seed
                other = r.choice(others)
                data = data[: r.randint(0, len(data))] + other[r.randint(0, len(other)) :]
            elif op == 6 and data:  # duplicate a chunk (repeated fields, doubled oneofs)
                i = r.randrange(len(data))
                j = r.randint(i, min(len(data), i + 64))
                data[j:j] = data[i:j] * r.randint(1, 50)
            elif op == 7 and data:  # delete a chunk
                i = r.randrange(len(data))
                del data[i : i + r.randint(1, 16)]
            else:
                data = bytearray(self.random_bytes(r.choice([8, 64, 512])))
        return bytes(data)

    def next(self, seeds: list[bytes]) -> bytes:
        r = self.rng
        roll = r.random()
        if roll < 0.05:
            return self.random_bytes(256)
        seed = r.choice(seeds)
        if roll < 0.10:
            return seed  # a valid call now and then keeps the state moving
        return self.mutate(seed, seeds)
