"""Authentication, authorization and limits for the master's HTTP API.

Role: the aiohttp side of :mod:`edgerm.auth`. :class:`HttpSecurity` holds
the master's :class:`~edgerm.auth.credentials.CredentialStore`, the
:class:`~edgerm.auth.policy.Policy` (framework owners), the per-principal
limits and the open streams; :func:`auth_middleware` runs before every
route (including routes added later: an unlisted route is admin-only).

Rules:
- Credentials: ``Authorization: Bearer TOKEN`` on every request. GET and
  HEAD (state, metrics, dashboard) also accept the HttpOnly,
  ``SameSite=Strict`` session cookie set by ``POST /login`` or by opening the
  dashboard once with ``?token=``; calls that change something (POST) never
  take the cookie, so another site cannot make a browser send them.
- No valid credential: 401 ``UNAUTHENTICATED`` (with ``WWW-Authenticate:
  Bearer``); the dashboard answers its login form instead. A role that may
  not use a route: 403 ``FORBIDDEN``. Over the call rate: 429
  ``LIMIT_EXCEEDED``. All three are typed replies and change nothing.
- ``POST /api/v1/join`` (join tokens only) mints an agent credential bound to
  the agent id in the JSON body; the token is answered once and never
  logged. With ``"coap": true`` the answer also carries the agent's new
  OSCORE context (:mod:`edgerm.auth.oscore_contexts`), its key never logged.
- :meth:`HttpSecurity.reload` (SIGHUP) re-reads the credentials file; every
  open stream whose principal is no longer valid is ended at once.
- Who owns which framework is kept next to a file-backed credentials store
  (``framework-owners.json``, rewritten atomically on each new owner and
  teardown), so a restarted master keeps refusing a framework id to anyone
  but its owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware

from edgerm.auth.credentials import CredentialStore
from edgerm.auth.limits import Limits, RateLimiter, StreamCounter
from edgerm.auth.policy import FrameworkOwners, Policy, check_view
from edgerm.auth.principal import Principal, Role
from edgerm.errors import (
    ConfigError,
    Forbidden,
    MalformedMessage,
    MessageTooLarge,
    Unauthenticated,
    Unavailable,
    WireError,
)
from edgerm.ids import AgentId, FrameworkId

if TYPE_CHECKING:
    from edgerm.auth.oscore_contexts import AgentContexts  # imports aiocoap: only where CoAP is served

log = logging.getLogger(__name__)

PRINCIPAL_KEY = web.RequestKey("edgerm_principal", Principal)
COOKIE = "edgerm_session"
JOIN_PATH = "/api/v1/join"
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
MAX_JOIN_BODY = 4096
OWNERS_FILE = "framework-owners.json"

#: Route groups by path (edgerm.auth.policy.VIEW_ROLES); anything else is "other".
_VIEWS = {
    "/api/v1/agent": "agent",
    "/api/v1/scheduler": "scheduler",
    "/api/v1/state": "state",
    "/metrics": "metrics",
    "/": "dashboard",
    JOIN_PATH: "join",
}
_PUBLIC = frozenset({LOGIN_PATH, LOGOUT_PATH})

ErrorReply = Callable[[WireError], web.Response]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def view_of(path: str) -> str:
    if path.startswith("/api/v1/modules/"):
        return "modules"
    return _VIEWS.get(path, "other")


@dataclass(frozen=True, slots=True)
class _OpenStream:
    principal: Principal
    end: Callable[[], object] | None  # ends the stream at once (cancels its handler task, or closes its connection)
    key: str  # the framework or agent id it serves ("" for a new framework)


class HttpSecurity:
    """Everything the HTTP adapter needs to authenticate, authorize and limit."""

    def __init__(
        self,
        store: CredentialStore,
        *,
        limits: Limits | None = None,
        policy: Policy | None = None,
        clock: Callable[[], float] = time.monotonic,
        secure_cookies: bool = False,
    ) -> None:
        self.store = store
        self.owners_path = store.path.with_name(OWNERS_FILE) if store.path is not None else None
        if policy is None:
            policy = Policy(load_owners(self.owners_path) if self.owners_path is not None else None)
        self.policy = policy
        self.limits = limits if limits is not None else Limits()
        self.secure_cookies = secure_cookies
        self._clock = clock
        self._rate = RateLimiter(self.limits)
        self._streams = StreamCounter(self.limits)
        self._open: dict[int, _OpenStream] = {}
        #: (principal name, key) -> the handle of its counted stream: opening one must not scan every stream (each
        #: HTTP agent holds one; at 9,000 agents the scan was 10 % of a secured master's loop). One per key: a newer
        #: stream for the key replaces the older one.
        self._keyed: dict[tuple[str, str], int] = {}
        self._next = 0
        #: The agents' OSCORE contexts when the master serves CoAP (set by edgerm.master.main).
        self.oscore: AgentContexts | None = None
        self.oscore_tmp: Path | None = None  # their temporary dir, for in-memory credentials

    # -- requests ----------------------------------------------------------------------

    def authenticate(self, request: web.Request) -> Principal | None:
        principal = self.bearer(request.headers.get("Authorization", ""))
        if principal is not None:
            return principal
        if request.method in ("GET", "HEAD"):
            cookie = request.cookies.get(COOKIE)
            if cookie:
                return self.store.principal_for_token(cookie)
        return None

    def bearer(self, header: str) -> Principal | None:
        """The principal of an ``Authorization: Bearer TOKEN`` header's value (None: no valid one)."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            return self.store.principal_for_token(token.strip())
        return None

    def take_call(self, principal: Principal) -> None:
        """Spend one call of the principal's rate budget (LimitExceeded when empty)."""
        self._rate.take(principal.name, self._clock())

    # -- streams --------------------------------------------------------------------

    def open_stream(self, principal: Principal, key: str = "", end: Callable[[], object] | None = None) -> int:
        """Count a stream opened by ``principal`` (LimitExceeded past its limit); returns its handle.

        ``end`` ends the stream when its principal is revoked (default: cancel the current task, the
        stream's handler).

        A stream for the same ``key`` (framework or agent id) replaces the
        principal's older one, as the service does: it no longer counts, so
        re-subscribing after a dropped connection is never refused.
        """
        older = self._keyed.get((principal.name, key)) if key else None
        if older is not None:
            self.close_stream(older)
        self._streams.open(principal.name)
        self._next += 1
        if end is None:
            task = asyncio.current_task()
            end = task.cancel if task is not None else None
        self._add(self._next, _OpenStream(principal, end, key))
        return self._next

    def stream_serves(self, handle: int, key: str) -> None:
        """Name the id a stream serves once it is known (a new framework's generated id); an older stream
        of the principal for that id no longer counts."""
        stream = self._open.pop(handle, None)
        if stream is not None:
            self._unindex(handle, stream)
            older = self._keyed.get((stream.principal.name, key)) if key else None
            if older is not None:
                self.close_stream(older)
            self._add(handle, _OpenStream(stream.principal, stream.end, key))

    def close_stream(self, handle: int) -> None:
        stream = self._open.pop(handle, None)
        if stream is not None:
            self._unindex(handle, stream)
            self._streams.close(stream.principal.name)

    def _add(self, handle: int, stream: _OpenStream) -> None:
        self._open[handle] = stream
        if stream.key:
            self._keyed[(stream.principal.name, stream.key)] = handle

    def _unindex(self, handle: int, stream: _OpenStream) -> None:
        index = (stream.principal.name, stream.key)
        if self._keyed.get(index) == handle:
            del self._keyed[index]

    def streams_of(self, name: str) -> int:
        return self._streams.count(name)

    # -- framework owners ------------------------------------------------------------------

    def framework_subscribed(self, principal: Principal, framework_id: FrameworkId) -> bool:
        """Record the owner of a subscribed framework (kept on disk when the store is); whether it is new."""
        new = self.policy.subscribed(principal, framework_id)
        if new:
            self._save_owners()
        return new

    def framework_gone(self, framework_id: FrameworkId) -> None:
        self.policy.torn_down(framework_id)
        self._save_owners()

    def _save_owners(self) -> None:
        if self.owners_path is None:
            return
        try:
            save_owners(self.owners_path, self.policy.owners)
        except OSError as e:  # the binding still holds in memory; a restart would forget it
            log.error("cannot record framework owners in %s: %s", self.owners_path, e)

    # -- rotation ---------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the credentials file and end the streams of principals no longer valid.

        A broken file is logged and the old credentials stay in force; returns
        whether the reload took effect.
        """
        try:
            credentials = self.store.reload()
        except ConfigError as e:
            log.error("credentials not reloaded (keeping the old ones): %s", e)
            return False
        ended = 0
        for handle, stream in list(self._open.items()):
            if not self.store.valid(stream.principal):
                ended += 1
                self.close_stream(handle)
                if stream.end is not None:
                    stream.end()
        log.info("credentials reloaded: %d entries; %d streams of revoked principals ended", len(credentials), ended)
        return True


def load_owners(path: Path) -> FrameworkOwners:
    """The framework owners recorded in ``path`` (none if it is missing or unreadable: logged)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return FrameworkOwners()
    except (OSError, ValueError) as e:
        log.error("ignoring %s: %s", path, e)
        return FrameworkOwners()
    owners = doc.get("owners") if isinstance(doc, dict) else None
    if not isinstance(owners, dict):
        log.error("ignoring %s: no 'owners' mapping", path)
        return FrameworkOwners()
    return FrameworkOwners({FrameworkId(str(f)): str(p) for f, p in owners.items()})


def save_owners(path: Path, owners: FrameworkOwners) -> None:
    """Write the owners atomically (mode 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=".owners-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"owners": dict(owners.items())}, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def auth_middleware(security: HttpSecurity, error: ErrorReply) -> Middleware:
    """The middleware that puts a checked :class:`Principal` on every request (``request[PRINCIPAL_KEY]``)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _PUBLIC:
            return await handler(request)
        view = view_of(request.path)
        principal: Principal | None = None
        try:
            principal = security.authenticate(request)
            if principal is None:
                query_token = request.query.get("token") if view == "dashboard" and request.method == "GET" else None
                if query_token:
                    return _login_redirect(security, query_token)
                if view == "dashboard":
                    return login_page(401)
                raise Unauthenticated("a valid credential is required: send Authorization: Bearer TOKEN")
            check_view(principal, view)
            security.take_call(principal)
        except WireError as e:
            if isinstance(e, Forbidden):
                log.info("refused %s %s for %s: %s", request.method, request.path, principal, e)
            response = error(e)
            if isinstance(e, Unauthenticated):
                response.headers["WWW-Authenticate"] = 'Bearer realm="edgerm"'
            return response
        request[PRINCIPAL_KEY] = principal
        return await handler(request)

    return middleware


def principal_of(request: web.Request) -> Principal:
    try:
        return request[PRINCIPAL_KEY]
    except KeyError:
        raise Unauthenticated("no principal on this request") from None


# -- the dashboard's login ------------------------------------------------------------------

_LOGIN_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgerm master: sign in</title>
<style>body {{ font: 14px system-ui, sans-serif; margin: 3em; }} input {{ width: 40em; }}</style></head>
<body><h1>edgerm master</h1><p>{message}</p>
<form method="post" action="/login"><label>Token <input type="password" name="token" autocomplete="off"></label>
<button type="submit">Sign in</button></form></body></html>
"""


def login_page(status: int, message: str = "Sign in with an admin (or framework) token.") -> web.Response:
    return web.Response(
        status=status,
        text=_LOGIN_HTML.format(message=html.escape(message)),
        content_type="text/html",
        headers={"Cache-Control": "no-store", "WWW-Authenticate": 'Bearer realm="edgerm"'},
    )


def _session_response(security: HttpSecurity, token: str) -> web.Response:
    response = web.Response(status=303, headers={"Location": "/", "Cache-Control": "no-store"})
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=security.secure_cookies, path="/")
    return response


def _login_redirect(security: HttpSecurity, token: str) -> web.Response:
    principal = security.store.principal_for_token(token)
    if principal is None or principal.role not in (Role.ADMIN, Role.FRAMEWORK):
        return login_page(401, "That token is not valid here.")
    return _session_response(security, token)


def login_routes(security: HttpSecurity) -> list[web.RouteDef]:
    async def form(request: web.Request) -> web.StreamResponse:
        return login_page(200)

    async def submit(request: web.Request) -> web.StreamResponse:
        if (request.content_length or 0) > MAX_JOIN_BODY:
            return login_page(413, "That is too long for a token.")
        data = await request.post()
        token = data.get("token")
        if not isinstance(token, str) or not token:
            return login_page(401, "Enter a token.")
        return _login_redirect(security, token.strip())

    async def logout(request: web.Request) -> web.StreamResponse:
        response = web.Response(status=303, headers={"Location": LOGIN_PATH})
        response.del_cookie(COOKIE, path="/")
        return response

    return [web.get(LOGIN_PATH, form), web.post(LOGIN_PATH, submit), web.get(LOGOUT_PATH, logout)]


# -- agent join -------------------------------------------------------------------------------


async def read_join(request: web.Request) -> tuple[AgentId, bool]:
    """The agent id in a join request's JSON body (``{"agent_id": "...", "coap": false}``), bounded and checked.

    The second value: whether the agent asks for an OSCORE context (it speaks CoAP).
    """
    if (request.content_length or 0) > MAX_JOIN_BODY:
        raise MessageTooLarge(f"a join request is at most {MAX_JOIN_BODY} bytes")
    body = await request.content.read(MAX_JOIN_BODY + 1)
    if len(body) > MAX_JOIN_BODY:
        raise MessageTooLarge(f"a join request is at most {MAX_JOIN_BODY} bytes")
    try:
        doc = json.loads(body)
    except ValueError:
        raise MalformedMessage('a join request is JSON: {"agent_id": "..."}') from None
    agent_id = doc.get("agent_id") if isinstance(doc, dict) else None
    if not isinstance(agent_id, str) or not agent_id:
        raise MalformedMessage("a join request names its agent_id")
    coap = doc.get("coap", False)
    if not isinstance(coap, bool):
        raise MalformedMessage('a join request\'s "coap" is true or false')
    return AgentId(agent_id), coap


async def join(security: HttpSecurity, request: web.Request) -> web.Response:
    """``POST /api/v1/join``: a join token in, an agent credential bound to the agent id out."""
    principal = principal_of(request)
    agent_id, coap = await read_join(request)
    contexts = security.oscore
    if coap and contexts is None:
        raise Unavailable('this master serves no CoAP: join without "coap"')
    token, credential = await asyncio.to_thread(security.store.join, agent_id)
    answer: dict[str, object] = {"agent_id": agent_id, "name": credential.name, "token": token}
    if coap and contexts is not None:
        material, entry, opened = await asyncio.to_thread(contexts.write_ready, credential)
        contexts.install(entry, opened)
        answer["oscore"] = material.to_json()
    log.info(
        "agent %s joined with join credential %s (its credential: %s%s)",
        agent_id,
        principal.name,
        credential.name,
        ", an OSCORE context" if "oscore" in answer else "",
    )
    return web.json_response(answer, headers={"Cache-Control": "no-store"})
