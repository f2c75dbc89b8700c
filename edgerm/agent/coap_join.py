"""A CoAP agent's OSCORE context: from its work dir, else by joining over HTTP(S).

Role: :func:`coap_security` gives :func:`edgerm.agent.main.start_agent` the
OSCORE security context its :class:`~edgerm.agent.coap_transport.CoapAgentTransport`
protects every request with, and the ``renew`` callback the transport calls
when the master refuses that context. Order:

1. the context saved in the work dir by an earlier join, for this CoAP
   master URL and agent id (``WORK_DIR/oscore``, :mod:`edgerm.auth.oscore_contexts`);
2. else, with a join token (``--join-token``, ``$EDGERM_JOIN_TOKEN``, an
   in-process master's) and the master's HTTP(S) URL to join at
   (``--join-url``, ``$EDGERM_JOIN_URL``, an in-process master's), a join
   with ``"coap": true``: the token is saved as ``credential.json`` and the
   context in ``WORK_DIR/oscore`` (mode 0600) before either is used;
3. else None: plain CoAP, which only an ``--insecure`` master accepts.

Rules:
- The join travels over HTTP(S), never over CoAP: the join token and the
  context's master secret cross the link once, inside TLS when the join URL
  is https (it should be, outside a lab).
- A join token without a join URL is a ConfigError (the agent will not guess
  where to send its secret).
- ``renew`` joins again (a revoked, replaced or expired credential, a master
  that lost its state dir); if that fails the old context stays in use and
  the error is logged, so an attacker's forged 4.01 costs one join attempt.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from edgerm.auth import join as joining
from edgerm.auth import local
from edgerm.auth import oscore_contexts as contexts
from edgerm.auth.client import resolve_token
from edgerm.auth.principal import Role
from edgerm.errors import ConfigError, TransportError, WireError
from edgerm.ids import AgentId

log = logging.getLogger(__name__)

JOIN_URL_ENV = "EDGERM_JOIN_URL"
RENEW_DEADLINE = 30.0  # seconds a re-join keeps retrying before the old context stays in use

Renew = Callable[[], Awaitable[Any | None]]


def join_url_for(coap_url: str, flag: str | None) -> str | None:
    """Where a CoAP agent joins: ``--join-url``, ``$EDGERM_JOIN_URL``, or an in-process master's HTTP URL."""
    return flag or os.environ.get(JOIN_URL_ENV) or local.join_url(coap_url)


async def _join(
    coap_url: str,
    join_url: str,
    join_token: str,
    work_dir: Path,
    agent_id: AgentId,
    ssl_context: ssl.SSLContext | None,
    deadline: float | None,
) -> Any:
    async def attempt() -> tuple[str, object]:
        return await joining.join_coap(join_url, join_token, agent_id, ssl_context=ssl_context)

    token, doc = await joining.retrying(attempt, f"CoAP agent {agent_id} at {join_url}", deadline)
    try:
        material = contexts.OscoreMaterial.from_json(doc)
    except WireError as e:
        raise TransportError(f"{join_url}: {e.message}") from None
    joining.save(work_dir, join_url, agent_id, token)
    await asyncio.to_thread(contexts.save_agent_context, work_dir, coap_url, agent_id, material)
    context = await asyncio.to_thread(contexts.load_agent_context, work_dir, coap_url, agent_id, cleanup=False)
    if context is None:
        raise ConfigError(f"{work_dir}: the OSCORE context just saved does not load")
    log.info(
        "agent %s joined %s for CoAP; its OSCORE context is in %s", agent_id, join_url, work_dir / contexts.CONTEXTS_DIR
    )
    return context


async def coap_security(
    coap_url: str,
    work_dir: Path,
    agent_id: AgentId,
    *,
    join_token: str | None = None,
    join_url: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    deadline: float | None = None,
) -> tuple[Any | None, Renew | None]:
    """The agent's OSCORE context (None: plain CoAP) and how to renew it (module docstring)."""
    url = join_url_for(coap_url, join_url)
    context = await asyncio.to_thread(contexts.load_agent_context, work_dir, coap_url, agent_id)
    token = resolve_token(join_token, url or coap_url, Role.JOIN)
    if token and not url:
        raise ConfigError(
            f"a CoAP agent joins over HTTP(S): give --join-url (or ${JOIN_URL_ENV}) with the master's https:// URL"
        )
    if context is None and token and url:
        context = await _join(coap_url, url, token, work_dir, agent_id, ssl_context, deadline)
    if context is None:
        log.warning(
            "agent %s has no OSCORE context and no join token: only an --insecure master accepts plain CoAP "
            "(give --join-token and --join-url)",
            agent_id,
        )
        return None, None

    async def renew() -> Any | None:
        fresh_url = join_url_for(coap_url, join_url)
        fresh_token = resolve_token(join_token, fresh_url, Role.JOIN) if fresh_url else None
        if not fresh_url or not fresh_token:
            log.error("the master refused this agent's OSCORE context; re-join with --join-token and --join-url")
            return None
        try:
            deadline = time.monotonic() + RENEW_DEADLINE
            return await _join(coap_url, fresh_url, fresh_token, work_dir, agent_id, ssl_context, deadline)
        except (WireError, TransportError, ConfigError) as e:
            log.error("the master refused this agent's OSCORE context and re-joining failed: %s", e)
            return None

    return context, renew
