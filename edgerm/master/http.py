"""The master's HTTP adapter (aiohttp): decode, call the handler table, encode.

Routes::

    POST /api/v1/agent             AgentCall -> AgentEvent; SUBSCRIBE streams
                                   RecordIO-framed LAUNCH/KILL AgentEvents
    POST /api/v1/scheduler         Call; SUBSCRIBE streams RecordIO Events with
                                   header Edgerm-Stream-Id; others 202 empty
    GET  /api/v1/state             the cluster state as JSON; ?agent= ?framework= ?state=
                                   ?agent_state= ?limit= ?after= filter and page it
                                   (edgerm.master.state_api; errors as JSON {"error", "message"})
    GET  /api/v1/modules/{sha256}  an inline WebAssembly module by content hash
    GET  /api/v1/tasks/{id}        one task and its status history (JSON)
    GET  /api/v1/tasks/{id}/logs   ?stream=stdout|stderr&offset=N&limit=N: a piece of a
                                   task's output, fetched from its agent (JSON; errors
                                   as JSON {"error", "message"} with their HTTP status)
    POST /api/v1/tasks/{id}/kill   an operator's kill (on behalf of the task's
                                   framework): 202 with the task's JSON; 404
    GET  /metrics                  Prometheus text
    GET  /, /ui/...                the dashboard (edgerm.master.dashboard lists its pages)
    POST /api/v1/join              a join token -> an agent credential (JSON)
    GET|POST /login, GET /logout   the dashboard's sign-in (session cookie)

Rules:
- Bodies are ``application/x-protobuf`` and read here with a size limit, so
  an oversized body gets the typed TOO_LARGE reply (aiohttp's own 413 has no
  ``edgerm.v1.Error`` body).
- Every ``WireError`` becomes its ``http_status`` with an ``edgerm.v1.Error``
  body, counted through ``Handlers.failed``. The ``except Exception`` in
  :meth:`_HttpAdapter._guard` is the outermost boundary: it logs and answers
  500, and the master keeps serving.
- Streams flush each record at once (one ``write`` per record). A command
  that could not be written goes back to the agent's outbox. Closing a
  framework stream tells the core the framework disconnected.
- An open stream ends as soon as its principal's credential is found expired
  (checked before each record; framework streams carry a heartbeat at least
  every ``framework_heartbeat`` seconds) or revoked (on reload).
- Unless the master runs insecure (``security=None``), every request passes
  :func:`edgerm.master.http_auth.auth_middleware` first (a principal, its
  role allowed on the route, its call rate), and every call is authorized by
  :class:`edgerm.auth.policy.Policy` before the handler sees it: an agent
  for its own id, a framework for the frameworks it owns. Streams count
  against the principal's stream limit; ACCEPT against its task limit; offers
  beyond its offer limit are declined for it as they arrive.
- Run the app with ``handler_cancellation=True`` (as :mod:`edgerm.master.main`
  does) so a dropped streaming connection ends its handler at once rather
  than at the next write.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from edgerm import messages as m
from edgerm import wire
from edgerm.auth.limits import check_tasks
from edgerm.auth.principal import Principal
from edgerm.errors import Forbidden, LimitExceeded, MalformedMessage, MessageTooLarge, NotFound, UnknownTask, WireError
from edgerm.ids import FrameworkId, TaskId
from edgerm.master import dashboard
from edgerm.master.agent_calls import PROTOBUF, AgentCalls, check_content_type, check_length
from edgerm.master.handlers import Handlers
from edgerm.master.http_auth import (
    JOIN_PATH,
    PRINCIPAL_KEY,
    HttpSecurity,
    auth_middleware,
    join,
    login_routes,
    principal_of,
)
from edgerm.master.logs import DEFAULT_LIMIT as DEFAULT_LOG_LIMIT
from edgerm.master.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from edgerm.master.state_api import StateQuery
from edgerm.model import Filters

log = logging.getLogger(__name__)

STREAM_ID_HEADER = "Edgerm-Stream-Id"
DEFAULT_MAX_BODY = 8 * 1024 * 1024
MAX_TASK_ID = 256

_PB_HEADERS = {"Content-Type": PROTOBUF}
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HANDLERS_KEY = web.AppKey("edgerm_handlers", Handlers)
#: Offers declined for a framework over its principal's offer limit are refused to it for this long.
OVER_LIMIT_REFUSE_SECONDS = 5.0


class _HttpAdapter:
    def __init__(self, handlers: Handlers, max_body: int, security: HttpSecurity | None) -> None:
        self._handlers = handlers
        self._max_body = max_body
        self._security = security
        self._agent_calls = AgentCalls(handlers, max_body, security)

    def _principal(self, request: web.Request) -> Principal | None:
        """The request's checked principal; None when the master runs insecure."""
        return principal_of(request) if self._security is not None else None

    # -- plumbing ------------------------------------------------------------

    def _error(self, error: WireError) -> web.Response:
        self._handlers.failed(error)
        return web.Response(status=error.http_status, body=wire.encode_error(error), headers=_PB_HEADERS)

    def _guard(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except Forbidden as e:  # an audit trail of refused calls, with who tried
                log.info("refused %s %s for %s: %s", request.method, request.path, request.get(PRINCIPAL_KEY), e)
                return self._error(e)
            except WireError as e:
                return self._error(e)
            except Exception:
                log.exception("internal error on %s %s", request.method, request.path)
                response = self._error(WireError("internal error; see the master's log"))
                response.set_status(500)
                return response

        return guarded

    async def _body(self, request: web.Request) -> bytes:
        """The request body, checked for its content type and size."""
        check_content_type(request.headers.get("Content-Type", ""))
        limit = self._max_body
        check_length(request.content_length, limit)
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > limit:
                    raise MessageTooLarge(f"body is over the limit of {limit} bytes")
                chunks.append(chunk)
        except HttpProcessingError as e:  # e.g. a broken chunked encoding
            raise MalformedMessage(f"the body could not be read: {e.message}") from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- agent API ---------------------------------------------------------------

    async def agent(self, request: web.Request) -> web.StreamResponse:
        principal = self._principal(request)
        call = self._agent_calls.decode(await self._body(request), principal)
        if type(call) is m.SubscribeAgent:
            return await self._agent_stream(request, call, principal)
        event = await self._handlers.agent_call(call)
        return web.Response(body=wire.encode_agent_event(event), headers=_PB_HEADERS)

    async def _agent_stream(
        self, request: web.Request, call: m.SubscribeAgent, principal: Principal | None
    ) -> web.StreamResponse:
        calls = self._agent_calls
        stream, handle = calls.open_stream(call, principal)
        response = web.StreamResponse(status=200, headers=_PB_HEADERS)
        try:
            await response.prepare(request)
            async for command in stream:
                if not calls.valid(principal):
                    stream.give_back(command)  # its credential expired: the agent re-joins and gets it then
                    log.info("agent %s: command stream ended, its credential is no longer valid", call.agent_id)
                    break
                commands = [command, *stream.ready()]  # what queued meanwhile goes in the same write
                try:
                    await response.write(b"".join(wire.frame(wire.encode_agent_event(c)) for c in commands))
                except (ConnectionError, asyncio.CancelledError):
                    for c in reversed(commands):  # back in their order, first in line
                        stream.give_back(c)
                    raise
            await response.write_eof()
        except ConnectionError:
            log.debug("agent %s command stream dropped", call.agent_id)
        except Exception:
            # Past prepare() no error reply can be sent: log and end the stream
            # (the agent re-opens it; the command went back to the outbox).
            log.exception("agent %s command stream failed", call.agent_id)
        finally:
            stream.close()
            calls.close_stream(handle)
        return response

    # -- scheduler API ---------------------------------------------------------------

    async def scheduler(self, request: web.Request) -> web.StreamResponse:
        call = wire.decode_call(await self._body(request))
        principal = self._principal(request)
        if type(call) is m.Subscribe:
            return await self._framework_stream(request, call, principal)
        security = self._security
        if security is None or principal is None:
            await self._handlers.scheduler_call(call, request.headers.get(STREAM_ID_HEADER, ""))
            return web.Response(status=202)
        operator = security.policy.scheduler_call(principal, call)
        if isinstance(call, m.Accept):
            self._check_task_limit(principal, security, call)
        if operator and isinstance(call, m.Teardown):
            self._handlers.operator_teardown(call.framework_id)
            log.info("framework %s torn down by %s", call.framework_id, principal)
        else:
            await self._handlers.scheduler_call(call, request.headers.get(STREAM_ID_HEADER, ""))
        if isinstance(call, m.Teardown):
            security.framework_gone(call.framework_id)
        return web.Response(status=202)

    def _check_task_limit(self, principal: Principal, security: HttpSecurity, call: m.Accept) -> None:
        if not security.limits.tasks or not call.tasks:
            return
        core = self._handlers.service.core
        live = sum(core.live_tasks_of(f) for f in security.policy.owners.owned_by(principal.name))
        check_tasks(str(principal), live, len(call.tasks), security.limits)

    async def _framework_stream(
        self, request: web.Request, call: m.Subscribe, principal: Principal | None
    ) -> web.StreamResponse:
        security = self._security
        handle: int | None = None
        if security is not None and principal is not None:
            call = security.policy.subscribe(principal, call)
            handle = security.open_stream(principal, call.framework.id)
        try:
            stream = await self._handlers.subscribe(call)
        except BaseException:
            if security is not None and handle is not None:
                security.close_stream(handle)
            raise
        if security is not None and principal is not None and handle is not None:
            security.stream_serves(handle, stream.framework_id)
            if security.framework_subscribed(principal, stream.framework_id):
                log.info("framework %s is owned by %s", stream.framework_id, principal)
        response = web.StreamResponse(
            status=200, headers={"Content-Type": PROTOBUF, STREAM_ID_HEADER: stream.stream_id}
        )
        try:
            await response.prepare(request)
            async for event in stream:
                if security is not None and principal is not None and not security.store.valid(principal):
                    log.info("framework %s: event stream ended, %s is no longer valid", stream.framework_id, principal)
                    break  # expired: events stay unacknowledged in the core until a valid credential subscribes
                frames = []
                for one in (event, *stream.ready()):  # what queued meanwhile goes in the same write
                    if isinstance(one, m.Offers) and security is not None and principal is not None:
                        one = self._within_offer_limit(principal, security, stream.framework_id, one)
                    frames.append(wire.frame(wire.encode_event(one)))
                await response.write(b"".join(frames))
            await response.write_eof()
        except ConnectionError:
            log.debug("framework %s event stream dropped", stream.framework_id)
        except Exception:
            # Past prepare() no error reply can be sent: log and end the stream
            # (the framework re-subscribes; unacknowledged updates are re-sent).
            log.exception("framework %s event stream failed", stream.framework_id)
        finally:
            await stream.aclose()
            if security is not None and handle is not None:
                security.close_stream(handle)
        return response

    def _within_offer_limit(
        self, principal: Principal, security: HttpSecurity, framework_id: FrameworkId, event: m.Offers
    ) -> m.Offers | m.ErrorEvent:
        """The offers the principal may still hold; the excess is declined for it (an ErrorEvent says so)."""
        limit = security.limits.offers
        if not limit:
            return event
        core = self._handlers.service.core
        held = sum(core.views.offer_count(f) for f in security.policy.owners.owned_by(principal.name))
        excess = held - limit
        if excess <= 0:
            return event
        keep = event.offers[: max(0, len(event.offers) - excess)]
        over = tuple(o.id for o in event.offers[len(keep) :])
        try:
            self._handlers.service.handle(m.Decline(framework_id, over, Filters(OVER_LIMIT_REFUSE_SECONDS)))
        except WireError as e:  # e.g. rescinded meanwhile: nothing to give back
            log.debug("declining offers over the limit of %s: %s", principal, e)
        log.info("framework %s: declined %d offers over %s's limit of %d", framework_id, len(over), principal, limit)
        if keep:
            return m.Offers(keep)
        error = LimitExceeded(f"{principal} holds {held - len(over)} offers; the limit is {limit}")
        return m.ErrorEvent(error.code, error.message)

    # -- read-only views -------------------------------------------------------------------

    async def state(self, request: web.Request) -> web.StreamResponse:
        try:
            query = StateQuery.parse(request.query)
        except WireError as e:
            return self._json_error(e)
        principal = self._principal(request)
        scope = None
        if principal is not None and self._security is not None:
            scope = self._security.policy.state_scope(principal)
        state = self._handlers.state(query, scope)
        return web.json_response(state, headers={"Cache-Control": "no-store"})

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        text = await self._handlers.metrics_text_sliced()
        return web.Response(body=text.encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def task(self, request: web.Request) -> web.StreamResponse:
        task_id = TaskId(request.match_info["id"])
        data = self._handlers.task(task_id)
        if data is None:
            return self._json_error(UnknownTask(f"the master does not remember a task {task_id!r}"))
        return web.json_response(data, headers={"Cache-Control": "no-store"})

    async def task_logs(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        try:
            offset = int(query.get("offset", "0"))
            limit = int(query.get("limit", str(DEFAULT_LOG_LIMIT)))
            if abs(offset) > 2**62:
                raise ValueError(offset)
            piece = await self._handlers.task_logs(
                TaskId(request.match_info["id"]), query.get("stream", "stdout"), offset, limit
            )
        except ValueError:
            return self._json_error(MalformedMessage("offset and limit must be integers"))
        except WireError as e:
            return self._json_error(e)
        return web.json_response(piece.to_json(), headers={"Cache-Control": "no-store"})

    def _json_error(self, error: WireError) -> web.Response:
        self._handlers.failed(error)
        body = {"error": type(error).__name__, "message": str(error)}
        return web.json_response(body, status=error.http_status, headers={"Cache-Control": "no-store"})

    async def module(self, request: web.Request) -> web.StreamResponse:
        sha256 = request.match_info["sha256"]
        if not _SHA256.fullmatch(sha256):
            raise MalformedMessage(f"{sha256!r} is not a sha256 hex digest")
        module = self._handlers.module(sha256)
        if module is None:
            raise NotFound(f"no module with sha256 {sha256} on this master")
        return web.Response(
            body=module,
            headers={"Content-Type": "application/wasm", "Cache-Control": "public, max-age=31536000, immutable"},
        )

    async def kill(self, request: web.Request) -> web.StreamResponse:
        task_id = request.match_info["task_id"]
        if not 0 < len(task_id) <= MAX_TASK_ID:
            raise MalformedMessage(f"a task id has 1 to {MAX_TASK_ID} characters")
        task = self._handlers.kill_task(TaskId(task_id))
        return web.json_response(task, status=202)

    async def join(self, request: web.Request) -> web.StreamResponse:
        if self._security is None:
            raise NotFound("this master runs insecure: agents need no credential")
        return await join(self._security, request)


class QuietBadRequests(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, with a malformed request reported at INFO in one line, not as an ERROR
    with its traceback (aiohttp's way): anyone can send one, so it is an expected condition."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self.logger.info("bad HTTP request from %s: %s", args[0] if args else "?", exc_info.message.strip())
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kwargs)


def server_logger() -> logging.Logger:
    """The logger to give aiohttp's request handlers (``AppRunner(..., logger=server_logger())``)."""
    return cast(logging.Logger, QuietBadRequests(logging.getLogger("aiohttp.server")))


def make_app(
    handlers: Handlers, max_body: int = DEFAULT_MAX_BODY, security: HttpSecurity | None = None
) -> web.Application:
    """The master's aiohttp application over ``handlers``.

    ``max_body`` bounds every request body (TOO_LARGE beyond it).
    ``security`` None: an open (``--insecure``) master; else every route
    needs a principal (:mod:`edgerm.master.http_auth`).
    """
    if max_body < 1:
        raise ValueError("max_body must be positive")
    adapter = _HttpAdapter(handlers, max_body, security)
    middlewares = [auth_middleware(security, adapter._error)] if security is not None else []
    app = web.Application(client_max_size=max_body, middlewares=middlewares)
    app[HANDLERS_KEY] = handlers
    guard = adapter._guard
    app.router.add_post(JOIN_PATH, guard(adapter.join))
    if security is not None:
        app.router.add_routes(login_routes(security))
    app.router.add_post("/api/v1/agent", guard(adapter.agent))
    app.router.add_post("/api/v1/scheduler", guard(adapter.scheduler))
    app.router.add_get("/api/v1/state", guard(adapter.state))
    app.router.add_get("/api/v1/modules/{sha256}", guard(adapter.module))
    app.router.add_post("/api/v1/tasks/{task_id}/kill", guard(adapter.kill))
    app.router.add_get("/api/v1/tasks/{id}", guard(adapter.task))
    app.router.add_get("/api/v1/tasks/{id}/logs", guard(adapter.task_logs))
    app.router.add_get("/metrics", guard(adapter.metrics))
    dashboard.add_routes(app, handlers, guard)
    return app
