"""OSCORE (RFC 8613) in front of the master's CoAP site: who is calling, before anything is decoded.

Role: on a secure master every CoAP request must be OSCORE-protected with
the context an agent got when it joined (:mod:`edgerm.auth.oscore_contexts`).
:class:`OscoreSite` wraps the routing table (:func:`edgerm.master.coap.make_site`):
it finds the context by the request's key id, verifies and decrypts the
request (aiocoap's ``CanUnprotect.unprotect``, which also checks the replay
window), renders the inner request with the inner site, and protects every
response (``CanProtect.protect``). :class:`CoapSecurity` answers, for an
inner request, which principal sent it, and checks it as the HTTP adapter
does (:mod:`edgerm.auth.policy`, :mod:`edgerm.auth.limits`).

Replies, all typed (``edgerm.v1.Error`` payloads) and counted:
- no OSCORE option: 4.01 UNAUTHENTICATED, unprotected;
- an unknown key id: 4.01 UNAUTHENTICATED, unprotected;
- a replayed sequence number: 4.01 UNAUTHENTICATED, unprotected, and the
  request is not rendered (nothing changes); after a restart without a
  persisted replay window aiocoap's protected 4.01 with Echo (Appendix B.1.2),
  which the agent's aiocoap answers by itself;
- a request that does not decrypt (tampered, wrong key): 4.00 BAD_REQUEST
  (``MalformedMessage``), unprotected, not rendered;
- a context whose agent credential was revoked, replaced or expired: 4.01
  UNAUTHENTICATED, protected (the agent can trust it and re-join);
- over the principal's call rate: 4.29, protected;
- a call that speaks for another agent id: 4.03 FORBIDDEN, protected
  (:meth:`CoapSecurity.agent_call`, :meth:`CoapSecurity.agent_path`).
A NON request that fails before rendering is dropped, as RFC 8613 §8.2 says.

Rules:
- No crypto here: every cryptographic step is aiocoap's.
- The inner site is awaited in the same task (no extra task per request);
  its responses are protected as they come, so observations work
  unchanged (outer Observe = the context's sender sequence number, as
  aiocoap's own ``OscoreSiteWrapper`` does).
- The unprotected request's ``remote`` is aiocoap's ``OSCOREAddress``, whose
  security context names the agent (its recipient id); nothing else carries
  identity.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import aiocoap
import aiocoap.error
from aiocoap import oscore
from aiocoap.transports.oscore import OSCOREAddress

from edgerm import messages as m
from edgerm.auth.oscore_contexts import AgentContexts
from edgerm.auth.policy import check_view
from edgerm.auth.principal import Principal
from edgerm.errors import Forbidden, MalformedMessage, Unauthenticated, WireError
from edgerm.ids import AgentId
from edgerm.master.http_auth import HttpSecurity

log = logging.getLogger(__name__)

_OSCORE_CODES = (aiocoap.POST, aiocoap.FETCH)


class CoapSecurity:
    """Authentication (by OSCORE context) and authorization of CoAP agent requests."""

    def __init__(self, security: HttpSecurity, contexts: AgentContexts, clock: Callable[[], float] = time.time) -> None:
        self.security = security
        self.contexts = contexts
        self._clock = clock

    def principal_for_kid(self, kid: bytes) -> Principal | None:
        return self.contexts.principal(kid, self.security.store.credentials, self._clock())

    def principal(self, request: aiocoap.Message) -> Principal:
        """The principal of an unprotected (inner) request; Unauthenticated if it was not protected."""
        remote = request.remote
        if not isinstance(remote, OSCOREAddress):
            raise Unauthenticated("this master accepts OSCORE-protected CoAP only: join to get a context")
        principal = self.principal_for_kid(remote.security_context.recipient_id)
        if principal is None:
            raise Unauthenticated("the credential of this OSCORE context was revoked or expired: join again")
        return principal

    def agent_call(self, request: aiocoap.Message, call: m.AgentCall) -> None:
        """Forbidden unless the call speaks for the context's own agent id."""
        self.security.policy.agent_call(self.principal(request), call)

    def agent_path(self, request: aiocoap.Message, agent_id: AgentId) -> None:
        """Forbidden unless ``/agents/{agent_id}/...`` is the context's own agent's resource."""
        principal = self.principal(request)
        check_view(principal, "agent")
        if principal.agent_id != agent_id:
            raise Forbidden(f"{principal} speaks for agent {principal.agent_id}, not {agent_id!r}")

    def modules(self, request: aiocoap.Message) -> None:
        check_view(self.principal(request), "modules")


class _ProtectingPipe:
    """The pipe the inner site renders into: each response is protected, then sent."""

    __slots__ = ("_context", "_outer", "_seqno", "request")

    def __init__(self, outer: Any, request: aiocoap.Message, context: Any, seqno: Any) -> None:
        self._outer = outer
        self.request = request
        self._context = context
        self._seqno = seqno

    def add_response(self, message: aiocoap.Message, is_last: bool = False) -> None:
        if not is_last:
            message.opt.observe = 0  # the inner Observe; the outer one orders notifications
        protected, _ = self._context.protect(message, self._seqno)
        if message.opt.observe is not None:
            protected.opt.observe = self._context.sender_sequence_number & 0xFFFFFFFF
        self._outer.add_response(protected, is_last=is_last)

    def on_interest_end(self, callback: Callable[[], None]) -> None:
        self._outer.on_interest_end(callback)


class Heartbeats(Protocol):
    """What the fast path asks the inner site (``edgerm.master.coap._AgentCalls``)."""

    def heartbeat_of(self, request: aiocoap.Message) -> m.AgentHeartbeat | None: ...

    def answer_heartbeat(self, request: aiocoap.Message, call: m.AgentHeartbeat) -> aiocoap.Message: ...


class OscoreSite:
    """An aiocoap resource that serves ``inner`` to OSCORE-protected requests only."""

    def __init__(
        self,
        inner: Any,
        security: CoapSecurity,
        error: Callable[[WireError], aiocoap.Message],
        heartbeats: Heartbeats | None = None,
    ) -> None:
        self._inner = inner
        self._security = security
        self._error = error  # the adapter's typed, counted error reply
        self._heartbeats = heartbeats

    def answer_now(self, request: aiocoap.Message) -> aiocoap.Message | None:
        """The protected reply to a protected single-datagram HEARTBEAT, made at once; None for anything else.

        Called by the message layer for a new CON request
        (:func:`edgerm.master.coap_state.bound_server_state`), before
        aiocoap's token manager, pipe and render task are made for it: with
        them, a secured heartbeat cost 760 us of master CPU against 270 for
        a plain one, and 10,000 OSCORE agents overloaded two cores. The
        request is verified and decrypted as :meth:`render_to_pipe` does
        (aiocoap's ``unprotect``, the replay window included); if it turns
        out to be anything but a heartbeat of a principal in good standing,
        or anything fails, the context's replay window is put back as it was
        and None sends the datagram the usual way, which decrypts it again
        and answers it exactly as before (that costs a second decryption, for
        REGISTER, UPDATE and confirmations only). A heartbeat is rate-limited
        and checked for its principal (:meth:`CoapSecurity.agent_call`) like
        any call; a refusal is the same protected typed error.
        """
        heartbeats = self._heartbeats
        opt = request.opt
        if (
            heartbeats is None
            or request.code != aiocoap.POST
            or opt.oscore is None
            or opt.observe is not None
            or opt.block1 is not None
            or opt.block2 is not None
            or opt.no_response is not None
        ):
            return None
        try:
            unprotected = oscore.verify_start(request)
        except (oscore.NotAProtectedMessage, oscore.ProtectionInvalid):
            return None
        kid = unprotected.get(oscore.COSE_KID)
        context = self._security.contexts.opened(kid) if isinstance(kid, bytes) else None
        if context is None:  # not open yet (made before this master started): opened off the loop, the usual way
            return None
        window = context.recipient_replay_window
        before = (window._index, window._bitfield)
        try:
            inner, seqno = context.unprotect(request)
            inner.remote = OSCOREAddress(context, request.remote)
            call = heartbeats.heartbeat_of(inner)
            principal = self._security.principal_for_kid(kid) if call is not None else None
        except Exception:  # replayed, undecryptable, malformed inside: the usual way says so
            call = principal = None
        if call is None or principal is None:
            window._index, window._bitfield = before
            return None
        try:
            self._security.security.take_call(principal)
        except WireError as e:
            reply = self._error(e)
        else:
            reply = heartbeats.answer_heartbeat(inner, call)
        protected, _ = context.context_for_response().protect(reply, seqno)
        return protected

    def get_resources_as_linkheader(self) -> Any:
        return self._inner.get_resources_as_linkheader()

    async def needs_blockwise_assembly(self, request: aiocoap.Message) -> bool:
        return False  # outer block-wise is not used; the inner site assembles its own blocks

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        raise RuntimeError("OscoreSite renders through render_to_pipe only")

    def _refuse(self, pipe: Any, error: WireError, code: aiocoap.Code | None = None) -> None:
        """An unprotected typed refusal (to CON requests; a NON one gets nothing)."""
        if pipe.request.mtype != aiocoap.CON:
            self._error(error)  # still counted
            return
        message = self._error(error)
        if code is not None:
            message.code = code
        pipe.add_response(message, is_last=True)

    async def render_to_pipe(self, pipe: Any) -> None:
        request = pipe.request
        try:
            unprotected = oscore.verify_start(request)
        except oscore.NotAProtectedMessage:
            self._refuse(pipe, Unauthenticated("this master accepts OSCORE-protected CoAP only: join to get a context"))
            return
        except oscore.ProtectionInvalid:
            self._refuse(pipe, MalformedMessage("the OSCORE option does not parse"))
            return
        if request.code not in _OSCORE_CODES:
            raise aiocoap.error.MethodNotAllowed()
        kid = unprotected.get(oscore.COSE_KID)
        context = await self._security.contexts.ready(kid) if isinstance(kid, bytes) else None
        if context is None:
            self._refuse(pipe, Unauthenticated("no OSCORE context for this key id: join to get one"))
            return
        try:
            inner, seqno = context.unprotect(request)
        except oscore.ReplayErrorWithEcho as e:
            pipe.add_response(e.to_message(), is_last=True)  # B.1.2 recovery, protected by aiocoap
            return
        except oscore.ReplayError:
            log.debug("replayed OSCORE request from kid %s refused", kid.hex())
            self._refuse(pipe, Unauthenticated("replayed OSCORE request"))
            return
        except oscore.ProtectionInvalid:  # DecodeError included: tampered, truncated, wrong key
            self._refuse(pipe, MalformedMessage("the OSCORE request does not verify"))
            return
        inner.remote = OSCOREAddress(context, request.remote)
        response_context = context.context_for_response()
        out = _ProtectingPipe(pipe, inner, response_context, seqno)
        try:
            principal = self._security.principal_for_kid(kid)
            if principal is None:
                raise Unauthenticated("the credential of this OSCORE context was revoked or expired: join again")
            self._security.security.take_call(principal)
        except WireError as e:
            out.add_response(self._error(e), is_last=True)
            return
        try:
            await self._inner.render_to_pipe(out)
        except aiocoap.error.RenderableError as e:  # aiocoap's own replies (4.05, block-wise states)
            out.add_response(e.to_message(), is_last=True)
        except Exception:  # the outermost boundary of the inner site: log, answer 5.00 (protected)
            log.exception("internal error rendering an OSCORE request from agent %s", principal.agent_id)
            out.add_response(aiocoap.Message(code=aiocoap.INTERNAL_SERVER_ERROR), is_last=True)
