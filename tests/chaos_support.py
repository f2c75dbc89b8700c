"""Tools for the failure tests: a WASI module that sleeps, and a TCP proxy that can cut a link.

``sleep_module(seconds)`` is a real WASI command that sleeps in 50 ms steps
(``poll_oneoff``), so a kill through the epoch stops it within a step.
``Proxy`` forwards 127.0.0.1 connections to a target; ``cut()`` drops
every connection and refuses new ones until ``heal()`` (a partition
without namespaces or root).
"""

from __future__ import annotations

import asyncio
import contextlib

import wasmtime

STEP = 0.05  # seconds per poll_oneoff sleep


def sleep_module(seconds: float) -> bytes:
    """A WASI command that sleeps ``seconds`` (in 50 ms steps), then exits 0."""
    steps = max(1, round(seconds / STEP))
    wat = f"""
    (module
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (local $i i32)
        (i32.store (i32.const 16) (i32.const 1))                 ;; clock id: monotonic
        (i64.store (i32.const 24) (i64.const {int(STEP * 1e9)}))  ;; relative timeout, ns
        (block $done
          (loop $again
            (br_if $done (i32.ge_u (local.get $i) (i32.const {steps})))
            (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $again)))))
    """
    return bytes(wasmtime.wat2wasm(wat))


class Proxy:
    """A TCP forwarder on 127.0.0.1 whose link can be cut and healed."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._cut = False
        #: Connections refused while cut (a test can wait for attempts instead of sleeping).
        self.refused = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await asyncio.gather(*self._links, return_exceptions=True)

    def cut(self) -> None:
        """Drop every connection now; refuse new ones until :meth:`heal`."""
        self._cut = True
        for link in list(self._links):
            link.cancel()

    def heal(self) -> None:
        self._cut = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            self.refused += 1
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            self._links.discard(task)
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass
        finally:
            self._links.discard(task)
            for w in (writer, up_writer):
                w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError, RuntimeError):
        writer.write_eof()
