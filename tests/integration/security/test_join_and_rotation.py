"""Agent join, token rotation on reload (SIGHUP), and an agent whose credential expired while it was away.

Real master, real agents (``start_agent``), real HTTP. The rotation tests use
a credentials file changed by ``edgerm token`` (the CLI functions), as an
operator would, then :meth:`RunningMaster.reload_credentials` (what SIGHUP
calls; tests/integration/security/test_master_process.py sends the signal).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import stat
import time
from pathlib import Path

import aiohttp
import pytest

from edgerm import messages as m
from edgerm.agent.config import AgentConfig
from edgerm.agent.main import RunningAgent, start_agent
from edgerm.auth import join as joining
from edgerm.auth import local
from edgerm.auth.cli import token_main
from edgerm.auth.credentials import CREDENTIALS_FILE, CredentialStore, update
from edgerm.auth.principal import Role
from edgerm.errors import Forbidden, Unauthenticated
from edgerm.ids import AgentId, FrameworkId
from edgerm.master.main import RunningMaster, start_master
from edgerm.model import FrameworkInfo
from edgerm.wire import decode_error, encode_call
from tests.integration.master.conftest import FakeFramework
from tests.support import admin_headers, eventually

FAST = AgentConfig(heartbeat_interval=0.1, executors=frozenset({"wasm"}))


async def test_an_agent_joins_once_and_keeps_its_credential(master: RunningMaster, tmp_path: Path) -> None:
    async with start_agent(master.url, FAST, tmp_path) as agent:
        saved = json.loads((tmp_path / joining.CREDENTIAL_FILE).read_text())
        assert saved["agent_id"] == agent.agent_id and saved["master"] == master.url
        assert stat.S_IMODE((tmp_path / joining.CREDENTIAL_FILE).stat().st_mode) == 0o600
        principal = master.security.store.principal_for_token(saved["token"])  # type: ignore[union-attr]
        assert principal is not None and principal.agent_id == agent.agent_id and principal.role is Role.AGENT
    # Restarted, it uses the saved credential: no second join (which would be refused for this id).
    async with start_agent(master.url, FAST, tmp_path) as again:
        assert again.agent_id == agent.agent_id
    assert [c.name for c in master.security.store.credentials if c.role is Role.AGENT] == [  # type: ignore[union-attr]
        f"agent-{agent.agent_id}"
    ]


async def test_join_refusals(master: RunningMaster, session: aiohttp.ClientSession) -> None:
    assert master.tokens is not None
    token = await joining.join(master.url, master.tokens.join, AgentId("edge-7"))
    with pytest.raises(Forbidden, match="already joined"):
        await joining.join(master.url, master.tokens.join, AgentId("edge-7"))  # nobody takes edge-7 over
    with pytest.raises(Forbidden):
        await joining.join(master.url, master.tokens.admin, AgentId("edge-8"))  # only join tokens join
    with pytest.raises(Forbidden):
        await joining.join(master.url, token, AgentId("edge-8"))  # nor does an agent mint more
    with pytest.raises(Unauthenticated):
        await joining.join(master.url, "edgerm_join_guessed", AgentId("edge-8"))
    url = master.url + "/api/v1/join"
    auth = {"Authorization": f"Bearer {master.tokens.join}"}
    for body, code in ((b"not json", "MALFORMED"), (b'{"agent_id": ""}', "MALFORMED"), (b"x" * 5000, "TOO_LARGE")):
        async with session.post(url, data=body, headers=auth) as r:
            assert decode_error(await r.read()).code == code
    async with session.post(url, data=b'{"agent_id": "a b"}', headers=auth) as r:
        assert r.status == 400


async def test_a_revoked_token_stops_working_after_reload(tmp_path: Path) -> None:
    path = tmp_path / CREDENTIALS_FILE
    update(path, lambda c: c, create=True)
    store = CredentialStore(path=path)
    async with start_master(credentials=store) as master, aiohttp.ClientSession() as http:
        assert (
            token_main(["create", "--role", "framework", "--name", "fw", "--state-dir", str(tmp_path), "--quiet"]) == 0
        )
        token = store.credentials  # not reloaded yet: the new credential is unknown
        assert token.get("fw") is None
        created = CredentialStore(path=path).credentials.get("fw")
        assert created is not None
        # The CLI printed the token; here we mint one the same way to hold it.
        fw_token, _ = CredentialStore(path=path).issue(Role.FRAMEWORK, "fw2")
        framework = FakeFramework(http, master.url, "rotating", fw_token)
        with pytest.raises(Unauthenticated):
            await framework.subscribe()
        assert master.reload_credentials()
        await framework.subscribe()  # accepted after the reload
        assert token_main(["revoke", "fw2", "--state-dir", str(tmp_path)]) == 0
        await framework.call(m.Revive(framework.framework_id))  # still valid until the master reloads
        assert master.reload_credentials()
        await framework.stream_ended()  # its open stream ends at once
        with pytest.raises(Unauthenticated):
            await framework.call(m.Revive(framework.framework_id))
        body = encode_call(m.Subscribe(FrameworkInfo(FrameworkId(""), "again")))
        headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {fw_token}"}
        async with http.post(master.url + "/api/v1/scheduler", data=body, headers=headers) as r:
            assert r.status == 401


async def test_a_broken_credentials_file_keeps_the_old_ones(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / CREDENTIALS_FILE
    update(path, lambda c: c, create=True)
    store = CredentialStore(path=path)
    admin, _ = store.issue(Role.ADMIN, "admin")
    async with start_master(credentials=store) as master, aiohttp.ClientSession() as http:
        path.write_text("credentials: [{broken")
        assert not master.reload_credentials()
        async with http.get(master.url + "/api/v1/state", headers={"Authorization": f"Bearer {admin}"}) as r:
            assert r.status == 200
    assert "credentials not reloaded" in caplog.text


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_an_agent_whose_credential_expired_rejoins_under_its_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KubeEdge #3067: the credential expires while the agent is away; it comes back, re-joins, keeps its id."""
    caplog.set_level(logging.INFO)
    clock = Clock()
    store = CredentialStore(clock=clock)
    tokens = local.ProvisionedTokens(
        admin=store.issue(Role.ADMIN, "admin")[0],
        framework=store.issue(Role.FRAMEWORK, "framework")[0],
        join=store.issue(Role.JOIN, "join")[0],
        metrics=store.issue(Role.METRICS, "metrics")[0],
    )
    agent_id = AgentId("edge-away")
    (tmp_path / "agent_id").write_text(agent_id + "\n")
    async with start_master(credentials=store, tokens=tokens) as master:
        expiring, _ = store.issue(Role.AGENT, f"agent-{agent_id}", agent_id=agent_id, expires_in=3600)
        joining.save(tmp_path, master.url, agent_id, expiring)
        async with start_agent(master.url, FAST, tmp_path) as agent:
            assert agent.agent_id == agent_id

            async def seen() -> float:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(master.url + "/api/v1/state", headers=admin_headers(master.url)) as r,
                ):
                    agents = (await r.json())["agents"]
                    return float(agents[0]["last_seen"]) if agents else 0.0

            clock.now += 7200  # the credential expires (the agent was "offline" meanwhile)
            assert store.principal_for_token(expiring) is None
            before = await seen()
            await eventually(lambda: "re-joined" in caplog.text, what="the agent re-joined")
            await eventually(lambda: _later(seen, before), what="heartbeats resumed")
            saved = json.loads((tmp_path / joining.CREDENTIAL_FILE).read_text())
            assert saved["token"] != expiring and saved["agent_id"] == agent_id
        assert [c.agent_id for c in store.credentials if c.role is Role.AGENT] == [agent_id]


async def _later(seen: object, before: float) -> bool:
    assert callable(seen)
    return bool(await seen() > before)


async def test_framework_owners_survive_a_master_restart(tmp_path: Path) -> None:
    path = tmp_path / CREDENTIALS_FILE
    update(path, lambda c: c, create=True)
    alice, _ = CredentialStore(path=path).issue(Role.FRAMEWORK, "alice")
    bob, _ = CredentialStore(path=path).issue(Role.FRAMEWORK, "bob")
    async with aiohttp.ClientSession() as http:
        async with start_master(credentials=CredentialStore(path=path)) as master:
            a = FakeFramework(http, master.url, "a", alice)
            await a.subscribe()
            framework_id = a.framework_id
            await a.close()
        assert framework_id in (tmp_path / "framework-owners.json").read_text()
        async with start_master(credentials=CredentialStore(path=path)) as master:
            b = FakeFramework(http, master.url, "b", bob)
            with pytest.raises(Forbidden):
                await b.subscribe(framework_id)  # the restarted master still knows whose id it is
            again = FakeFramework(http, master.url, "a", alice)
            await again.subscribe(framework_id)
            await again.call(m.Teardown(again.framework_id))
            await again.close()
        assert framework_id not in (tmp_path / "framework-owners.json").read_text()


async def test_an_open_stream_ends_when_its_credential_expires() -> None:
    clock = Clock()
    store = CredentialStore(clock=clock)
    token, _ = store.issue(Role.FRAMEWORK, "short-lived", expires_in=60)
    async with (
        start_master(credentials=store, framework_heartbeat=0.1) as master,
        aiohttp.ClientSession() as http,
    ):
        framework = FakeFramework(http, master.url, "f", token)
        await framework.subscribe()
        clock.now += 61
        await framework.stream_ended()  # at the next record at the latest (a heartbeat within 0.1 s)
        with pytest.raises(Unauthenticated):
            await framework.call(m.Revive(framework.framework_id))
        await framework.close()


async def test_an_agent_started_before_its_master_joins_when_it_comes_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = CredentialStore()
    tokens = local.ProvisionedTokens(
        admin=store.issue(Role.ADMIN, "admin")[0],
        framework=store.issue(Role.FRAMEWORK, "framework")[0],
        join=store.issue(Role.JOIN, "join")[0],
        metrics=store.issue(Role.METRICS, "metrics")[0],
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    async def start() -> RunningAgent:
        return await start_agent(url, FAST, tmp_path, join_token=tokens.join, register_timeout=30)

    starting = asyncio.create_task(start())
    await eventually(lambda: "cannot join" in caplog.text, what="the agent retries its join against nothing")
    assert not starting.done()
    async with start_master(port=port, credentials=store, tokens=tokens):
        agent = await asyncio.wait_for(starting, 30)
        try:
            assert (tmp_path / joining.CREDENTIAL_FILE).exists()
        finally:
            await agent.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
