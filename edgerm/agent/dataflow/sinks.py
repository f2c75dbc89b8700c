"""Where a sink delivers its batches, besides the console topic.

``console`` is no delivery of its own: the host publishes the batch to the
sink's output topic for the framework to print. The others:

- :class:`FileSink` appends each batch to a file on the agent (in a thread;
  the parent directory must exist).
- :class:`HttpSink` POSTs each batch as ``text/plain; charset=utf-8`` (text
  framing) or ``application/x-edgerm-batch`` (binary framing,
  edgerm.dataflow_records); any answer outside 2xx, a timeout or a refused
  connection fails the delivery.

A failed delivery raises :class:`DeliveryFailed`; the host counts an error
and drops the batch, as it does for a failed module run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

import aiohttp

from edgerm.agent.dataflow.contract import SinkKind, SinkSpec
from edgerm.dataflow_records import is_binary
from edgerm.errors import EdgermError

HTTP_TIMEOUT = 10.0
BINARY_TYPE = "application/x-edgerm-batch"


class DeliveryFailed(EdgermError):
    """A sink could not deliver a batch."""


class Sink(Protocol):
    async def deliver(self, payload: bytes) -> None:
        """Deliver one batch; raise :class:`DeliveryFailed` when it cannot."""
        ...

    async def close(self) -> None: ...


class FileSink:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def deliver(self, payload: bytes) -> None:
        try:
            await asyncio.to_thread(_append, self.path, payload)
        except OSError as e:
            raise DeliveryFailed(f"cannot append to {self.path}: {e.strerror or e}") from None

    async def close(self) -> None:
        return None


class HttpSink:
    def __init__(self, url: str, timeout: float = HTTP_TIMEOUT) -> None:
        self.url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, payload: bytes) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            kind = BINARY_TYPE if is_binary(payload) else "text/plain; charset=utf-8"
            async with self._session.post(self.url, data=payload, headers={"Content-Type": kind}) as reply:
                if not 200 <= reply.status < 300:
                    raise DeliveryFailed(f"POST {self.url} answered {reply.status} {reply.reason or ''}".rstrip())
                await reply.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise DeliveryFailed(f"POST {self.url} failed: {type(e).__name__}: {e}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def sink_for(spec: SinkSpec) -> Sink | None:
    """The delivery of a sink spec; None for ``console`` (the host publishes instead)."""
    if spec.kind is SinkKind.FILE:
        return FileSink(Path(spec.target))
    if spec.kind is SinkKind.HTTP:
        return HttpSink(spec.target)
    return None


def _append(path: Path, payload: bytes) -> None:
    with path.open("ab") as f:
        f.write(payload)
