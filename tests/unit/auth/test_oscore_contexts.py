"""OSCORE contexts: the join's material, both ends' directories, the binding to a credential, persistence.

No sockets: messages are protected by one end's aiocoap context and
unprotected by the other's, in memory.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import aiocoap
import pytest
from aiocoap import oscore
from aiocoap.message import Direction

from edgerm.auth.credentials import CredentialStore
from edgerm.auth.oscore_contexts import (
    AgentContexts,
    OscoreMaterial,
    close_context,
    load_agent_context,
    new_material,
    save_agent_context,
)
from edgerm.auth.principal import Role
from edgerm.errors import MalformedMessage
from edgerm.ids import AgentId

COAP = "coap://127.0.0.1:5683"
AGENT = AgentId("edge-1")


def _incoming(message: aiocoap.Message) -> aiocoap.Message:
    """What the other end decodes from the bytes ``message`` encodes to (as a CON, or its ACK)."""
    if message.mtype is None:
        message.mtype = aiocoap.ACK if message.code.is_response() else aiocoap.CON
    if message.mid is None:
        message.mid = 1
    received = aiocoap.Message.decode(message.encode())
    received.direction = Direction.INCOMING
    return received


def _request(payload: bytes = b"hello") -> aiocoap.Message:
    message = aiocoap.Message(code=aiocoap.POST, uri_path=("agent",), payload=payload)
    message.mtype, message.mid, message.token, message.direction = aiocoap.CON, 1, b"t", Direction.OUTGOING
    return message


def _pair(tmp_path: Path, clock: float = 1000.0) -> tuple[CredentialStore, AgentContexts, Any, Any]:
    """A master with one joined agent: (credentials, master contexts, master's context, agent's context)."""
    store = CredentialStore(clock=lambda: clock)
    _, credential = store.join(AGENT)
    contexts = AgentContexts(tmp_path / "master")
    material, entry = contexts.write(credential)
    contexts.install(entry)
    save_agent_context(tmp_path / "agent", COAP, AGENT, material)
    agent = load_agent_context(tmp_path / "agent", COAP, AGENT)
    master = contexts.context(material.agent_kid)
    assert agent is not None and master is not None
    return store, contexts, master, agent


def test_material_round_trips_through_the_join_answer() -> None:
    material = new_material()
    assert OscoreMaterial.from_json(json.loads(json.dumps(material.to_json()))) == material
    assert len(material.secret) == 32 and len(material.agent_kid) == 6 and material.master_kid == b""


@pytest.mark.parametrize(
    "doc",
    [
        None,
        {},
        {"secret_hex": "zz", "salt_hex": "", "sender_id_hex": "01", "recipient_id_hex": ""},
        {"secret_hex": "00" * 8, "salt_hex": "", "sender_id_hex": "01", "recipient_id_hex": ""},  # short secret
        {"secret_hex": "00" * 32, "salt_hex": "", "sender_id_hex": "01" * 8, "recipient_id_hex": ""},  # long id
        {"secret_hex": "00" * 32, "salt_hex": "", "sender_id_hex": "01", "recipient_id_hex": "01"},  # same ids
    ],
)
def test_a_broken_join_answer_is_a_typed_error(doc: object) -> None:
    with pytest.raises(MalformedMessage):
        OscoreMaterial.from_json(doc)


def test_kids_are_unique_among_the_masters_contexts() -> None:
    taken = {new_material().agent_kid for _ in range(50)}
    assert all(new_material(frozenset(taken)).agent_kid not in taken for _ in range(50))


def test_what_one_end_protects_only_the_other_unprotects_once(tmp_path: Path) -> None:
    _, contexts, master, agent = _pair(tmp_path)
    try:
        protected, request_id = agent.protect(_request(b"heartbeat"))
        received = _incoming(protected)
        wire_bytes = protected.encode()
        assert b"heartbeat" not in wire_bytes and b"agent" not in wire_bytes  # payload and path are encrypted
        inner, seqno = master.unprotect(received)
        assert inner.payload == b"heartbeat" and inner.opt.uri_path == ("agent",)
        with pytest.raises(oscore.ReplayError):  # the same datagram again
            master.unprotect(_incoming(protected))
        flipped = bytearray(wire_bytes)
        flipped[-1] ^= 1
        tampered = aiocoap.Message.decode(bytes(flipped))
        tampered.direction = Direction.INCOMING
        with pytest.raises(oscore.ProtectionInvalid):
            master.unprotect(tampered)
        # The answer: protected by the master, read by the agent.
        reply = aiocoap.Message(code=aiocoap.CHANGED, payload=b"ack")
        reply.mtype, reply.mid, reply.token, reply.direction = aiocoap.ACK, 1, b"t", Direction.OUTGOING
        outer, _ = master.context_for_response().protect(reply, seqno)
        answered, _ = agent.unprotect(_incoming(outer), request_id)
        assert answered.payload == b"ack"
    finally:
        close_context(agent)
        contexts.close()


def test_a_context_speaks_for_its_agent_while_its_credential_stands(tmp_path: Path) -> None:
    store, contexts, _, agent = _pair(tmp_path)
    try:
        (kid,) = contexts.taken()
        principal = contexts.principal(kid, store.credentials, 1000.0)
        assert principal is not None and principal.role is Role.AGENT and principal.agent_id == AGENT
        assert contexts.principal(b"nope!!", store.credentials, 1000.0) is None
        # Replaced by an equally named credential with another token: the context is not its.
        store.revoke(f"agent-{AGENT}")
        assert contexts.principal(kid, store.credentials, 1000.0) is None
        store.issue(Role.AGENT, f"agent-{AGENT}", agent_id=AGENT)
        assert contexts.principal(kid, store.credentials, 1000.0) is None
    finally:
        close_context(agent)
        contexts.close()


def test_an_expired_credential_ends_its_context(tmp_path: Path) -> None:
    store = CredentialStore(clock=lambda: 1000.0)
    _, credential = store.issue(Role.AGENT, "short", agent_id=AGENT, expires_in=60.0)
    contexts = AgentContexts(tmp_path)
    _, entry = contexts.write(credential)
    contexts.install(entry)
    assert contexts.principal(entry.kid, store.credentials, 1059.0) is not None
    assert contexts.principal(entry.kid, store.credentials, 1060.0) is None


def test_a_new_context_replaces_the_old_one_on_disk(tmp_path: Path) -> None:
    store = CredentialStore()
    _, credential = store.join(AGENT)
    contexts = AgentContexts(tmp_path)
    _, first = contexts.write(credential)
    contexts.install(first)
    assert contexts.context(first.kid) is not None
    _, second = contexts.write(credential)
    contexts.install(second)
    assert contexts.taken() == {second.kid}
    assert not first.directory.exists()
    assert contexts.context(first.kid) is None
    contexts.close()


def test_the_master_finds_its_contexts_again_and_keeps_counting(tmp_path: Path) -> None:
    _, contexts, master, agent = _pair(tmp_path)
    (kid,) = contexts.taken()
    for _ in range(3):
        protected, _ = agent.protect(_request())
        master.unprotect(_incoming(protected))
    contexts.close()  # a clean stop persists the replay window
    again = AgentContexts(tmp_path / "master")
    try:
        assert again.taken() == {kid}
        master = again.context(kid)
        assert master is not None
        with pytest.raises(oscore.ReplayError):
            master.unprotect(_incoming(protected))  # remembered across the restart
        fresh, _ = agent.protect(_request())
        master.unprotect(_incoming(fresh))
    finally:
        close_context(agent)
        again.close()
    # The agent's sequence number survives its own restart too: never reused.
    used = agent.sender_sequence_number
    reopened = load_agent_context(tmp_path / "agent", COAP, AGENT)
    assert reopened is not None
    try:
        assert reopened.sender_sequence_number >= used
    finally:
        close_context(reopened)


def test_files_are_private_and_bound_to_their_master_and_agent(tmp_path: Path) -> None:
    material = new_material()
    directory = save_agent_context(tmp_path, COAP, AGENT, material)
    assert stat.S_IMODE((directory / "secret.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert load_agent_context(tmp_path, "coap://other:5683", AGENT) is None
    assert load_agent_context(tmp_path, COAP, AgentId("someone-else")) is None
    context = load_agent_context(tmp_path, COAP, AGENT)
    assert context is not None
    try:
        assert context.sender_id == material.agent_kid and context.recipient_id == material.master_kid
    finally:
        close_context(context)


def test_an_agent_context_in_use_is_not_opened_twice(tmp_path: Path) -> None:
    from edgerm.errors import ConfigError

    save_agent_context(tmp_path, COAP, AGENT, new_material())
    first = load_agent_context(tmp_path, COAP, AGENT)
    try:
        with pytest.raises(ConfigError, match="in use"):
            load_agent_context(tmp_path, COAP, AGENT)
    finally:
        close_context(first)


def test_the_masters_contexts_hold_no_descriptor_and_one_lock_keeps_a_second_master_out(tmp_path: Path) -> None:
    import os

    from edgerm.errors import ConfigError

    store = CredentialStore()
    contexts = AgentContexts(tmp_path / "master")
    kids = []
    for i in range(40):
        _, credential = store.join(AgentId(f"edge-{i}"))
        material, entry = contexts.write(credential)
        contexts.install(entry)
        kids.append(material.agent_kid)
    before = len(os.listdir("/proc/self/fd"))
    opened = [contexts.context(kid) for kid in kids]
    assert all(c is not None for c in opened)
    assert len(os.listdir("/proc/self/fd")) == before  # 40 open contexts, no descriptor each
    with pytest.raises(ConfigError, match="another process"):
        AgentContexts(tmp_path / "master")
    contexts.close()  # persists each context (aiocoap unlinks its lock file) and lets the tree go
    again = AgentContexts(tmp_path / "master")
    try:
        assert again.taken() == set(kids) and again.context(kids[0]) is not None
    finally:
        again.close()


def test_the_master_opens_a_context_ready_to_use_with_one_write(tmp_path: Path) -> None:
    """No lock file of its own; the window persisted as unknown and numbers reserved before its first answer;
    no write for its first notifications; a clean close persists both exactly."""
    from edgerm.auth.oscore_contexts import RESERVED_SEQUENCE_NUMBERS

    store = CredentialStore()
    contexts = AgentContexts(tmp_path / "master")
    _, credential = store.join(AGENT)
    material, entry = contexts.write(credential)
    contexts.install(entry)
    master = contexts.context(material.agent_kid)
    assert master is not None and not (entry.directory / "lock").exists()
    sequence = entry.directory / "sequence.json"
    assert json.loads(sequence.read_text()) == {"next-to-send": RESERVED_SEQUENCE_NUMBERS, "received": "unknown"}
    written = sequence.stat().st_mtime_ns
    save_agent_context(tmp_path / "agent", COAP, AGENT, material)
    agent = load_agent_context(tmp_path / "agent", COAP, AGENT)
    assert agent is not None
    try:
        protected, _ = agent.protect(_request())
        _, seqno = master.unprotect(_incoming(protected))
        for _ in range(5):  # notifications take the master's sender sequence numbers
            master.protect(aiocoap.Message(code=aiocoap.CONTENT, observe=1), seqno)
        assert sequence.stat().st_mtime_ns == written
        with pytest.raises(oscore.ReplayError):
            master.unprotect(_incoming(protected))
        used = master.sender_sequence_number
    finally:
        close_context(agent)
        contexts.close()
    persisted = json.loads(sequence.read_text())
    assert 0 < used <= 5 and persisted["next-to-send"] == used and persisted["received"] != "unknown"
    again = AgentContexts(tmp_path / "master")
    try:
        reopened = again.context(material.agent_kid)
        assert reopened is not None
        with pytest.raises(oscore.ReplayError):  # the window survived the clean close
            reopened.unprotect(_incoming(protected))
    finally:
        again.close()


def test_a_joined_context_is_open_and_ready_before_its_first_request(tmp_path: Path) -> None:
    """The join's thread opens it and makes it ready: the event loop does no file I/O for its first request."""
    from edgerm.auth.oscore_contexts import RESERVED_SEQUENCE_NUMBERS

    store = CredentialStore()
    _, credential = store.join(AGENT)
    contexts = AgentContexts(tmp_path / "master")
    material, entry, opened = contexts.write_ready(credential)
    assert opened is not None and contexts.opened(entry.kid) is None  # not used before it is installed
    contexts.install(entry, opened)
    try:
        assert contexts.opened(material.agent_kid) is opened
        sequence = json.loads((entry.directory / "sequence.json").read_text())
        assert sequence == {"next-to-send": RESERVED_SEQUENCE_NUMBERS, "received": "unknown"}
        save_agent_context(tmp_path / "agent", COAP, AGENT, material)
        agent = load_agent_context(tmp_path / "agent", COAP, AGENT)
        assert agent is not None
        protected, _ = agent.protect(_request())
        inner, _ = opened.unprotect(_incoming(protected))  # no Echo round trip: its window is known in memory
        assert inner.payload == b"hello"
        close_context(agent)
    finally:
        contexts.close()


async def test_a_context_made_before_a_restart_is_opened_once_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many requests waiting for one context: one open, in a worker thread; all get the same context."""
    import asyncio
    import threading

    from edgerm.auth import oscore_contexts

    _, contexts, _, agent = _pair(tmp_path)
    (kid,) = contexts.taken()
    contexts.close()
    again = AgentContexts(tmp_path / "master")
    opens: list[str] = []
    real = oscore_contexts.open_ready

    def counted(entry: Any) -> Any:
        opens.append(threading.current_thread().name)
        return real(entry)

    monkeypatch.setattr(oscore_contexts, "open_ready", counted)
    try:
        assert again.opened(kid) is None
        got = await asyncio.gather(*(again.ready(kid) for _ in range(20)))
        assert got[0] is not None and all(x is got[0] for x in got)
        assert len(opens) == 1 and opens[0] != threading.main_thread().name
        assert again.opened(kid) is got[0] and await again.ready(kid) is got[0] and len(opens) == 1
        assert await again.ready(b"\x00unknown") is None
        protected, _ = agent.protect(_request())
        got[0].unprotect(_incoming(protected))
    finally:
        close_context(agent)
        again.close()


async def test_a_context_replaced_or_closed_while_it_opens_is_not_used(tmp_path: Path) -> None:
    import asyncio

    store = CredentialStore()
    _, credential = store.join(AGENT)
    contexts = AgentContexts(tmp_path / "master")
    _, old = contexts.write(credential)
    contexts.install(old)  # as if made before a restart: not open
    opening = asyncio.ensure_future(contexts.ready(old.kid))
    await asyncio.sleep(0)  # the open is on its way in a thread
    _, new, opened = contexts.write_ready(credential)
    contexts.install(new, opened)  # the agent joined again meanwhile: the old directory is removed
    assert await opening is None and contexts.opened(old.kid) is None
    assert contexts.opened(new.kid) is opened
    _, third = contexts.write(credential)
    contexts.install(third)
    closing = asyncio.ensure_future(contexts.ready(third.kid))
    await asyncio.sleep(0)
    contexts.close()
    assert await closing is None and contexts.opened(third.kid) is None


def test_stopping_writes_every_context_and_syncs_the_file_system_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No fsync per context at close: each is written, then one syncfs; one that cannot be written is logged."""
    import os
    import tempfile

    from edgerm.auth import oscore_contexts

    store = CredentialStore()
    contexts = AgentContexts(tmp_path / "master")
    agents = []
    for i in range(20):
        agent_id = AgentId(f"edge-{i}")
        _, credential = store.join(agent_id)
        material, entry, opened = contexts.write_ready(credential)
        contexts.install(entry, opened)
        save_agent_context(tmp_path / f"agent-{i}", COAP, agent_id, material)
        agent = load_agent_context(tmp_path / f"agent-{i}", COAP, agent_id)
        assert agent is not None and opened is not None
        protected, _ = agent.protect(_request())
        opened.unprotect(_incoming(protected))
        agents.append((entry, agent, protected))
        close_context(agent)
    broken = agents[0][0].directory
    syncs: list[Path] = []
    fsyncs: list[int] = []
    monkeypatch.setattr(oscore_contexts, "sync_file_system", syncs.append)
    monkeypatch.setattr(os, "fsync", fsyncs.append)
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args: Any, **kw: Any) -> Any:
        if kw.get("dir") == str(broken):
            raise OSError(28, "No space left on device")  # its new sequence file cannot be made
        return real_mkstemp(*args, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    contexts.close()
    monkeypatch.undo()
    assert syncs == [tmp_path / "master"] and fsyncs == []
    assert "cannot persist the OSCORE context" in caplog.text and "No space left" in caplog.text
    again = AgentContexts(tmp_path / "master")
    try:
        for entry, _, protected in agents[1:]:
            reopened = again.context(entry.kid)
            assert reopened is not None
            with pytest.raises(oscore.ReplayError):  # each exact window was written
                reopened.unprotect(_incoming(protected))
    finally:
        again.close()
