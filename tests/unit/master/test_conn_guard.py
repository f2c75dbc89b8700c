"""ConnectionGuard counts what it lets through, refuses the excess typed, and reports once per period."""

from __future__ import annotations

import asyncio
import logging

import pytest

from edgerm import wire
from edgerm.master.conn_guard import REPORT_EVERY, ConnectionGuard, connection_limit


class _Proto(asyncio.Protocol):
    def __init__(self) -> None:
        self.events: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.events.append(data.decode())

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")


class _Transport(asyncio.WriteTransport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True


def test_limit_leaves_a_reserve() -> None:
    assert connection_limit(20000) == 20000 - 256
    assert connection_limit(200) == 150
    assert connection_limit(1) == 1


def test_guard_counts_refuses_typed_and_reports_once_per_period(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    made: list[_Proto] = []

    def factory() -> _Proto:
        made.append(_Proto())
        return made[-1]

    guard = ConnectionGuard(factory, 2, clock=lambda: now[0])
    a, b = guard(), guard()
    assert guard.open == 2 and len(made) == 2
    a.connection_made(_Transport())
    a.data_received(b"GET")
    assert made[0].events == ["made", "GET"]  # what the real protocol sees is unchanged
    with caplog.at_level(logging.WARNING, "edgerm.master"):
        for _ in range(5):
            refused = guard()
            t = _Transport()
            refused.connection_made(t)
            assert t.closed and t.written.startswith(b"HTTP/1.1 503 ")
            body = t.written.split(b"\r\n\r\n", 1)[1]
            assert wire.decode_error(body).code == "UNAVAILABLE"
        now[0] += REPORT_EVERY
        guard()
    assert guard.refused == 6 and len(made) == 2
    assert len([r for r in caplog.records if "refused since the last report" in r.message]) == 2
    a.connection_lost(None)
    assert guard.open == 1 and made[0].events[-1] == "lost"
    guard()
    assert guard.open == 2 and len(made) == 3
    with pytest.raises(ValueError):
        ConnectionGuard(factory, 0)
    del b
