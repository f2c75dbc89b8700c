"""Helpers shared by the agent's integration tests."""

from __future__ import annotations

from tests.support import WAIT, eventually

__all__ = ["WAIT", "eventually"]
