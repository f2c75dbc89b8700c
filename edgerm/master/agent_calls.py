"""``POST /api/v1/agent`` whatever serves the HTTP: the checks and steps both servings share.

The master serves agents' calls in two ways: on aiohttp (:mod:`edgerm.master.http`, for anything
unusual: a chunked body, HTTP/1.0, a test's ``make_app``) and on the connection itself
(:mod:`edgerm.master.agent_http`, the fleet's steady state). :class:`AgentCalls` is what they
share, so a call is checked the same way on both:

- :meth:`authenticate`, :meth:`admit`: the ``Authorization`` header's principal
  (``Unauthenticated``; None when the master runs insecure), its role allowed on the agent API,
  one call of its rate spent (``Forbidden``, ``LimitExceeded``).
- :func:`check_content_type`, :func:`check_length`: the body's headers.
- :meth:`decode`: the call, then the policy (an agent speaks for
  its own id only).
- :meth:`open_stream` / :meth:`close_stream`: a SUBSCRIBE's command stream, counted against its
  principal's stream limit; :meth:`valid` says whether the principal may still hold it.
"""

from __future__ import annotations

from collections.abc import Callable

from edgerm import messages as m
from edgerm import wire
from edgerm.auth.policy import check_view
from edgerm.auth.principal import Principal
from edgerm.errors import MalformedMessage, MessageTooLarge, Unauthenticated
from edgerm.master.handlers import Handlers
from edgerm.master.http_auth import HttpSecurity, view_of
from edgerm.master.service import CommandStream

PROTOBUF = "application/x-protobuf"
AGENT_PATH = "/api/v1/agent"
_VIEW = view_of(AGENT_PATH)


def check_content_type(ctype: str) -> None:
    """MalformedMessage unless ``ctype`` (a Content-Type value) is protobuf's."""
    if ctype.partition(";")[0].strip().lower() != PROTOBUF:
        raise MalformedMessage(f"Content-Type must be {PROTOBUF}, got {ctype or 'none'!r}")


def check_length(length: int | None, limit: int) -> None:
    """MessageTooLarge if a declared body length is over ``limit``."""
    if length is not None and length > limit:
        raise MessageTooLarge(f"body of {length} bytes is over the limit of {limit} bytes")


class AgentCalls:
    """The agent API's checks and stream bookkeeping over ``handlers`` (``security`` None: insecure)."""

    __slots__ = ("handlers", "max_body", "security")

    def __init__(self, handlers: Handlers, max_body: int, security: HttpSecurity | None) -> None:
        self.handlers = handlers
        self.max_body = max_body
        self.security = security

    def authenticate(self, authorization: str) -> Principal | None:
        """The caller of an ``Authorization`` header's value (None when insecure; else ``Unauthenticated``)."""
        security = self.security
        if security is None:
            return None
        principal = security.bearer(authorization)
        if principal is None:
            raise Unauthenticated("a valid credential is required: send Authorization: Bearer TOKEN")
        return principal

    def admit(self, principal: Principal | None) -> None:
        """Checked as the aiohttp middleware checks it: its role allowed on the agent API, a call of its rate
        spent (``Forbidden``, ``LimitExceeded``)."""
        if principal is not None and self.security is not None:
            check_view(principal, _VIEW)
            self.security.take_call(principal)

    def decode(self, body: bytes, principal: Principal | None) -> m.AgentCall:
        """The call in ``body`` (its content type checked already), allowed for ``principal``."""
        call = wire.decode_agent_call(body)
        if principal is not None and self.security is not None:
            self.security.policy.agent_call(principal, call)
        return call

    def open_stream(
        self, call: m.SubscribeAgent, principal: Principal | None, end: Callable[[], object] | None = None
    ) -> tuple[CommandStream, int | None]:
        """The agent's command stream and its handle in the stream count (None when insecure).

        ``end`` ends the stream if the principal is revoked (default: cancel the current task).
        """
        security = self.security
        handle = None
        if security is not None and principal is not None:
            handle = security.open_stream(principal, call.agent_id, end)
        try:
            return self.handlers.agent_commands(call.agent_id), handle
        except BaseException:
            self.close_stream(handle)
            raise

    def close_stream(self, handle: int | None) -> None:
        if self.security is not None and handle is not None:
            self.security.close_stream(handle)

    def valid(self, principal: Principal | None) -> bool:
        """Whether ``principal`` may still hold its stream (always, insecure)."""
        return principal is None or self.security is None or self.security.store.valid(principal)
