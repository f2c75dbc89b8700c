"""The agent's side of joining: a join token in, the agent's own credential out.

Role: :func:`agent_token` gives :func:`edgerm.agent.main.start_agent` the
token its transport presents. Order: an explicit ``--token``; else the
credential saved in the work dir by an earlier join (``credential.json``,
mode 0600, for this master URL and agent id); else, with a join token
(``--join-token``, an in-process master's, ``$EDGERM_JOIN_TOKEN``), a
``POST /api/v1/join`` whose answer is saved there; else None (only an
``--insecure`` master accepts that).

A CoAP agent joins the same way with ``"coap": true`` (:func:`join_coap`)
and also gets its OSCORE context (:mod:`edgerm.agent.coap_join` keeps it).

Rules:
- The credential is bound to the agent id the agent sends (its work dir's
  id): it is written to disk before it is used, and never logged.
- A refused join raises its typed error (``Unauthenticated`` for a bad join
  token, ``Forbidden`` when the id already joined); no answer raises
  ``TransportError``; a master certificate that does not verify raises
  ``ConfigError`` at once. :func:`agent_token` retries what may pass later (no
  answer, ``Unavailable``, ``LimitExceeded``: a master not up yet, or a
  whole fleet joining at once) with a capped, jittered backoff until its
  ``deadline`` (None: for ever), as registering does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import aiohttp

from edgerm.auth.client import bearer, resolve_token
from edgerm.auth.principal import Role
from edgerm.errors import ConfigError, LimitExceeded, MalformedMessage, TransportError, Unavailable, WireError
from edgerm.ids import AgentId
from edgerm.wire import decode_error, raise_error

log = logging.getLogger(__name__)
T = TypeVar("T")

CREDENTIAL_FILE = "credential.json"
JOIN_PATH = "/api/v1/join"
JOIN_TIMEOUT = 10.0  # seconds for the whole join call
BACKOFF_INITIAL, BACKOFF_MAX = 0.2, 5.0  # seconds between join attempts that may pass later


def load_saved(work_dir: Path, master_url: str, agent_id: AgentId) -> str | None:
    """The token an earlier join saved for this master and agent id, if any."""
    try:
        doc = json.loads((work_dir / CREDENTIAL_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("agent_id") != agent_id:
        return None
    if doc.get("master", "").rstrip("/") != master_url.rstrip("/"):
        return None
    token = doc.get("token")
    return token if isinstance(token, str) and token else None


def save(work_dir: Path, master_url: str, agent_id: AgentId, token: str) -> None:
    """Write the credential (mode 0600 from the start, replaced atomically)."""
    path = work_dir / CREDENTIAL_FILE
    tmp = path.with_name(f".{CREDENTIAL_FILE}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"master": master_url.rstrip("/"), "agent_id": agent_id, "token": token}, f)
    os.replace(tmp, path)


def forget(work_dir: Path) -> None:
    """Drop a saved credential the master no longer accepts (so the next start joins again)."""
    with contextlib.suppress(FileNotFoundError):
        (work_dir / CREDENTIAL_FILE).unlink()


async def _post_join(
    master_url: str, join_token: str, body: dict[str, object], ssl_context: ssl.SSLContext | None
) -> dict[str, object]:
    """``POST /api/v1/join``: the JSON answer (with its token checked)."""
    url = master_url.rstrip("/") + JOIN_PATH
    timeout = JOIN_TIMEOUT
    headers = {"Content-Type": "application/json", **bearer(join_token)}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.post(url, data=json.dumps(body), headers=headers, ssl=ssl_context or True) as resp,
        ):
            answer = await resp.read()
            if resp.status != 200:
                _raise(resp.status, resp.content_type, answer, url)
    except TimeoutError:
        raise TransportError(f"{url}: no answer within {timeout}s") from None
    except aiohttp.ClientConnectorCertificateError as e:  # not worth retrying: a wrong --ca, or an impostor
        raise ConfigError(f"{url}: the master's certificate does not verify: {e.certificate_error}") from None
    except aiohttp.ClientError as e:
        raise TransportError(f"{url}: {e or type(e).__name__}") from None
    try:
        doc = json.loads(answer)
        token = doc["token"]
    except (ValueError, KeyError, TypeError):
        raise TransportError(f"{url}: the join answer has no token") from None
    if not isinstance(token, str) or not token:
        raise TransportError(f"{url}: the join answer has no token")
    return dict(doc)


async def join(
    master_url: str, join_token: str, agent_id: AgentId, *, ssl_context: ssl.SSLContext | None = None
) -> str:
    """``POST /api/v1/join``: the new agent token bound to ``agent_id``."""
    doc = await _post_join(master_url, join_token, {"agent_id": agent_id}, ssl_context)
    return str(doc["token"])


async def join_coap(
    master_url: str, join_token: str, agent_id: AgentId, *, ssl_context: ssl.SSLContext | None = None
) -> tuple[str, object]:
    """``POST /api/v1/join`` for a CoAP agent: its token and its OSCORE context (the answer's ``oscore``)."""
    doc = await _post_join(master_url, join_token, {"agent_id": agent_id, "coap": True}, ssl_context)
    if "oscore" not in doc:
        raise TransportError(f"{master_url}: the join answer has no OSCORE context (an older master?)")
    return str(doc["token"]), doc["oscore"]


async def retrying(attempt: Callable[[], Awaitable[T]], what: str, deadline: float | None) -> T:
    """Run a join ``attempt``, retrying what may pass later (see the module docstring) until ``deadline``."""
    backoff = BACKOFF_INITIAL
    while True:
        try:
            return await attempt()
        except (TransportError, Unavailable, LimitExceeded) as e:
            if deadline is not None and time.monotonic() + backoff > deadline:
                raise
            log.warning("%s cannot join yet (%s); retrying in %.1fs", what, e, backoff)
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, BACKOFF_MAX)
        except WireError as e:
            raise type(e)(f"joining as {what}: {e.message}") from None


def _raise(status: int, content_type: str, body: bytes, url: str) -> None:
    if content_type == "application/x-protobuf" and body:
        try:
            error = decode_error(body)
        except MalformedMessage:
            error = None
        if error is not None and error.code != "CODE_UNSPECIFIED":
            raise_error(error)
    raise TransportError(f"{url}: HTTP {status} {body[:200].decode('utf-8', 'replace').strip()}".rstrip())


async def agent_token(
    master_url: str,
    work_dir: Path,
    agent_id: AgentId,
    *,
    token: str | None = None,
    join_token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    deadline: float | None = None,
) -> str | None:
    """The token this agent presents (see the module docstring for the order).

    ``deadline``: ``time.monotonic()`` after which a join that keeps failing
    for a reason that may pass raises its last error.
    """
    if token:
        return token
    saved = load_saved(work_dir, master_url, agent_id)
    if saved is not None:
        return saved
    join_token = resolve_token(join_token, master_url, Role.JOIN)
    if not join_token:
        return None
    secret = join_token

    async def attempt() -> str:
        return await join(master_url, secret, agent_id, ssl_context=ssl_context)

    token = await retrying(attempt, f"agent {agent_id} at {master_url}", deadline)
    save(work_dir, master_url, agent_id, token)
    log.info("agent %s joined %s; its credential is in %s", agent_id, master_url, work_dir / CREDENTIAL_FILE)
    return token
