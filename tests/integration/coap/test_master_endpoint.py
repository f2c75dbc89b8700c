"""The master's CoAP endpoint over real UDP: calls, typed errors, and a master that keeps serving.

Every bad request gets its ``WireError``'s own CoAP code with an
``edgerm.v1.Error`` payload, the cluster state is unchanged, and the master
still answers a heartbeat afterwards.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiocoap
import pytest
from aiocoap.message import Direction
from aiocoap.pipe import Pipe

from edgerm import messages as m
from edgerm import wire
from edgerm.coap_util import Cursor
from edgerm.ids import AgentId, TaskId
from edgerm.master.main import RunningMaster, start_master
from edgerm.model import TaskState, TaskStatus
from edgerm.v1 import agent_pb2
from tests.integration.coap.conftest import MAX_BODY
from tests.integration.coap.helpers import agent_info, error_of, register, request

Case = Callable[[Any, str], Awaitable[aiocoap.Message]]


async def _post_agent(ctx: Any, url: str, payload: bytes, **kw: Any) -> aiocoap.Message:
    return await request(ctx, aiocoap.POST, url + "/agent", payload, **kw)


def _heartbeat(agent_id: str) -> bytes:
    return wire.encode_agent_call(m.AgentHeartbeat(AgentId(agent_id)))


async def _heartbeat_ok(ctx: Any, url: str) -> None:
    reply = await _post_agent(ctx, url, _heartbeat("edge-1"))
    assert reply.code == aiocoap.CHANGED
    assert wire.decode_agent_event(reply.payload) == m.HeartbeatAck(False)


async def test_register_heartbeat_and_update_round_trip(master: RunningMaster, client: Any) -> None:
    url = master.coap_url
    assert url is not None and url.startswith("coap://127.0.0.1:")
    await register(client, url, "edge-1")
    await _heartbeat_ok(client, url)
    status = TaskStatus(TaskId("nope"), AgentId("edge-1"), TaskState.RUNNING, uuid="u-1")
    reply = await _post_agent(client, url, wire.encode_agent_call(m.StatusUpdate(AgentId("edge-1"), status)))
    assert reply.code == aiocoap.CHANGED
    assert wire.decode_agent_event(reply.payload) == m.StatusAcknowledged(TaskId("nope"), "u-1")
    assert master.service.metrics.calls[("agent", "REGISTER")] == 1
    assert master.service.metrics.heartbeats == 1


async def test_a_large_register_travels_block_wise(master: RunningMaster, client: Any) -> None:
    # A REGISTER with many task statuses is over one 1 KiB block, under the limit.
    statuses = tuple(
        TaskStatus(TaskId(f"task-{i:03d}"), AgentId("edge-big"), TaskState.FINISHED, uuid=f"u{i}") for i in range(40)
    )
    payload = wire.encode_agent_call(m.RegisterAgent(agent_info("edge-big"), statuses))
    assert 1024 < len(payload) < MAX_BODY
    reply = await _post_agent(client, master.coap_url or "", payload)
    assert reply.code == aiocoap.CHANGED
    assert wire.decode_agent_event(reply.payload) == m.AgentRegistered(AgentId("edge-big"), "master", "")


# -- bad input: (name, request, expected CoAP code, expected Error.Code) --------------------


async def _malformed(ctx: Any, url: str) -> aiocoap.Message:
    return await _post_agent(ctx, url, b"\xff\xff\xff")


async def _empty_call(ctx: Any, url: str) -> aiocoap.Message:
    return await _post_agent(ctx, url, b"")


async def _unknown_path(ctx: Any, url: str) -> aiocoap.Message:
    return await request(ctx, aiocoap.POST, url + "/api/v1/agent", _heartbeat("edge-1"))


async def _unknown_subpath(ctx: Any, url: str) -> aiocoap.Message:
    return await request(ctx, aiocoap.GET, url + "/agents/edge-1/offers")


async def _too_large_block_wise(ctx: Any, url: str) -> aiocoap.Message:
    return await _post_agent(ctx, url, b"\x08" * (MAX_BODY + 2000))


async def _too_large_one_datagram(ctx: Any, url: str) -> aiocoap.Message:
    return await _post_agent(ctx, url, b"\x08" * (MAX_BODY - 10), blockwise=False, size1=MAX_BODY + 500)


async def _never_registered_heartbeat(ctx: Any, url: str) -> aiocoap.Message:
    return await _post_agent(ctx, url, _heartbeat("ghost"))


async def _never_registered_observe(ctx: Any, url: str) -> aiocoap.Message:
    return await request(ctx, aiocoap.GET, url + "/agents/ghost/commands", observe=0)


async def _never_registered_confirm(ctx: Any, url: str) -> aiocoap.Message:
    return await request(ctx, aiocoap.POST, url + "/agents/ghost/commands", Cursor(1, 1).encode())


async def _bad_cursor(ctx: Any, url: str) -> aiocoap.Message:
    return await request(ctx, aiocoap.POST, url + "/agents/edge-1/commands", b"\x01\x02")


async def _subscribe_is_not_a_call(ctx: Any, url: str) -> aiocoap.Message:
    return await _post_agent(ctx, url, wire.encode_agent_call(m.SubscribeAgent(AgentId("edge-1"))))


async def _unknown_call_type(ctx: Any, url: str) -> aiocoap.Message:
    return await _post_agent(ctx, url, agent_pb2.AgentCall(agent_id="edge-1", type=42).SerializeToString())  # type: ignore[arg-type]


async def _someone_elses_status(ctx: Any, url: str) -> aiocoap.Message:
    status = TaskStatus(TaskId("t"), AgentId("edge-2"), TaskState.RUNNING, uuid="u")
    return await _post_agent(ctx, url, wire.encode_agent_call(m.StatusUpdate(AgentId("edge-1"), status)))


async def _missing_module(ctx: Any, url: str) -> aiocoap.Message:
    return await request(ctx, aiocoap.GET, url + "/modules/" + "ab" * 32)


async def _not_a_hash(ctx: Any, url: str) -> aiocoap.Message:
    return await request(ctx, aiocoap.GET, url + "/modules/not-a-hash")


CASES: list[tuple[str, Case, str, str]] = [
    ("malformed payload", _malformed, "4.00", "MALFORMED"),
    ("empty payload", _empty_call, "4.00", "UNKNOWN_CALL"),
    ("unknown call type", _unknown_call_type, "4.00", "UNKNOWN_CALL"),
    ("subscribe over POST", _subscribe_is_not_a_call, "4.00", "UNKNOWN_CALL"),
    ("status of another agent", _someone_elses_status, "4.00", "MALFORMED"),
    ("unknown path", _unknown_path, "4.04", "CODE_UNSPECIFIED"),
    ("unknown sub-path", _unknown_subpath, "4.04", "CODE_UNSPECIFIED"),
    ("over the limit, block-wise", _too_large_block_wise, "4.13", "TOO_LARGE"),
    ("over the limit, announced in Size1", _too_large_one_datagram, "4.13", "TOO_LARGE"),
    ("never-registered heartbeat", _never_registered_heartbeat, "4.04", "UNKNOWN_AGENT"),
    ("never-registered observe", _never_registered_observe, "4.04", "UNKNOWN_AGENT"),
    ("never-registered confirm", _never_registered_confirm, "4.04", "UNKNOWN_AGENT"),
    ("cursor of the wrong size", _bad_cursor, "4.00", "MALFORMED"),
    ("module not held", _missing_module, "4.04", "CODE_UNSPECIFIED"),
    ("module name not a hash", _not_a_hash, "4.04", "CODE_UNSPECIFIED"),
]


@pytest.mark.parametrize(("case", "code", "error"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_input_gets_a_typed_reply_and_the_master_keeps_serving(
    master: RunningMaster, client: Any, case: Case, code: str, error: str
) -> None:
    url = master.coap_url or ""
    await register(client, url, "edge-1")
    before = master.handlers.state()
    errors_before = sum(master.service.metrics.errors.values())
    reply = await case(client, url)
    assert reply.code.dotted == code, (reply, reply.payload)
    assert error_of(reply).code == error
    assert error_of(reply).message
    if error == "TOO_LARGE":
        assert reply.opt.size1 == MAX_BODY
    assert master.handlers.state() == before
    assert sum(master.service.metrics.errors.values()) == errors_before + 1
    await _heartbeat_ok(client, url)


async def test_a_method_a_resource_does_not_serve_is_405(master: RunningMaster, client: Any) -> None:
    url = master.coap_url or ""
    reply = await request(client, aiocoap.PUT, url + "/agent", _heartbeat("edge-1"))
    assert reply.code == aiocoap.METHOD_NOT_ALLOWED
    await register(client, url, "edge-1")
    await _heartbeat_ok(client, url)


async def test_coap_is_off_unless_asked_for_and_binds_only_its_host() -> None:
    async with start_master() as plain:
        assert plain.coap_url is None and plain.coap_tcp_url is None
    async with start_master(coap_port=0) as master:
        assert master.coap is not None and master.coap.host == "127.0.0.1"
        assert master.coap_tcp_url is None


async def test_a_taken_coap_port_fails_the_start(master: RunningMaster) -> None:
    assert master.coap is not None
    with pytest.raises(OSError):
        await start_master(coap_port=master.coap.port)


async def test_aiocoap_loggers_are_quiet_at_info(master: RunningMaster) -> None:
    assert not logging.getLogger("coap-server").isEnabledFor(logging.INFO)
    assert not logging.getLogger("coap").isEnabledFor(logging.INFO)


async def test_a_served_request_leaves_no_garbage_cycle(master: RunningMaster, client: Any) -> None:
    """Reference counting frees what a request used (edgerm.master.coap_state._LeanTokenManager): aiocoap's
    own request handling left a cycle per request for the cyclic GC, whose passes stop the loop."""
    url = master.coap_url
    assert url is not None
    await register(client, url, "edge-1")
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a pass finds unreachable lands in gc.garbage
    try:
        for _ in range(50):
            await _heartbeat_ok(client, url)
        gc.collect()
        served = [o for o in gc.garbage if isinstance(o, Pipe) and o.request.direction is Direction.INCOMING]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert served == []


async def test_a_retransmitted_heartbeat_is_answered_from_memory_not_handled_again(
    master: RunningMaster, client: Any
) -> None:
    """When the master falls behind, agents retransmit: a retransmission must not cost a second handling."""
    url = master.coap_url
    assert url is not None
    await register(client, url, "edge-1")
    port = int(url.rsplit(":", 1)[1])
    # One CON POST /agent (message id 0x1234, token "tokn"), sent twice as a retransmission is.
    datagram = b"\x44\x02\x12\x34tokn\xb5agent\xff" + _heartbeat("edge-1")
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(("127.0.0.1", port))
        before = master.service.metrics.heartbeats
        replies = []
        for _ in range(2):
            sock.send(datagram)
            async with asyncio.timeout(5):
                replies.append(await loop.sock_recv(sock, 2048))
    assert replies[0] == replies[1] and replies[0][1] == 0x44  # the same 2.04, twice
    assert master.service.metrics.heartbeats == before + 1


async def test_a_plain_heartbeat_is_answered_at_once_and_other_calls_the_usual_way(
    master: RunningMaster, client: Any
) -> None:
    """Heartbeats skip aiocoap's request machinery (edgerm.master.coap_state, ``answer``); the rest do not."""
    url = master.coap_url
    assert master.coap is not None and url is not None
    (token_manager,) = master.coap._contexts[0].request_interfaces
    through = []
    usual = token_manager.process_request
    token_manager.process_request = lambda request: (through.append(request.opt.uri_path), usual(request))
    try:
        await register(client, url, "edge-1")
        before = master.service.metrics.heartbeats
        for _ in range(20):
            await _heartbeat_ok(client, url)
        unknown = await _post_agent(client, url, _heartbeat("never-registered"))
        malformed = await _post_agent(client, url, b"\xff\xff")
    finally:
        del token_manager.process_request
    assert master.service.metrics.heartbeats == before + 21
    assert unknown.code == aiocoap.NOT_FOUND and error_of(unknown).code == "UNKNOWN_AGENT"
    assert malformed.code == aiocoap.BAD_REQUEST and error_of(malformed).code == "MALFORMED"
    assert through == [("agent",)]  # the REGISTER only


async def test_a_burst_of_datagrams_is_read_in_batches_and_every_one_answered(
    master: RunningMaster, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiocoap reads one datagram per turn of the loop; the master's socket reads up to READ_BATCH."""
    from edgerm.master.coap_state import READ_BATCH, _BatchedReceiver

    url = master.coap_url
    assert url is not None and master.coap is not None
    await register(client, url, "edge-1")
    port = int(url.rsplit(":", 1)[1])
    reads = []
    batched = _BatchedReceiver._read_ready

    def counted(self: _BatchedReceiver) -> None:
        reads.append(1)
        batched(self)

    monkeypatch.setattr(_BatchedReceiver, "_read_ready", counted)
    burst = 50
    before = master.service.metrics.heartbeats
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        for i in range(burst):  # all in the master's socket before its loop runs again
            sock.send(bytes([0x44, 0x02, 0x20, i]) + b"tok" + bytes([i]) + b"\xb5agent\xff" + _heartbeat("edge-1"))
        sock.setblocking(False)
        replies = set()
        async with asyncio.timeout(10):
            while len(replies) < burst:
                reply = await loop.sock_recv(sock, 2048)
                assert reply[1] == 0x44  # 2.04
                replies.add(reply[2:4])
    assert master.service.metrics.heartbeats == before + burst
    assert READ_BATCH >= 8 and 0 < len(reads) <= burst // 8  # aiocoap's own transport: one read per datagram


async def test_a_request_superseded_within_one_batch_leaves_no_coroutine_unawaited(
    master: RunningMaster, client: Any
) -> None:
    """Two requests on one token read in the same batch: the first ends before its render task starts."""
    import warnings

    url = master.coap_url
    assert url is not None
    port = int(url.rsplit(":", 1)[1])
    get = b"\x44\x01\x30%ctokn\xb7modules\x40" + b"a" * 64  # CON GET /modules/aaa...: 4.04, the usual way
    loop = asyncio.get_running_loop()
    with warnings.catch_warnings(record=True) as caught, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        warnings.simplefilter("always")
        sock.connect(("127.0.0.1", port))
        for mid in (1, 2):
            sock.send(get.replace(b"%c", bytes([mid])))
        sock.setblocking(False)
        async with asyncio.timeout(5):
            reply = await loop.sock_recv(sock, 2048)
        assert reply[1] == 0x84  # 4.04 for the second (the first was superseded)
        await asyncio.sleep(0.1)
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
    await _heartbeat_ok_after_register(client, url)


async def _heartbeat_ok_after_register(client: Any, url: str) -> None:
    await register(client, url, "edge-1")
    await _heartbeat_ok(client, url)
