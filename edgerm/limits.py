"""Bounds on every field that crosses the wire, in one place.

Role: :mod:`edgerm.wire` checks each decoded message against these limits
before it becomes an internal type, so nothing past the wire boundary ever
sees a non-finite number, an unbounded list or an id that cannot be used in
a CoAP path, a log line or a container name. A body is already bounded in
bytes by the transports (``--max-body``); these bound what one call may ask
the master to do and what it may store.

Rules:
- A field out of bounds is refused with :class:`~edgerm.errors.MalformedMessage`
  (a wrong value) or :class:`~edgerm.errors.MessageTooLarge` (too many items in
  one call). Nothing is clipped silently, except a status or error *message*
  (free text for humans): it is cut to :data:`MAX_MESSAGE` characters, so an
  agent's long stderr tail never turns its status update into one that is
  refused and retried forever.
- Numbers: NaN and +-inf are refused everywhere; durations lie in
  ``[0, MAX_SECONDS]``, scalar resources in ``[0, MAX_SCALAR]`` (so sums over
  a whole fleet stay finite).
- Ids (agent, framework, task, offer, status uuid): 1 to :data:`MAX_ID`
  characters of ``[A-Za-z0-9._:@+=~-]``, starting with a letter or digit (so
  never ``.``, ``..``, an option-like ``-x`` or a path).
- Names (framework, task, host) and free-text values: at most their length
  limit and no control characters. A framework name may not be empty.
- Resource and attribute names follow the text form of
  :meth:`edgerm.resources.Resources.parse`; label keys are
  ``[A-Za-z0-9][A-Za-z0-9._/-]*``.

The limits are documented in docs/protocol.md ("Limits").
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping

from edgerm.errors import MalformedMessage, MessageTooLarge

# -- sizes of one call -----------------------------------------------------------------

#: Task ids in one heartbeat, task statuses in one registration.
MAX_TASKS_PER_AGENT_CALL = 4096
#: Tasks launched by one ACCEPT.
MAX_TASKS_PER_ACCEPT = 1024
#: Offer ids in one ACCEPT or DECLINE.
MAX_OFFERS_PER_CALL = 1024
#: Statuses in one (batched) agent UPDATE, and acknowledgements in one (batched) ACKNOWLEDGE.
MAX_STATUSES_PER_UPDATE = 256
MAX_ACKS_PER_CALL = 1024
#: Tasks named in one explicit RECONCILE.
MAX_RECONCILE_TASKS = 4096
#: Resource entries in one list (an agent's total, a task's, an offer's).
MAX_RESOURCES = 256
#: Ranges in one RANGES resource, items in one SET resource or set attribute.
MAX_ITEMS = 1024
#: Attributes of one agent.
MAX_ATTRIBUTES = 256
#: A task's args, env entries, secret env entries, labels, port mappings.
MAX_ARGS = 1024
MAX_ENV = 256
MAX_LABELS = 64
MAX_PORT_MAPPINGS = 256

# -- lengths (characters) ------------------------------------------------------------------

MAX_ID = 128
MAX_NAME = 256  # framework, task and host names, attribute text, device handles, set items
MAX_RESOURCE_NAME = 64
MAX_LABEL_KEY = 128
MAX_LABEL_VALUE = 256
MAX_IMAGE = 512
MAX_ENV_KEY = 256
MAX_VALUE = 32 * 1024  # one arg or env value
MAX_URL = 2048
MAX_MESSAGE = 4096  # status and error messages: longer ones are cut, not refused

# -- numbers ----------------------------------------------------------------------------------

#: Any duration (refuse_seconds, failover timeout, time limit, kill grace): one year.
MAX_SECONDS = 365 * 24 * 3600.0
#: An agent's heartbeat interval: (0, one hour].
MAX_HEARTBEAT_INTERVAL = 3600.0
#: One scalar resource amount (cpus, mem in MiB, ...).
MAX_SCALAR = 1e12
MAX_PORT = 65535

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=~\-]*")
_RESOURCE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/\-]*")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _show(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def check_id(value: str, what: str, *, required: bool = True) -> str:
    """An id: :data:`MAX_ID` characters of the id alphabet; empty only if not ``required``."""
    if not value:
        if required:
            raise MalformedMessage(f"{what} is empty")
        return value
    if len(value) > MAX_ID or not _ID.fullmatch(value):
        raise MalformedMessage(
            f"{what} {_show(value)} is not an id (1-{MAX_ID} characters of A-Z a-z 0-9 . _ : @ + = ~ -, "
            "starting with a letter or digit)"
        )
    return value


def check_name(value: str, what: str, *, required: bool = False, limit: int = MAX_NAME) -> str:
    """Human-readable text: at most ``limit`` characters, no control characters."""
    if not value:
        if required:
            raise MalformedMessage(f"{what} is empty")
        return value
    if len(value) > limit:
        raise MalformedMessage(f"{what} is {len(value)} characters, over the limit of {limit}")
    if _CONTROL.search(value):
        raise MalformedMessage(f"{what} {_show(value)} contains a control character")
    return value


def check_value(value: str, what: str, limit: int = MAX_VALUE) -> str:
    """An arg or env value: at most ``limit`` characters, no NUL (exec cannot pass one)."""
    if len(value) > limit:
        raise MalformedMessage(f"{what} is {len(value)} characters, over the limit of {limit}")
    if "\x00" in value:
        raise MalformedMessage(f"{what} contains a NUL character")
    return value


def check_resource_name(value: str, what: str) -> str:
    if not value:
        raise MalformedMessage(f"{what} without a name")
    if len(value) > MAX_RESOURCE_NAME or not _RESOURCE_NAME.fullmatch(value):
        raise MalformedMessage(
            f"{what} name {_show(value)} is not [A-Za-z_][A-Za-z0-9_.-]* of at most {MAX_RESOURCE_NAME} characters"
        )
    return value


def check_sha256(value: str, what: str) -> str:
    if value and not _SHA256.fullmatch(value):
        raise MalformedMessage(f"{what} {_show(value)} is not a sha256 hex digest")
    return value


def check_count(items: Collection[object], limit: int, what: str) -> None:
    """Too many items in one call: :class:`MessageTooLarge`."""
    if len(items) > limit:
        raise MessageTooLarge(f"{len(items)} {what} in one call, over the limit of {limit}")


def check_seconds(value: float, what: str, *, limit: float = MAX_SECONDS, positive: bool = False) -> float:
    """A finite duration in ``[0, limit]`` (``(0, limit]`` if ``positive``)."""
    if not math.isfinite(value) or value < 0 or value > limit or (positive and value == 0):
        low = "> 0" if positive else ">= 0"
        raise MalformedMessage(f"{what} must be a finite number {low} and <= {limit:g}, got {value!r}")
    return value


def check_scalar(value: float, what: str) -> float:
    if not math.isfinite(value) or value < 0 or value > MAX_SCALAR:
        raise MalformedMessage(f"{what} must be a finite number in [0, {MAX_SCALAR:g}], got {value!r}")
    return value


def check_finite(value: float, what: str) -> float:
    """Any finite number (timestamps)."""
    if not math.isfinite(value):
        raise MalformedMessage(f"{what} must be a finite number, got {value!r}")
    return value


def check_port(value: int, what: str) -> int:
    if value > MAX_PORT:
        raise MalformedMessage(f"{what} {value} is over {MAX_PORT}")
    return value


def check_labels(labels: Mapping[str, str], what: str) -> None:
    check_count(labels, MAX_LABELS, f"{what} labels")
    for key, value in labels.items():
        if not key or len(key) > MAX_LABEL_KEY or not _LABEL_KEY.fullmatch(key):
            raise MalformedMessage(
                f"{what} label key {_show(key)} is not [A-Za-z0-9][A-Za-z0-9._/-]* "
                f"of at most {MAX_LABEL_KEY} characters"
            )
        check_name(value, f"{what} label {key}", limit=MAX_LABEL_VALUE)


def check_env(env: Mapping[str, str], what: str) -> None:
    check_count(env, MAX_ENV, f"{what} entries")
    for key, value in env.items():
        if not key or len(key) > MAX_ENV_KEY or "=" in key or "\x00" in key:
            raise MalformedMessage(f"{what} key {_show(key)} is empty, too long or contains '=' or NUL")
        check_value(value, f"{what} {key}")


def clip_message(value: str) -> str:
    """Free text for humans, cut to :data:`MAX_MESSAGE` characters."""
    return value if len(value) <= MAX_MESSAGE else value[: MAX_MESSAGE - 3] + "..."
