"""The master's HTTP adapter (aiohttp): decode, call the handler table, encode.

Routes::

    POST /api/v1/agent             AgentCall -> AgentEvent; SUBSCRIBE streams
                                   RecordIO-framed LAUNCH/KILL AgentEvents
    POST /api/v1/scheduler         Call; SUBSCRIBE streams RecordIO Events with
                                   header Edgerm-Stream-Id; others 202 empty
    GET  /api/v1/state             the cluster state as JSON
    GET  /api/v1/modules/{sha256}  an inline WebAssembly module by content hash
    GET  /api/v1/tasks/{id}        one task and its status history (JSON)
    GET  /api/v1/tasks/{id}/logs   ?stream=stdout|stderr&offset=N&limit=N: a piece of a
                                   task's output, fetched from its agent (JSON; errors
                                   as JSON {"error", "message"} with their HTTP status)
    GET  /metrics                  Prometheus text
    GET  /, /ui/...                the dashboard (edgerm.master.dashboard lists its pages)

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
- Run the app with ``handler_cancellation=True`` (as :mod:`edgerm.master.main`
  does) so a dropped streaming connection ends its handler at once rather
  than at the next write.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from edgerm import messages as m
from edgerm import wire
from edgerm.errors import MalformedMessage, MessageTooLarge, NotFound, UnknownTask, WireError
from edgerm.ids import TaskId
from edgerm.master import dashboard
from edgerm.master.handlers import Handlers
from edgerm.master.logs import DEFAULT_LIMIT as DEFAULT_LOG_LIMIT
from edgerm.master.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
STREAM_ID_HEADER = "Edgerm-Stream-Id"
DEFAULT_MAX_BODY = 8 * 1024 * 1024

_PB_HEADERS = {"Content-Type": PROTOBUF}
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HANDLERS_KEY = web.AppKey("edgerm_handlers", Handlers)


class _HttpAdapter:
    def __init__(self, handlers: Handlers, max_body: int) -> None:
        self._handlers = handlers
        self._max_body = max_body

    # -- plumbing ------------------------------------------------------------

    def _error(self, error: WireError) -> web.Response:
        self._handlers.failed(error)
        return web.Response(status=error.http_status, body=wire.encode_error(error), headers=_PB_HEADERS)

    def _guard(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
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
        ctype = request.headers.get("Content-Type", "")
        if ctype.partition(";")[0].strip().lower() != PROTOBUF:
            raise MalformedMessage(f"Content-Type must be {PROTOBUF}, got {ctype or 'none'!r}")
        limit = self._max_body
        length = request.content_length
        if length is not None and length > limit:
            raise MessageTooLarge(f"body of {length} bytes is over the limit of {limit} bytes")
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
        call = wire.decode_agent_call(await self._body(request))
        if type(call) is m.SubscribeAgent:
            return await self._agent_stream(request, call)
        event = await self._handlers.agent_call(call)
        return web.Response(body=wire.encode_agent_event(event), headers=_PB_HEADERS)

    async def _agent_stream(self, request: web.Request, call: m.SubscribeAgent) -> web.StreamResponse:
        stream = self._handlers.agent_commands(call.agent_id)
        response = web.StreamResponse(status=200, headers=_PB_HEADERS)
        try:
            await response.prepare(request)
            async for command in stream:
                try:
                    await response.write(wire.frame(wire.encode_agent_event(command)))
                except (ConnectionError, asyncio.CancelledError):
                    stream.give_back(command)
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
        return response

    # -- scheduler API ---------------------------------------------------------------

    async def scheduler(self, request: web.Request) -> web.StreamResponse:
        call = wire.decode_call(await self._body(request))
        if type(call) is m.Subscribe:
            return await self._framework_stream(request, call)
        await self._handlers.scheduler_call(call, request.headers.get(STREAM_ID_HEADER, ""))
        return web.Response(status=202)

    async def _framework_stream(self, request: web.Request, call: m.Subscribe) -> web.StreamResponse:
        stream = await self._handlers.subscribe(call)
        response = web.StreamResponse(
            status=200, headers={"Content-Type": PROTOBUF, STREAM_ID_HEADER: stream.stream_id}
        )
        try:
            await response.prepare(request)
            async for event in stream:
                await response.write(wire.frame(wire.encode_event(event)))
            await response.write_eof()
        except ConnectionError:
            log.debug("framework %s event stream dropped", stream.framework_id)
        except Exception:
            # Past prepare() no error reply can be sent: log and end the stream
            # (the framework re-subscribes; unacknowledged updates are re-sent).
            log.exception("framework %s event stream failed", stream.framework_id)
        finally:
            await stream.aclose()
        return response

    # -- read-only views -------------------------------------------------------------------

    async def state(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._handlers.state(), headers={"Cache-Control": "no-store"})

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._handlers.metrics_text().encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})

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


def make_app(handlers: Handlers, max_body: int = DEFAULT_MAX_BODY) -> web.Application:
    """The master's aiohttp application over ``handlers``.

    ``max_body`` bounds every request body (TOO_LARGE beyond it).
    """
    if max_body < 1:
        raise ValueError("max_body must be positive")
    adapter = _HttpAdapter(handlers, max_body)
    app = web.Application(client_max_size=max_body)
    app[HANDLERS_KEY] = handlers
    guard = adapter._guard
    app.router.add_post("/api/v1/agent", guard(adapter.agent))
    app.router.add_post("/api/v1/scheduler", guard(adapter.scheduler))
    app.router.add_get("/api/v1/state", guard(adapter.state))
    app.router.add_get("/api/v1/modules/{sha256}", guard(adapter.module))
    app.router.add_get("/api/v1/tasks/{id}", guard(adapter.task))
    app.router.add_get("/api/v1/tasks/{id}/logs", guard(adapter.task_logs))
    app.router.add_get("/metrics", guard(adapter.metrics))
    dashboard.add_routes(app, handlers, guard)
    return app
