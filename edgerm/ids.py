"""Typed identifiers. Plain strings on the wire, distinct types to mypy."""

from __future__ import annotations

import uuid
from typing import NewType

AgentId = NewType("AgentId", str)
FrameworkId = NewType("FrameworkId", str)
OfferId = NewType("OfferId", str)
TaskId = NewType("TaskId", str)


def new_id() -> str:
    """A fresh random identifier (uuid4, hex)."""
    return uuid.uuid4().hex
