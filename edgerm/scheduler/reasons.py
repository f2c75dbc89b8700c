"""Named reasons why an agent cannot take an operator instance.

Every feasibility check returns ``None`` (fits) or a :class:`Rejection`: a
reason constant (:class:`RejectCode`) plus the subject it is about, so that a
plan can say ``missing device temperature`` or ``insufficient mem`` instead of
"no". Rejections are values: equal when code and subject are equal, hashable,
and counted per agent class when an instance cannot be placed.

Rules: a check produces exactly one rejection, the first thing it finds
wrong; the text form (``str``) is what users and tests read and stays stable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RejectCode(enum.Enum):
    """The reason constants; the value is the text that precedes the subject."""

    MISSING_EXECUTOR = "missing executor"  # the agent's `executors` lacks wasm/docker
    CONSTRAINT = "constraint"  # an attribute constraint does not hold
    MISSING_DEVICE = "missing device"  # the agent has no free device of that name
    DEVICE_IN_USE = "device in use"  # the agent has it, but an instance of this plan holds it
    INSUFFICIENT = "insufficient"  # a scalar, range or set resource is short


@dataclass(frozen=True, slots=True)
class Rejection:
    """One named reason: ``RejectCode`` plus what it concerns."""

    code: RejectCode
    subject: str

    def __str__(self) -> str:
        return f"{self.code.value} {self.subject}"


def missing_executor(kind: str) -> Rejection:
    return Rejection(RejectCode.MISSING_EXECUTOR, kind)


def constraint_failed(text: str) -> Rejection:
    return Rejection(RejectCode.CONSTRAINT, text)


def missing_device(name: str) -> Rejection:
    return Rejection(RejectCode.MISSING_DEVICE, name)


def device_in_use(name: str) -> Rejection:
    return Rejection(RejectCode.DEVICE_IN_USE, name)


def insufficient(resource: str) -> Rejection:
    return Rejection(RejectCode.INSUFFICIENT, resource)
