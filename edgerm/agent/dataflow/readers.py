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
cmd+bytes:C   the whole stdout of each run of ``sh -c C`` as one bytes
              reading (a camera frame: ``cmd+bytes:fswebcam -``), run
              again one period after it exits
dir:/path     each file dropped into the directory (names starting with
              ``.`` are ignored: write there, then rename) as one bytes
              reading, content type from its extension; the host deletes
              the file once its record is published (the directory is
              consumed; oldest first), looked at every period
============  =====================================================================

Rules: a reader never ends on its own; cancelling the iteration stops it and
kills a command it started (no process is left behind). A text reading
becomes a record through :func:`value_of`: a JSON object or array as it is,
else its last whitespace-separated word as a number, else None (the host
counts it as dropped). Bytes readings (:class:`Blob`) over the record limit
are skipped and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import mimetypes
import os
import random
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path

from edgerm.dataflow_records import MAX_RECORD_BYTES, OCTETS
from edgerm.errors import ConfigError

log = logging.getLogger(__name__)

SCHEMES = ("sim:", "file:", "cmd:", "cmd+bytes:", "dir:")
SIMULATED = ("sim:sine", "sim:random")
_MAX_LINE = 64 * 1024
_KILL_WAIT = 2.0


@dataclass(frozen=True, slots=True)
class Blob:
    """A bytes reading: a file's or a command's whole output."""

    data: bytes
    content_type: str = OCTETS
    consumed: Path | None = None  # a dir: file, deleted once its record is published


Reading = tuple[float, "str | Blob"]


def check_handle(handle: str) -> None:
    """Raise ConfigError unless a reader exists for ``handle``."""
    if handle in SIMULATED:
        return
    if handle.startswith("file:"):
        if not handle[5:].startswith("/"):
            raise ConfigError(f"device {handle!r}: the file path must be absolute")
        return
    if handle.startswith("dir:"):
        if not handle[4:].startswith("/"):
            raise ConfigError(f"device {handle!r}: the directory path must be absolute")
        return
    for prefix in ("cmd:", "cmd+bytes:"):
        if handle.startswith(prefix):
            if not handle[len(prefix) :].strip():
                raise ConfigError(f"device {handle!r}: no command")
            return
    raise ConfigError(
        f"device {handle!r}: not sim:sine, sim:random, file:/path, dir:/path, cmd:COMMAND or cmd+bytes:COMMAND"
    )


def value_of(text: str) -> object | None:
    """The reading's value: a JSON object or array as it is, else its last word as a finite float, else None."""
    if text[:1] in ("{", "["):
        try:
            value: object = json.loads(text)
        except ValueError:
            return None
        return value
    words = text.split()
    if not words:
        return None
    try:
        value = float(words[-1])
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def readings(handle: str, period: float, content_type: str = "") -> AsyncGenerator[Reading, None]:
    """The readings of the device with this handle (see the module docstring)."""
    check_handle(handle)
    if handle == "sim:sine":
        return _simulated(period, lambda t: 20.0 + 10.0 * math.sin(2 * math.pi * t / 60.0))
    if handle == "sim:random":
        rng = random.Random()
        return _simulated(period, lambda _t: rng.gauss(20.0, 3.0))
    if handle.startswith("file:"):
        return _tail(Path(handle[5:]), period)
    if handle.startswith("dir:"):
        return _directory(Path(handle[4:]), period)
    if handle.startswith("cmd+bytes:"):
        return _command_bytes(handle[len("cmd+bytes:") :], period, content_type or OCTETS)
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
        if delay < -max(period, 1.0):  # far behind (a suspended machine): start a new schedule
            start, k, delay = loop.time(), 0, 0.0
        if delay > 0:
            await asyncio.sleep(delay)
        elif k % 64 == 0:  # catching up at a high rate: readings come in runs, the loop still turns
            await asyncio.sleep(0)


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


async def _directory(path: Path, period: float) -> AsyncGenerator[Reading, None]:
    seen: set[str] = set()  # files read whose record is not yet published (the host deletes them)
    complained: set[str] = set()
    missing_logged = False
    while True:
        try:
            files = await asyncio.to_thread(_listing, path)
            missing_logged = False
        except OSError as e:
            if not missing_logged:
                log.warning("device directory %s: %s; waiting for it", path, e.strerror or e)
                missing_logged = True
            files = []
        names = {f.name for f in files}
        seen &= names
        for file in files:
            if file.name in seen:
                continue
            try:
                data = await asyncio.to_thread(_read_capped, file)
            except OSError:
                continue  # gone already, or not readable yet: looked at again next period
            if data is None:
                if file.name not in complained:
                    log.warning("device directory %s: %s is over %d bytes; skipped", path, file.name, MAX_RECORD_BYTES)
                    complained.add(file.name)
                continue
            seen.add(file.name)
            ctype = mimetypes.guess_type(file.name)[0] or OCTETS
            yield time.time(), Blob(data, ctype, file)
        await asyncio.sleep(period)


def _listing(path: Path) -> list[Path]:
    """The files in ``path`` not starting with ``.``, oldest first."""
    entries = [e for e in os.scandir(path) if not e.name.startswith(".") and e.is_file()]
    entries.sort(key=lambda e: (e.stat().st_mtime_ns, e.name))
    return [Path(e.path) for e in entries]


def _read_capped(path: Path) -> bytes | None:
    with path.open("rb") as f:
        data = f.read(MAX_RECORD_BYTES + 1)
    return None if len(data) > MAX_RECORD_BYTES else data


async def _command_bytes(command: str, period: float, content_type: str) -> AsyncGenerator[Reading, None]:
    while True:
        proc = await asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None
            data = await proc.stdout.read(MAX_RECORD_BYTES + 1)
            if len(data) > MAX_RECORD_BYTES:
                log.warning("device command %r wrote over %d bytes; that reading is skipped", command, MAX_RECORD_BYTES)
                await _stop(proc)
            else:
                code = await proc.wait()
                if code != 0:
                    log.info("device command %r exited with status %d; its output is skipped", command, code)
                elif data:
                    yield time.time(), Blob(data, content_type)
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
