"""Typed identifiers. Plain strings on the wire, distinct types to mypy."""

from __future__ import annotations

from typing import NewType

AgentId = NewType("AgentId", str)
FrameworkId = NewType("FrameworkId", str)
OfferId = NewType("OfferId", str)
TaskId = NewType("TaskId", str)


def new_id() -> str:
    """A fresh random identifier (uuid4, hex).

    ``uuid`` is imported here, not at the top: the pure cores import the id
    types and must not load randomness (tests/unit/test_layers.py).
    """
    import uuid

    return uuid.uuid4().hex
