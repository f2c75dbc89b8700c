"""``HttpDriver``: runs a :class:`Framework` against a master over HTTP.

Pipeline: SUBSCRIBE (``POST /api/v1/scheduler``, response kept open) ->
RecordIO stream split by :class:`edgerm.wire.RecordReader` -> events decoded
with :mod:`edgerm.wire` -> callbacks, one at a time, in stream order. Every
other call is its own POST carrying the ``Edgerm-Stream-Id`` header the
SUBSCRIBE response gave.

Rules:

- This module is the one boundary where transport problems are mapped:
  aiohttp errors and timeouts of a call become ``Unavailable``; a typed
  ``edgerm.v1.Error`` reply becomes its ``WireError`` subclass
  (:func:`edgerm.wire.raise_error`); a 5xx without a typed body becomes
  ``Unavailable``. No aiohttp exception reaches the framework.
- The stream is dead when nothing arrives for ``missed_heartbeats`` x the
  heartbeat interval SUBSCRIBED announced. The driver then (or when the
  master closes the stream) tells the framework ``disconnected``, waits a
  backoff (doubling, jittered, capped) and re-subscribes with the same
  framework id; the master re-sends unacknowledged updates, which are
  delivered again (at-least-once).
- A SUBSCRIBE refused with a typed error other than ``Unavailable`` is not
  retried: :meth:`HttpDriver.run` raises it. ``max_retries`` consecutive
  failures to (re)subscribe make it raise ``Unavailable``.
- Credentials: ``token`` (else an in-process master's, else
  ``$EDGERM_TOKEN``, :func:`edgerm.auth.client.resolve_token`) goes in an
  ``Authorization: Bearer`` header on every request; ``ca`` (or
  ``$EDGERM_CA``) verifies an https master. A refused credential
  (UNAUTHENTICATED, FORBIDDEN) is not retried.
- Failover: SUBSCRIBE carries ``failover_timeout`` (how long the master
  keeps this framework's tasks while no stream is open). With
  ``framework_id_file`` the id is read from that file at start (if it
  exists) and written there (atomically) after every SUBSCRIBED that
  changes it, so a restarted framework process reclaims its tasks and
  their unacknowledged updates.
- A callback that raises is logged (this is the outermost boundary for user
  code) and dispatch goes on; its status update is then not acknowledged.
- Offers events read in one piece of the stream are handed to one
  ``resource_offers`` call (their offers in order), so a framework can
  answer them together.
- Automatic acknowledgements do not hold up dispatch: they are queued and
  sent in the background, one ACKNOWLEDGE in flight at a time carrying
  every update queued meanwhile (``more``, up to :data:`ACKS_PER_CALL`).
  One that fails is re-sent by the master (at least once, as before).
  ``stop(teardown=False)`` first sends the queued ones.
- A call refused for the principal's call rate (``LimitExceeded`` naming
  "retry in Ns") is sent again after that wait, for up to ``call_timeout``
  in all, so a burst (acknowledging a thousand reconciled tasks) is paced
  to the master's limit instead of failing; other limits raise at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import math
import os
import random
import re
from collections.abc import Coroutine, Iterable
from os import PathLike
from pathlib import Path
from typing import Any

import aiohttp

from edgerm import messages as m
from edgerm.auth.client import bearer, client_ssl, resolve_token
from edgerm.auth.principal import Role
from edgerm.errors import (
    ConfigError,
    LimitExceeded,
    MalformedMessage,
    NotSubscribed,
    Unavailable,
    UnknownCall,
    WireError,
)
from edgerm.frameworks.base import Framework
from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId
from edgerm.model import Filters, FrameworkInfo, TaskInfo, TaskStatus
from edgerm.wire import RecordReader, decode_error, decode_event, encode_call, raise_error

log = logging.getLogger(__name__)

SCHEDULER_PATH = "/api/v1/scheduler"
STREAM_ID_HEADER = "Edgerm-Stream-Id"
_RETRY_IN = re.compile(r"calls/s; retry in ([0-9.]+)s")
CONTENT_TYPE = "application/x-protobuf"
ACKS_PER_CALL = 256  # automatic acknowledgements batched into one ACKNOWLEDGE at most


async def raise_for_reply(resp: aiohttp.ClientResponse) -> None:
    """Raise the ``WireError`` a non-success reply stands for."""
    body = await resp.read()
    if resp.content_type == CONTENT_TYPE and body:
        try:
            err = decode_error(body)
        except MalformedMessage:
            err = None
        if err is not None and err.code != "CODE_UNSPECIFIED":
            raise_error(err)
    text = body[:200].decode("utf-8", "replace").strip()
    if resp.status >= 500:
        raise Unavailable(f"HTTP {resp.status} from {resp.url}: {text}")
    raise WireError(f"unexpected HTTP {resp.status} from {resp.url}: {text}")


_FRAMEWORK_ID = re.compile(r"[!-~]{1,256}")  # printable ASCII, no spaces: what a master hands out and more


def read_framework_id(path: Path) -> FrameworkId | None:
    """The id kept in ``path``; None if the file does not exist. ConfigError if it is unreadable or bad."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the framework id: {e}") from None
    if not text:
        return None
    if not _FRAMEWORK_ID.fullmatch(text):
        raise ConfigError(f"{path}: {text[:40]!r} is not a framework id; delete the file to subscribe anew")
    return FrameworkId(text)


def write_framework_id(path: Path, framework_id: FrameworkId) -> None:
    """Write the id atomically (blocking): a crash leaves the old id or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(framework_id + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class HttpDriver:
    """A :class:`~edgerm.frameworks.driver.FrameworkDriver` over the HTTP scheduler API."""

    def __init__(
        self,
        framework: Framework,
        master_url: str,
        *,
        name: str | None = None,
        framework_id: FrameworkId | None = None,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        max_retries: int | None = None,
        call_timeout: float = 10.0,
        subscribe_timeout: float = 10.0,
        missed_heartbeats: float = 3.0,
        token: str | None = None,
        ca: str | None = None,
        failover_timeout: float = 0.0,
        framework_id_file: str | PathLike[str] | None = None,
    ) -> None:
        if not 0 <= failover_timeout < math.inf:
            raise ConfigError(f"failover_timeout: expected a number of seconds >= 0, got {failover_timeout!r}")
        self._framework = framework
        self._master_url = master_url.rstrip("/")
        self._auth = bearer(resolve_token(token, self._master_url, Role.FRAMEWORK))
        self._ssl = client_ssl(self._master_url, ca)
        self._url = self._master_url + SCHEDULER_PATH
        self._name = name or framework.name
        self._failover_timeout = float(failover_timeout)
        self._id_file = Path(framework_id_file) if framework_id_file is not None else None
        self._framework_id = framework_id or (read_framework_id(self._id_file) if self._id_file else None)
        self._master_id = ""
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._max_retries = max_retries
        self._call_timeout = call_timeout
        self._subscribe_timeout = subscribe_timeout
        self._missed_heartbeats = missed_heartbeats
        self._http: aiohttp.ClientSession | None = None
        self._stream_id: str | None = None
        self._reached_subscribed = False
        self._stopping = False
        self._tearing_down = False  # a TEARDOWN is on its way: the master closing the stream is expected
        self._task: asyncio.Task[None] | None = None
        self._acks: dict[tuple[TaskId, str], TaskStatus] = {}  # auto-acknowledgements not sent yet, in order
        self._ack_job: asyncio.Task[None] | None = None

    # -- state ---------------------------------------------------------------

    @property
    def framework_id(self) -> FrameworkId | None:
        return self._framework_id

    @property
    def master_id(self) -> str:
        return self._master_id

    @property
    def master_url(self) -> str:
        return self._master_url

    @property
    def subscribed(self) -> bool:
        """Whether the event stream is up right now."""
        return self._stream_id is not None

    # -- running ---------------------------------------------------------------

    async def run(self) -> None:
        """Subscribe and dispatch events until :meth:`stop`.

        Raises a ``WireError`` if the master refuses the subscription, or
        ``Unavailable`` after ``max_retries`` consecutive failed attempts.
        """
        if self._task is not None:
            raise RuntimeError("HttpDriver.run() can be called once")
        if self._stopping:
            return
        task = self._task = asyncio.create_task(self._loop(), name=f"edgerm-framework-{self._name}")
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.wait([task])
            raise
        if not task.cancelled():
            task.result()

    async def _loop(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._call_timeout)
        connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl is not None else None
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            self._http = http
            try:
                await self._reconnect_loop(http)
            finally:
                self._http = None
                self._stream_id = None

    async def _reconnect_loop(self, http: aiohttp.ClientSession) -> None:
        delay = self._backoff_initial
        failures = 0
        while not self._stopping:
            reason = await self._attempt(http)
            if self._stopping:
                return
            if self._tearing_down:  # the master ends the stream on TEARDOWN: no reconnecting; stop() ends this task
                await asyncio.sleep(self._call_timeout)
                continue
            if self._reached_subscribed:
                failures, delay = 0, self._backoff_initial
                await self._callback("disconnected", self._framework.disconnected(self))
                if self._stopping:
                    return
            else:
                failures += 1
                if self._max_retries is not None and failures > self._max_retries:
                    raise Unavailable(f"cannot subscribe at {self._url} after {failures} attempts: {reason}")
            pause = delay * random.uniform(0.5, 1.0)
            self._log_retry(reason, failures, pause)
            await asyncio.sleep(pause)
            delay = min(delay * 2, self._backoff_max)

    def _log_retry(self, reason: str, failures: int, pause: float) -> None:
        """One warning when the stream goes (or the first subscription fails), then quiet until it is back."""
        if self._reached_subscribed:
            log.warning("framework %s: event stream lost (%s); reconnecting", self._name, reason)
        elif failures == 1:
            log.warning("framework %s: cannot subscribe (%s); retrying with backoff", self._name, reason)
        else:
            log.debug("framework %s: attempt %d failed (%s); retrying in %.2fs", self._name, failures, reason, pause)

    async def _attempt(self, http: aiohttp.ClientSession) -> str:
        """One subscription; returns why it ended. Raises only for a refusal
        that retrying cannot fix."""
        self._reached_subscribed = False
        try:
            return await self._session(http)
        except TimeoutError:
            return f"no answer within {self._subscribe_timeout:.1f}s"
        except (aiohttp.ClientError, OSError) as e:
            return f"connection error: {e or type(e).__name__}"
        except Unavailable as e:
            return f"{e.code}: {e.message}"
        finally:
            self._stream_id = None

    async def _session(self, http: aiohttp.ClientSession) -> str:
        info = FrameworkInfo(self._framework_id or FrameworkId(""), self._name, self._failover_timeout)
        async with asyncio.timeout(self._subscribe_timeout):
            resp = await http.post(self._url, data=encode_call(m.Subscribe(info)), headers=self._headers(None))
        async with resp:
            if resp.status != 200:
                await raise_for_reply(resp)
            stream_id = resp.headers.get(STREAM_ID_HEADER, "")
            if not stream_id:
                return f"SUBSCRIBE answered without a {STREAM_ID_HEADER} header"
            reader = RecordReader()
            read_timeout: float | None = self._subscribe_timeout
            while True:
                try:
                    async with asyncio.timeout(read_timeout):
                        chunk = await resp.content.readany()
                except TimeoutError:
                    return f"nothing received for {read_timeout:.2f}s (missed heartbeats)"
                if not chunk:
                    return "the master closed the stream"
                try:
                    records = reader.feed(chunk)
                except MalformedMessage as e:
                    return f"broken stream framing: {e.message}"
                events: list[m.SchedulerEvent] = []
                broken = ""
                for record in records:
                    try:
                        event = decode_event(record)
                    except UnknownCall as e:
                        log.warning("framework %s: skipping an event: %s", self._name, e.message)
                        continue
                    except MalformedMessage as e:
                        broken = f"malformed event: {e.message}"  # those before it are still dispatched
                        break
                    last = events[-1] if events else None
                    if isinstance(event, m.Offers) and isinstance(last, m.Offers):
                        events[-1] = m.Offers(last.offers + event.offers)  # offers read together: one callback
                    else:
                        events.append(event)
                for event in events:
                    if isinstance(event, m.Subscribed):
                        if not event.framework_id:
                            return "SUBSCRIBED without a framework id"
                        if event.framework_id != self._framework_id:
                            await self._remember_id(event.framework_id)
                        self._framework_id = event.framework_id
                        self._master_id = event.master_id
                        self._stream_id = stream_id
                        self._reached_subscribed = True
                        log.info(
                            "framework %s: subscribed as %s to %s", self._name, event.framework_id, self._master_url
                        )
                        hb = event.heartbeat_interval
                        read_timeout = hb * self._missed_heartbeats if hb > 0 else None
                    elif self._stream_id is None:
                        return "the stream did not start with SUBSCRIBED"
                    await self._dispatch(event)
                    if self._stopping:
                        return "stopped"
                if broken:
                    return broken

    async def _remember_id(self, framework_id: FrameworkId) -> None:
        """Keep the id for the next process (``framework_id_file``); a failure is logged, not fatal."""
        if self._id_file is None:
            return
        try:
            await asyncio.to_thread(write_framework_id, self._id_file, framework_id)
        except OSError as e:
            log.warning("framework %s: cannot write its id to %s: %s", self._name, self._id_file, e)
            return
        log.info("framework %s: id %s kept in %s", self._name, framework_id, self._id_file)

    # -- dispatch --------------------------------------------------------------

    async def _dispatch(self, event: m.SchedulerEvent) -> None:
        f = self._framework
        if isinstance(event, m.Subscribed):
            await self._callback("registered", f.registered(self, event.framework_id, event.master_id))
        elif isinstance(event, m.Offers):
            await self._callback("resource_offers", f.resource_offers(self, list(event.offers)))
        elif isinstance(event, m.Rescind):
            await self._callback("offer_rescinded", f.offer_rescinded(self, event.offer_id))
        elif isinstance(event, m.Update):
            handled = await self._callback("status_update", f.status_update(self, event.status))
            if handled and event.status.uuid and f.auto_acknowledge and not self._stopping:
                self._queue_ack(event.status)
        elif isinstance(event, m.Failure):
            await self._callback("agent_lost", f.agent_lost(self, event.agent_id))
        elif isinstance(event, m.ErrorEvent):
            await self._callback("error", f.error(self, event.code, event.message))
        # HEARTBEAT only proves the stream alive; reading it was enough.

    def _queue_ack(self, status: TaskStatus) -> None:
        """Acknowledge in the background: one ACKNOWLEDGE in flight, carrying every update queued meanwhile."""
        self._acks.setdefault((status.task_id, status.uuid), status)
        if self._ack_job is None or self._ack_job.done():
            self._ack_job = asyncio.create_task(self._send_acks(), name=f"edgerm-acks-{self._name}")

    async def _send_acks(self) -> None:
        while self._acks and not self._stopping:
            keys = list(itertools.islice(self._acks, ACKS_PER_CALL))
            batch = [self._acks.pop(k) for k in keys]
            try:
                await self._acknowledge_batch(batch)
            except NotSubscribed:  # the stream dropped: the master re-sends them on the next one
                log.debug("framework %s: %d acknowledgement(s) dropped while not subscribed", self._name, len(batch))
            except WireError as e:  # the master re-sends them; nothing is lost
                log.warning("framework %s: acknowledgement of %d update(s) failed: %s", self._name, len(batch), e)

    async def _acknowledge_batch(self, statuses: list[TaskStatus]) -> None:
        first, rest = statuses[0], statuses[1:]
        more = tuple((s.agent_id, s.task_id, s.uuid) for s in rest)
        await self._call(m.Acknowledge(self._fid(), first.agent_id, first.task_id, first.uuid, more))

    async def flush_acknowledgements(self) -> None:
        """Wait until the acknowledgements queued so far were sent (or failed, to be re-sent by the master)."""
        while (job := self._ack_job) is not None and not job.done():
            await asyncio.wait([job])

    async def _callback(self, name: str, call: Coroutine[Any, Any, None]) -> bool:
        try:
            await call
        except Exception:
            log.exception("framework %s: callback %s raised", self._name, name)
            return False
        return True

    # -- calls -----------------------------------------------------------------

    def _headers(self, stream_id: str | None) -> dict[str, str]:
        headers = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE, **self._auth}
        if stream_id is not None:
            headers[STREAM_ID_HEADER] = stream_id
        return headers

    def _fid(self) -> FrameworkId:
        if self._framework_id is None or self._stream_id is None:
            raise NotSubscribed(f"framework {self._name} is not subscribed to {self._master_url}")
        return self._framework_id

    async def _call(self, call: m.SchedulerCall) -> None:
        """POST ``call``; a refusal for the call rate is retried after the wait the master names (module doc)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._call_timeout
        while True:
            try:
                await self._post(call)
                return
            except LimitExceeded as e:
                wait = _rate_retry(e.message)
                if wait is None or loop.time() + wait > deadline:
                    raise
                await asyncio.sleep(wait)

    async def _post(self, call: m.SchedulerCall) -> None:
        http, stream_id = self._http, self._stream_id
        if http is None or stream_id is None:
            raise NotSubscribed(f"framework {self._name} is not subscribed to {self._master_url}")
        try:
            async with http.post(
                self._url,
                data=encode_call(call),
                headers=self._headers(stream_id),
                timeout=aiohttp.ClientTimeout(total=self._call_timeout),
            ) as resp:
                if resp.status not in (200, 202):
                    await raise_for_reply(resp)
        except TimeoutError:
            raise Unavailable(f"master {self._master_url} did not answer within {self._call_timeout}s") from None
        except aiohttp.ClientError as e:
            raise Unavailable(f"master {self._master_url} unreachable: {e}") from None

    async def accept(
        self, offer_ids: Iterable[OfferId], tasks: Iterable[TaskInfo], filters: Filters | None = None
    ) -> None:
        fid = self._fid()
        owned = tuple(t if t.framework_id else dataclasses.replace(t, framework_id=fid) for t in tasks)
        await self._call(m.Accept(fid, tuple(offer_ids), owned, filters or Filters()))

    async def decline(self, offer_ids: Iterable[OfferId], refuse_seconds: float = 5.0) -> None:
        await self._call(m.Decline(self._fid(), tuple(offer_ids), Filters(refuse_seconds)))

    async def kill(self, task_id: TaskId, agent_id: AgentId | None = None) -> None:
        await self._call(m.Kill(self._fid(), task_id, agent_id or AgentId("")))

    async def acknowledge(self, status: TaskStatus) -> None:
        await self._call(m.Acknowledge(self._fid(), status.agent_id, status.task_id, status.uuid))

    async def revive(self) -> None:
        await self._call(m.Revive(self._fid()))

    async def suppress(self) -> None:
        await self._call(m.Suppress(self._fid()))

    async def reconcile(self, tasks: Iterable[tuple[TaskId, AgentId]] = ()) -> None:
        await self._call(m.Reconcile(self._fid(), tuple(tasks)))

    async def stop(self, teardown: bool = True) -> None:
        """Stop dispatching and close the stream; :meth:`run` then returns.

        With ``teardown`` the master first removes the framework and kills
        its tasks; if that call fails the driver still stops, and the error
        is raised. Safe to call from a callback, another task, or twice.
        """
        if self._stopping:
            return
        error: WireError | None = None
        if not teardown and asyncio.current_task() is not self._ack_job:
            await self.flush_acknowledgements()  # the next process then gets fewer updates again
        if teardown and self._framework_id is not None:
            self._tearing_down = True
            try:
                await self._call(m.Teardown(self._framework_id))
            except WireError as e:
                error = e
        self._stopping = True
        task = self._task
        if task is not None and not task.done() and asyncio.current_task() is not task:
            task.cancel()
            await asyncio.wait([task])
        acks = self._ack_job
        if acks is not None and not acks.done() and asyncio.current_task() is not acks:
            acks.cancel()
            await asyncio.wait([acks])
        if error is not None:
            raise error


def _rate_retry(message: str) -> float | None:
    """The wait a call-rate refusal names (at least 5 ms, with jitter), or None for any other limit."""
    found = _RETRY_IN.search(message)
    if found is None:
        return None
    return max(float(found.group(1)), 0.005) * (1.0 + random.random())
