"""Every error edgerm raises on purpose, in one tree.

::

    EdgermError
    ├── WireError                 answered to a peer; knows its HTTP status,
    │   │                         CoAP code and wire ``Error.Code``
    │   ├── MalformedMessage      400  4.00  body is not a valid message
    │   ├── UnknownCall           400  4.00  call type missing or unknown
    │   ├── MessageTooLarge       413  4.13  body over the size limit
    │   ├── NotSubscribed         403  4.03  framework not subscribed
    │   ├── UnknownAgent          404  4.04  agent not registered
    │   ├── UnknownOffer          404  4.04  offer never existed or rescinded
    │   ├── OfferExpired          410  4.04  offer timed out
    │   ├── OfferNotYours         403  4.03  offer belongs to another framework
    │   ├── InsufficientResources 422  4.22  tasks ask more than the offers hold
    │   ├── InvalidTask           422  4.22  a task description is wrong
    │   ├── UnknownTask           404  4.04  no such task
    │   ├── Conflict              409  4.09  e.g. a duplicate task id
    │   ├── Unavailable           503  5.03  shutting down / not ready
    │   ├── Unauthenticated       401  4.01  no valid credential
    │   ├── Forbidden             403  4.03  the principal may not do this
    │   ├── LimitExceeded         429  4.29  a configured limit or rate was reached
    │   ├── NotFound              404  4.04  no such path or module (wire code
    │   │                                    CODE_UNSPECIFIED: no call failed)
    │   └── AgentTimeout          504  5.04  an agent did not answer in time
    │                                        (CODE_UNSPECIFIED, operator APIs only)
    ├── ConfigError               a config file or flag is wrong
    │   └── WorkDirInUse          another agent holds this work dir
    ├── IllegalTransition         a state machine was asked for a move its
    │                             table forbids (nothing changed)
    ├── RuntimeFailure            a runtime could not run a task (agent side)
    ├── StateError                an operator's state cannot be checkpointed
    │                             (not JSON, or over the size limit)
    └── TransportError            the peer could not be reached or the
                                  connection broke (no typed reply came)

A ``WireError`` raised anywhere below a transport adapter is turned into a
typed reply by that adapter (:func:`edgerm.wire.error_to_pb`); lower-layer
exceptions (protobuf, aiohttp, aiocoap) are mapped to these at the adapter
boundary and never cross it.
"""

from __future__ import annotations

from typing import ClassVar


def _coap(cls: int, detail: int) -> int:
    """CoAP response code ``c.dd`` as its one-byte number (RFC 7252 §3)."""
    return cls * 32 + detail


class EdgermError(Exception):
    """Root of edgerm's own errors."""


class WireError(EdgermError):
    """An error that is answered to the peer as a typed reply."""

    code: ClassVar[str] = "CODE_UNSPECIFIED"  # name in edgerm.v1.Error.Code
    http_status: ClassVar[int] = 400
    coap_code: ClassVar[int] = _coap(4, 0)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedMessage(WireError):
    code, http_status, coap_code = "MALFORMED", 400, _coap(4, 0)


class UnknownCall(WireError):
    code, http_status, coap_code = "UNKNOWN_CALL", 400, _coap(4, 0)


class MessageTooLarge(WireError):
    code, http_status, coap_code = "TOO_LARGE", 413, _coap(4, 13)


class NotSubscribed(WireError):
    code, http_status, coap_code = "NOT_SUBSCRIBED", 403, _coap(4, 3)


class UnknownAgent(WireError):
    code, http_status, coap_code = "UNKNOWN_AGENT", 404, _coap(4, 4)


class UnknownOffer(WireError):
    code, http_status, coap_code = "UNKNOWN_OFFER", 404, _coap(4, 4)


class OfferExpired(WireError):
    code, http_status, coap_code = "OFFER_EXPIRED", 410, _coap(4, 4)


class OfferNotYours(WireError):
    code, http_status, coap_code = "OFFER_NOT_YOURS", 403, _coap(4, 3)


class InsufficientResources(WireError):
    code, http_status, coap_code = "INSUFFICIENT_RESOURCES", 422, _coap(4, 22)


class InvalidTask(WireError):
    code, http_status, coap_code = "INVALID_TASK", 422, _coap(4, 22)


class UnknownTask(WireError):
    code, http_status, coap_code = "UNKNOWN_TASK", 404, _coap(4, 4)


class Conflict(WireError):
    code, http_status, coap_code = "CONFLICT", 409, _coap(4, 9)


class Unavailable(WireError):
    code, http_status, coap_code = "UNAVAILABLE", 503, _coap(5, 3)


class Unauthenticated(WireError):
    code, http_status, coap_code = "UNAUTHENTICATED", 401, _coap(4, 1)


class Forbidden(WireError):
    code, http_status, coap_code = "FORBIDDEN", 403, _coap(4, 3)


class LimitExceeded(WireError):
    """A configured limit (tasks per agent, frameworks, pending updates) or a
    rate per principal was reached. CoAP 4.29 is RFC 8516's Too Many Requests."""

    code, http_status, coap_code = "LIMIT_EXCEEDED", 429, _coap(4, 29)


class NotFound(WireError):
    """No resource at this path, or no module with this hash (not a call error).

    Its wire code stays ``CODE_UNSPECIFIED``, so it is not in
    :data:`WIRE_ERRORS`: a peer receiving it gets a plain ``WireError``.
    """

    code, http_status, coap_code = "CODE_UNSPECIFIED", 404, _coap(4, 4)


class AgentTimeout(WireError):
    """An agent did not answer the master in time (e.g. a request for a task's logs).

    Like :class:`NotFound` it has no wire code of its own: it is an answer
    to an operator's HTTP request, never sent to an agent or framework.
    """

    code, http_status, coap_code = "CODE_UNSPECIFIED", 504, _coap(5, 4)


WIRE_ERRORS: dict[str, type[WireError]] = {
    cls.code: cls
    for cls in (
        MalformedMessage,
        UnknownCall,
        MessageTooLarge,
        NotSubscribed,
        UnknownAgent,
        UnknownOffer,
        OfferExpired,
        OfferNotYours,
        InsufficientResources,
        InvalidTask,
        UnknownTask,
        Conflict,
        Unavailable,
        Unauthenticated,
        Forbidden,
        LimitExceeded,
    )
}


class ConfigError(EdgermError):
    """A configuration file or flag is invalid; the message names where."""


class IllegalTransition(EdgermError):
    """A pure core was asked for a transition its table forbids; its state is unchanged."""


class WorkDirInUse(ConfigError):
    """Another agent process holds the work dir's lock; the message names the dir and its pid."""


class RuntimeFailure(EdgermError):
    """A runtime could not start or run a task; becomes a FAILED status."""


class StateError(EdgermError):
    """A dataflow operator's state that cannot be checkpointed: not JSON, or over the checkpoint size limit."""


class TransportError(EdgermError):
    """No answer: connection refused or dropped, timeout, or an untyped reply.

    Raised by client transports (the agent's) instead of lower-layer
    exceptions; the caller retries later. A typed error reply is a
    ``WireError`` instead.
    """
