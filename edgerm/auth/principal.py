"""Principals: who is calling, as every transport adapter sees it.

Role: the small interface shared by the HTTP adapter, the CoAP adapter and
the MQTT broker. A transport extracts a token from its request (a bearer
header, an OSCORE context, an MQTT password), asks an :class:`Authenticator`
for the :class:`Principal` behind it, and hands that principal to
:mod:`edgerm.auth.policy` with the decoded call.

Rules:
- Pure: no I/O, no clock (an authenticator that checks expiry is given a
  clock), no asyncio.
- A principal is immutable and carries its binding: an ``agent`` principal
  speaks only for ``agent_id``; a ``framework`` principal bound to a
  ``framework_id`` may only use that id (unbound ones own the ids the
  master generates for them, :class:`edgerm.auth.policy.FrameworkOwners`).
- ``None`` from :meth:`Authenticator.principal_for_token` means "no such
  credential, or expired": the transport answers ``Unauthenticated`` and
  says no more (which of the two is not revealed).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from edgerm.ids import AgentId, FrameworkId


class Role(StrEnum):
    """What a credential is for. Stored by value in the credentials file."""

    AGENT = "agent"  # an agent: REGISTER/HEARTBEAT/UPDATE/SUBSCRIBE for its own id, module downloads
    FRAMEWORK = "framework"  # a scheduler: SUBSCRIBE and calls on the frameworks it owns; its share of the state
    ADMIN = "admin"  # an operator: the whole state, metrics, dashboard; may tear any framework down
    METRICS = "metrics"  # a read-only scrape token: /metrics only
    JOIN = "join"  # a bootstrap token: POST /api/v1/join only, which mints an agent credential


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: its credential's name, role and binding."""

    name: str
    role: Role
    agent_id: AgentId | None = None  # agents: the only id this principal speaks for
    framework_id: FrameworkId | None = None  # frameworks: the only id it may use (None: ids the master gives it)

    def __str__(self) -> str:
        return f"{self.role.value}:{self.name}"


#: The principal of every request when the master runs with ``--insecure``.
INSECURE = Principal("insecure", Role.ADMIN)


class Authenticator(Protocol):
    """Turns a presented token into a principal (the one lookup every transport makes)."""

    def principal_for_token(self, token: str) -> Principal | None:
        """The principal behind ``token``, or None if it is unknown, revoked or expired."""
        ...
