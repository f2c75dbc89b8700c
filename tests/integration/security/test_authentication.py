"""No call succeeds without a valid credential, and each role reaches only its routes (real HTTP)."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from edgerm import messages as m
from edgerm import wire
from edgerm.auth.principal import Role
from edgerm.ids import AgentId, FrameworkId
from edgerm.master.main import RunningMaster, start_master
from edgerm.model import AgentInfo, FrameworkInfo
from edgerm.resources import Resources

PB = {"Content-Type": "application/x-protobuf"}
REGISTER = wire.encode_agent_call(m.RegisterAgent(AgentInfo(AgentId("edge-1"), "h", Resources.parse("cpus:1"))))
SUBSCRIBE = wire.encode_call(m.Subscribe(FrameworkInfo(FrameworkId(""), "f")))

#: (method, path, body, content type): every route the master serves, and one it does not.
ROUTES = [
    ("POST", "/api/v1/agent", REGISTER, PB),
    ("POST", "/api/v1/scheduler", SUBSCRIBE, PB),
    ("GET", "/api/v1/state", b"", {}),
    ("GET", "/metrics", b"", {}),
    ("GET", "/api/v1/modules/" + "0" * 64, b"", {}),
    ("POST", "/api/v1/join", b'{"agent_id": "edge-9"}', {"Content-Type": "application/json"}),
    ("GET", "/no/such/route", b"", {}),
]


async def _send(
    session: aiohttp.ClientSession, master: RunningMaster, route: tuple[str, str, bytes, dict[str, str]], auth: str
) -> tuple[int, bytes, aiohttp.typedefs.LooseHeaders]:
    method, path, body, headers = route
    headers = {**headers, **({"Authorization": auth} if auth else {})}
    async with session.request(method, master.url + path, data=body or None, headers=headers) as r:
        return r.status, await r.read(), r.headers


@pytest.mark.parametrize("auth", ["", "Bearer", "Bearer edgerm_admin_forged", "Basic YWRtaW46YWRtaW4=", "bearer  "])
@pytest.mark.parametrize("route", ROUTES, ids=[r[1] for r in ROUTES])
async def test_every_route_refuses_a_missing_or_bad_credential(
    master: RunningMaster, session: aiohttp.ClientSession, route: tuple[str, str, bytes, dict[str, str]], auth: str
) -> None:
    status, body, headers = await _send(session, master, route, auth)
    assert status == 401
    assert wire.decode_error(body).code == "UNAUTHENTICATED"
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert master.service.core.snapshot()["agents"] == [] and master.service.core.snapshot()["frameworks"] == []


async def test_the_dashboard_without_a_credential_shows_only_its_sign_in_form(
    master: RunningMaster, session: aiohttp.ClientSession
) -> None:
    async with session.get(master.url + "/") as r:
        assert r.status == 401 and r.content_type == "text/html"
        page = await r.text()
    assert 'action="/login"' in page and "edgerm_" not in page


ALLOWED = {
    Role.ADMIN: {"/api/v1/state", "/metrics", "/api/v1/modules/" + "0" * 64, "/no/such/route", "/api/v1/scheduler"},
    Role.FRAMEWORK: {"/api/v1/state", "/api/v1/scheduler"},
    Role.METRICS: {"/metrics"},
    Role.JOIN: {"/api/v1/join"},
}


@pytest.mark.parametrize("role", list(ALLOWED), ids=[r.value for r in ALLOWED])
async def test_each_role_reaches_only_its_routes(
    master: RunningMaster, session: aiohttp.ClientSession, role: Role
) -> None:
    assert master.tokens is not None
    auth = f"Bearer {master.tokens.for_role(role)}"
    for route in ROUTES:
        if route[1] == "/api/v1/scheduler":
            continue  # a SUBSCRIBE stays open; covered below
        status, body, _ = await _send(session, master, route, auth)
        if route[1] in ALLOWED[role]:
            assert status not in (401, 403), (role, route[1], body)
        else:
            assert status == 403, (role, route[1], status)
            assert wire.decode_error(body).code == "FORBIDDEN"


async def test_an_agent_credential_reaches_only_the_agent_api(
    master: RunningMaster, session: aiohttp.ClientSession
) -> None:
    auth = f"Bearer {master.issue_token(Role.AGENT, agent_id=AgentId('edge-1'))}"
    status, _, _ = await _send(session, master, ROUTES[0], auth)
    assert status == 200
    for route in ROUTES[1:]:
        status, body, _ = await _send(session, master, route, auth)
        if route[1].startswith("/api/v1/modules/"):
            assert status == 404  # agents download modules: allowed, and this one does not exist
        else:
            assert status == 403 and wire.decode_error(body).code == "FORBIDDEN", route[1]


async def test_the_metrics_token_scrapes_and_errors_are_counted(
    master: RunningMaster, session: aiohttp.ClientSession
) -> None:
    await _send(session, master, ROUTES[2], "")
    assert master.tokens is not None
    async with session.get(master.url + "/metrics", headers={"Authorization": f"Bearer {master.tokens.metrics}"}) as r:
        assert r.status == 200
        assert 'edgerm_errors_total{code="UNAUTHENTICATED"} 1' in await r.text()


async def test_an_insecure_master_is_open_and_says_so(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "edgerm.master")
    async with start_master(insecure=True) as master:
        assert master.insecure and master.tokens is None
        async with session.get(master.url + "/api/v1/state") as r:
            assert r.status == 200
        async with session.post(master.url + "/api/v1/agent", data=REGISTER, headers=PB) as r:
            assert r.status == 200
        async with session.post(master.url + "/api/v1/join", data=b"{}") as r:
            assert r.status == 404
    assert "INSECURE: no authentication" in caplog.text
    assert any(r.levelno == logging.WARNING and "INSECURE MODE" in r.message for r in caplog.records)
