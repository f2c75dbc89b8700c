"""OSCORE on a secure master, over real UDP on 127.0.0.1: who may speak, and what a replay or tamper gets.

A recording UDP relay sits between an agent transport and the master, so the
tests hold the exact datagrams an agent sent and can resend or flip them
from a raw socket (another source port, so the message layer's deduplication
does not answer them: OSCORE must).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiocoap
import pytest

from edgerm import messages as m
from edgerm import wire
from edgerm.agent.coap_transport import CoapAgentTransport
from edgerm.auth.principal import Role
from edgerm.errors import Forbidden, UnknownAgent
from edgerm.ids import AgentId
from edgerm.master.main import RunningMaster, start_master
from edgerm.model import TaskState
from tests.contract.cluster import Recorder, running
from tests.contract.test_agent_transports import HELLO, task
from tests.integration.coap.helpers import WAIT, agent_info, error_of, eventually, request
from tests.support import oscore_transport


@pytest.fixture
async def secure() -> AsyncIterator[RunningMaster]:
    async with start_master(coap_port=0, allocation_interval=0.05) as running_master:
        assert not running_master.insecure
        yield running_master


class _Relay(asyncio.DatagramProtocol):
    """Forwards one client's datagrams to the master and back, keeping a copy of each request."""

    def __init__(self, master: tuple[str, int]) -> None:
        self.master = master
        self.client: tuple[str, int] | None = None
        self.requests: list[bytes] = []
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr == self.master:
            if self.client is not None:
                self.transport.sendto(data, self.client)
            return
        self.client = addr
        self.requests.append(data)
        self.transport.sendto(data, self.master)


@pytest.fixture
async def relay(secure: RunningMaster) -> AsyncIterator[tuple[_Relay, str]]:
    assert secure.coap is not None
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Relay(("127.0.0.1", secure.coap.port)),  # type: ignore[union-attr]
        local_addr=("127.0.0.1", 0),
    )
    try:
        yield protocol, f"coap://127.0.0.1:{transport.get_extra_info('sockname')[1]}"
    finally:
        transport.close()


async def _raw_exchange(port: int, datagram: bytes) -> aiocoap.Message | None:
    """Send ``datagram`` from a fresh UDP socket; the master's answer (None if none within 2 s)."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        await loop.sock_sendto(sock, datagram, ("127.0.0.1", port))
        try:
            async with asyncio.timeout(2.0):
                data = await loop.sock_recv(sock, 4096)
        except TimeoutError:
            return None
    return aiocoap.Message.decode(data)


_TOKEN_ROLES = (Role.ADMIN, Role.FRAMEWORK, Role.JOIN, Role.METRICS)  # local.ProvisionedTokens' order


def _calls(master: RunningMaster, kind: str) -> int:
    return master.service.metrics.calls.get(("agent", kind), 0)


async def test_an_unprotected_request_is_unauthenticated_and_changes_nothing(
    secure: RunningMaster, client: Any
) -> None:
    assert secure.coap_url is not None
    payload = wire.encode_agent_call(m.RegisterAgent(agent_info("plain")))
    reply = await request(client, aiocoap.POST, secure.coap_url + "/agent", payload)
    assert reply.code == aiocoap.UNAUTHORIZED
    assert error_of(reply).code == "UNAUTHENTICATED"
    assert not secure.service.core.agent_known(AgentId("plain"))
    # A plain heartbeat too: the insecure master's fast heartbeat path is never taken behind OSCORE.
    heartbeat = wire.encode_agent_call(m.AgentHeartbeat(AgentId("plain"), ()))
    reply = await request(client, aiocoap.POST, secure.coap_url + "/agent", heartbeat)
    assert reply.code == aiocoap.UNAUTHORIZED and error_of(reply).code == "UNAUTHENTICATED"
    observe = await request(client, aiocoap.GET, secure.coap_url + "/agents/plain/commands", observe=0)
    assert observe.code == aiocoap.UNAUTHORIZED


async def test_a_replayed_datagram_is_refused_and_changes_nothing(
    secure: RunningMaster, relay: tuple[_Relay, str], tmp_path: Path
) -> None:
    recorder, url = relay
    assert secure.coap is not None
    transport = await oscore_transport(url, tmp_path, "replayed", join_url=secure.url)
    try:
        assert isinstance(await transport.call(m.RegisterAgent(agent_info("replayed"))), m.AgentRegistered)
        register = recorder.requests[-1]
        assert aiocoap.Message.decode(register).opt.oscore is not None  # what crossed the wire was protected
        assert b"replayed" not in register  # ... and encrypted: the agent id is not on the wire
        before = _calls(secure, "REGISTER")
        reply = await _raw_exchange(secure.coap.port, register)
        assert reply is not None and reply.code == aiocoap.UNAUTHORIZED
        assert error_of(reply).code == "UNAUTHENTICATED" and "replay" in error_of(reply).message
        assert _calls(secure, "REGISTER") == before  # not handled again
        # The agent's own next request still passes: its sequence numbers moved on.
        assert isinstance(await transport.call(m.AgentHeartbeat(AgentId("replayed"))), m.HeartbeatAck)
    finally:
        await transport.close()


async def test_a_tampered_datagram_is_refused_and_changes_nothing(
    secure: RunningMaster, relay: tuple[_Relay, str], tmp_path: Path
) -> None:
    recorder, url = relay
    assert secure.coap is not None
    transport = await oscore_transport(url, tmp_path, "tampered", join_url=secure.url)
    try:
        await transport.call(m.RegisterAgent(agent_info("tampered")))
        original = recorder.requests[-1]
        before = _calls(secure, "REGISTER")
        flipped = bytearray(original)
        flipped[-3] ^= 0x01  # inside the ciphertext (the payload ends the datagram)
        reply = await _raw_exchange(secure.coap.port, bytes(flipped))
        assert reply is not None and reply.code == aiocoap.BAD_REQUEST
        assert error_of(reply).code == "MALFORMED"
        assert _calls(secure, "REGISTER") == before
    finally:
        await transport.close()


async def test_agent_a_cannot_speak_for_agent_b(secure: RunningMaster, tmp_path: Path) -> None:
    assert secure.coap_url is not None
    a = await oscore_transport(secure.coap_url, tmp_path / "a", "agent-a")
    b = await oscore_transport(secure.coap_url, tmp_path / "b", "agent-b")
    try:
        assert isinstance(await b.call(m.RegisterAgent(agent_info("agent-b"))), m.AgentRegistered)
        refused = _calls(secure, "HEARTBEAT")
        with pytest.raises(Forbidden, match="agent-b"):
            await a.call(m.RegisterAgent(agent_info("agent-b")))
        with pytest.raises(Forbidden):
            await a.call(m.AgentHeartbeat(AgentId("agent-b")))
        with pytest.raises(Forbidden):
            async for _ in a.commands(AgentId("agent-b")):
                pass
        assert _calls(secure, "HEARTBEAT") == refused
        assert not secure.service.core.agent_known(AgentId("agent-a"))
        with pytest.raises(UnknownAgent):  # its own id, not registered yet: past the policy, to the handler
            await a.call(m.AgentHeartbeat(AgentId("agent-a")))
        # A's own id works; B is untouched and still heartbeats.
        assert isinstance(await a.call(m.RegisterAgent(agent_info("agent-a"))), m.AgentRegistered)
        assert isinstance(await b.call(m.AgentHeartbeat(AgentId("agent-b"))), m.HeartbeatAck)
        with pytest.raises(Forbidden):  # checked before whether the id is known
            await a.call(m.AgentHeartbeat(AgentId("agent-a-typo")))
    finally:
        await a.close()
        await b.close()


async def test_a_revoked_credential_ends_its_context_and_the_agent_joins_again(
    secure: RunningMaster, tmp_path: Path
) -> None:
    assert secure.coap_url is not None and secure.security is not None
    transport: CoapAgentTransport = await oscore_transport(secure.coap_url, tmp_path, "rotated")
    try:
        await transport.call(m.RegisterAgent(agent_info("rotated")))
        contexts = secure.security.oscore
        assert contexts is not None
        (old_kid,) = contexts.taken()
        assert secure.security.store.revoke("agent-rotated")
        # The next call is refused (a protected 4.01), the transport re-joins and retries once.
        assert isinstance(await transport.call(m.AgentHeartbeat(AgentId("rotated"))), m.HeartbeatAck)
        (new_kid,) = contexts.taken()
        assert new_kid != old_kid
        assert contexts.principal(old_kid, secure.security.store.credentials, 0.0) is None
    finally:
        await transport.close()


async def test_edgerm_agent_coap_joins_a_secure_master_and_runs_a_wasm_task(
    secure: RunningMaster, tmp_path: Path
) -> None:
    assert secure.coap_url is not None and secure.tokens is not None
    config = tmp_path / "agent.yaml"
    config.write_text("heartbeat_interval: 0.2\nexecutors: [wasm]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGERM_")}
    env["EDGERM_JOIN_TOKEN"] = secure.tokens.for_role(Role.JOIN)
    state = tmp_path / "state"
    argv = ["--coap", "--master", secure.coap_url, "--join-url", secure.url, "--config", str(config)]
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "edgerm.agent.main", *argv, "--work-dir", str(state)),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        fw = Recorder()
        async with running(fw, secure):
            await eventually(lambda: (state / "agent_id").is_file(), within=20.0)
            agent_id = AgentId((state / "agent_id").read_text().strip())
            await eventually(lambda: secure.service.core.agent_known(agent_id), within=20.0)
            offer = await fw.take_offer(agent_id)
            await fw.act().accept([offer.id], [task(offer, "secure-cli", HELLO)])
            await fw.wait_state("secure-cli", TaskState.FINISHED)
        secrets_on_disk = list((state / "oscore").rglob("secret.json"))
        assert len(secrets_on_disk) == 1
        assert stat.S_IMODE(secrets_on_disk[0].stat().st_mode) == 0o600
        assert stat.S_IMODE((state / "credential.json").stat().st_mode) == 0o600
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            output, _ = await proc.communicate()
        assert proc.returncode == 0, output.decode()
        assert b"Traceback" not in output
        assert secure.tokens.join.encode() not in output  # the join token is never logged
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_protected_heartbeat_is_answered_at_once_and_other_calls_the_usual_way(
    secure: RunningMaster, relay: tuple[_Relay, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path (OscoreSite.answer_now) answers heartbeats; anything else decrypts again, the usual way."""
    from edgerm.master.coap_oscore import OscoreSite

    rendered: list[str] = []
    usual = OscoreSite.render_to_pipe

    async def counting(self: OscoreSite, pipe: Any) -> None:
        rendered.append("render")
        await usual(self, pipe)

    monkeypatch.setattr(OscoreSite, "render_to_pipe", counting)
    recorder, url = relay
    assert secure.coap is not None
    transport = await oscore_transport(url, tmp_path, "quick", join_url=secure.url)
    try:
        assert isinstance(await transport.call(m.RegisterAgent(agent_info("quick"))), m.AgentRegistered)
        assert rendered == ["render"]  # REGISTER: the window was put back, the usual way decrypted it again
        before = _calls(secure, "HEARTBEAT")
        for _ in range(3):
            assert isinstance(await transport.call(m.AgentHeartbeat(AgentId("quick"))), m.HeartbeatAck)
        assert rendered == ["render"] and _calls(secure, "HEARTBEAT") == before + 3
        heartbeat = recorder.requests[-1]
        # A replayed heartbeat (another source port: the message layer's deduplication does not see it).
        reply = await _raw_exchange(secure.coap.port, heartbeat)
        assert reply is not None and reply.code == aiocoap.UNAUTHORIZED
        assert "replay" in error_of(reply).message
        assert _calls(secure, "HEARTBEAT") == before + 3  # not handled again
        # A tampered one: refused as malformed, not handled, and the agent goes on.
        flipped = bytearray(heartbeat)
        flipped[-3] ^= 0x01
        reply = await _raw_exchange(secure.coap.port, bytes(flipped))
        assert reply is not None and reply.code == aiocoap.BAD_REQUEST
        assert _calls(secure, "HEARTBEAT") == before + 3
        assert len(rendered) == 3  # both refusals are made the usual way
        assert isinstance(await transport.call(m.AgentHeartbeat(AgentId("quick"))), m.HeartbeatAck)
        # A REGISTER again after heartbeats: the usual way, its decryption not spoilt by the fast path's attempt.
        assert isinstance(await transport.call(m.RegisterAgent(agent_info("quick"))), m.AgentRegistered)
        assert len(rendered) == 4
    finally:
        await transport.close()


async def test_a_protected_heartbeat_over_the_rate_or_for_another_id_gets_a_protected_refusal(
    tmp_path: Path,
) -> None:
    from edgerm.auth.limits import Limits
    from edgerm.errors import LimitExceeded

    async with start_master(coap_port=0, limits=Limits(calls_per_second=1, burst=4)) as master:
        assert master.coap_url is not None
        a = await oscore_transport(master.coap_url, tmp_path / "a", "limited")
        try:
            assert isinstance(await a.call(m.RegisterAgent(agent_info("limited"))), m.AgentRegistered)
            with pytest.raises(Forbidden):  # protected (the transport unprotects it) 4.03, from the fast path
                await a.call(m.AgentHeartbeat(AgentId("someone-else")))
            before = _calls(master, "HEARTBEAT")
            refused = 0
            for _ in range(6):
                try:
                    await a.call(m.AgentHeartbeat(AgentId("limited")))
                except LimitExceeded:
                    refused += 1
            assert refused >= 3 and _calls(master, "HEARTBEAT") == before + 6 - refused
        finally:
            await a.close()


async def test_after_a_restart_an_agents_context_is_reopened_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A context made before the master started is opened in a worker thread on the agent's first request
    (its replay window came back from the clean stop); a joined one is open before its first request."""
    from edgerm.auth import local
    from edgerm.auth.credentials import CREDENTIALS_FILE, CredentialStore, update
    from edgerm.auth.oscore_contexts import AgentContexts

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state = str(tmp_path / "state")
    (tmp_path / "state").mkdir()
    path = tmp_path / "state" / CREDENTIALS_FILE
    update(path, lambda c: c, create=True)
    store = CredentialStore(path=path)  # on disk, with the contexts beside it: both outlive the restart
    tokens = local.ProvisionedTokens(*(store.issue(role, role.value)[0] for role in _TOKEN_ROLES))
    kept = {"coap_port": port, "state_dir": state, "credentials": store, "tokens": tokens}
    async with start_master(**kept) as first:
        assert first.coap_url is not None and first.security is not None and first.security.oscore is not None
        transport: CoapAgentTransport = await oscore_transport(first.coap_url, tmp_path / "agent", "again")
        (kid,) = first.security.oscore.taken()
        assert first.security.oscore.opened(kid) is not None  # made ready by the join, before any request
        assert isinstance(await transport.call(m.RegisterAgent(agent_info("again"))), m.AgentRegistered)
    try:

        def blocking(self: AgentContexts, kid: bytes) -> Any:
            raise AssertionError("a context was opened on the event loop")

        monkeypatch.setattr(AgentContexts, "context", blocking)
        async with start_master(**kept) as second:
            assert second.security is not None and second.security.oscore is not None
            assert second.security.oscore.opened(kid) is None
            # A restarted master has the agent register again (a protected UNKNOWN_AGENT): it was understood.
            with pytest.raises(UnknownAgent):
                await transport.call(m.AgentHeartbeat(AgentId("again")))
            assert second.security.oscore.opened(kid) is not None
            assert isinstance(await transport.call(m.RegisterAgent(agent_info("again"))), m.AgentRegistered)
            for _ in range(3):
                assert isinstance(await transport.call(m.AgentHeartbeat(AgentId("again"))), m.HeartbeatAck)
            assert second.security.oscore.opened(kid) is not None and second.security.oscore.taken() == {kid}
    finally:
        await transport.close()
