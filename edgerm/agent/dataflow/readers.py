"""Device readers for sources: where a source's raw readings come from.

A source names a device; the agent maps it to a handle (contract.resolve_device),
and :func:`readings` turns the handle into an async stream of
``(unix time, text)`` readings:

============  =====================================================================
handle        readings
============  =====================================================================
sim:sine      ``20 + 10·sin(2π·t/60)`` every period (a slow temperature wave)
sim:random    a Gaussian around 20 (sigma 3) every period
file:/path    the lines appended to the file, looked at every period (tailed:
              the lines present at start are read first; a truncated file is
              read again from the start; a missing one is waited for)
cmd:COMMAND   each stdout line of ``sh -c COMMAND`` as it comes; when the
              command exits it is started again after one period (so
              ``cmd:cat /sys/...`` polls a sensor file once per period)
============  =====================================================================

Rules: a reader never ends on its own; cancelling the iteration stops it and
kills a command it started (no process is left behind). :func:`value_of`
takes the number out of a reading's text (its last whitespace-separated
word), or None; the host counts readings that hold none as dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

from edgerm.errors import ConfigError

log = logging.getLogger(__name__)

SCHEMES = ("sim:", "file:", "cmd:")
SIMULATED = ("sim:sine", "sim:random")
_MAX_LINE = 64 * 1024
_KILL_WAIT = 2.0


Reading = tuple[float, str]


def check_handle(handle: str) -> None:
    """Raise ConfigError unless a reader exists for ``handle``."""
    if handle in SIMULATED:
        return
    if handle.startswith("file:"):
        if not handle[5:].startswith("/"):
            raise ConfigError(f"device {handle!r}: the file path must be absolute")
        return
    if handle.startswith("cmd:"):
        if not handle[4:].strip():
            raise ConfigError(f"device {handle!r}: no command")
        return
    raise ConfigError(f"device {handle!r}: not sim:sine, sim:random, file:/path or cmd:COMMAND")


def value_of(text: str) -> float | None:
    """The reading's number: its last word as a finite float, else None."""
    words = text.split()
    if not words:
        return None
    try:
        value = float(words[-1])
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def readings(handle: str, period: float) -> AsyncGenerator[Reading, None]:
    """The readings of the device with this handle (see the module docstring)."""
    check_handle(handle)
    if handle == "sim:sine":
        return _simulated(period, lambda t: 20.0 + 10.0 * math.sin(2 * math.pi * t / 60.0))
    if handle == "sim:random":
        rng = random.Random()
        return _simulated(period, lambda _t: rng.gauss(20.0, 3.0))
    if handle.startswith("file:"):
        return _tail(Path(handle[5:]), period)
    return _command(handle[4:], period)


async def _simulated(period: float, wave: Callable[[float], float]) -> AsyncGenerator[Reading, None]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    k = 0
    while True:
        t = time.time()
        yield t, f"{wave(t):.4f}"
        k += 1
        # A fixed schedule: a late reading does not shift every later one.
        delay = start + k * period - loop.time()
        if delay < -period:  # far behind (a suspended machine): start a new schedule
            start, k, delay = loop.time(), 0, 0.0
        await asyncio.sleep(max(0.0, delay))


async def _tail(path: Path, period: float) -> AsyncGenerator[Reading, None]:
    position = 0
    partial = b""
    missing_logged = False
    while True:
        try:
            chunk, position = await asyncio.to_thread(_read_from, path, position)
            missing_logged = False
        except FileNotFoundError:
            if not missing_logged:
                log.warning("device file %s does not exist (yet); waiting for it", path)
                missing_logged = True
            chunk = b""
        except OSError as e:
            log.warning("cannot read device file %s: %s", path, e)
            chunk = b""
        if chunk:
            data = partial + chunk
            *lines, partial = data.split(b"\n")
            if len(partial) > _MAX_LINE:  # a line without end: do not hold it forever
                partial = b""
            t = time.time()
            for line in lines:
                text = line.decode("utf-8", "replace").strip()
                if text:
                    yield t, text
        await asyncio.sleep(period)


def _read_from(path: Path, position: int) -> tuple[bytes, int]:
    """What was appended to ``path`` since ``position``; from the start again if it shrank."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < position:
            position = 0
        f.seek(position)
        data = f.read(max(0, size - position))
    return data, position + len(data)


async def _command(command: str, period: float) -> AsyncGenerator[Reading, None]:
    while True:
        proc = await asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            limit=_MAX_LINE,
            start_new_session=True,  # its own process group: a kill reaches its children too
        )
        try:
            assert proc.stdout is not None
            while True:
                try:
                    line = await proc.stdout.readline()
                except ValueError:  # a line over the limit: skip it
                    continue
                if not line:
                    break
                text = line.decode("utf-8", "replace").strip()
                if text:
                    yield time.time(), text
            code = await proc.wait()
            if code != 0:
                log.info("device command %r exited with status %d; starting it again in %.3gs", command, code, period)
        finally:
            await _stop(proc)
        await asyncio.sleep(period)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    try:
        await asyncio.wait_for(proc.wait(), _KILL_WAIT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        await proc.wait()
