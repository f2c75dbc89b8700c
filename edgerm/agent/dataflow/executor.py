"""``BatchExecutor``: runs an operator's WASI command module once per micro-batch.

Each batch runs in a new Store and WasiConfig (a WasiConfig serves once):
the batch on stdin, records on stdout, ``argv = [operator, *args]``, the
task's env, and the instance's private ``state/`` directory preopened as
``/state`` (it lasts as long as the task: an aggregate keeps its window
there). Rules:

- :meth:`run` is blocking: call it from a worker thread, never the loop. It
  returns the module's stdout, or raises :class:`BatchFailed` (a trap, a
  non-zero exit, a memory cap hit, an interrupt) with the last lines of
  stderr in the message.
- One engine per executor, with epoch interruption: :meth:`interrupt`
  (from any thread) traps the batch that is running, within ~0.2 ms. The
  caller uses it for the per-batch time limit and to kill the task. Since
  each executor has its own engine, an interrupt touches no other task.
- ``main`` returning 0 and ``proc_exit(0)`` both count as success.
- :func:`compile_module` compiles once; :class:`ModuleCache` keeps the
  serialized form by sha256 so further instances load it in ~0.05 ms
  instead of compiling (an engine with the same config accepts it). The
  module's imports are resolved once (an ``InstancePre``), not per batch.
- stdin/stdout/stderr are in-memory files (Linux ``memfd``, opened by
  wasmtime through ``/proc/self/fd``; wasmtime-py has no stdin-from-bytes),
  overwritten per batch; elsewhere they are files in the task's workdir.
  Not files on disk: rewriting a truncated file on ext4 starts its
  writeback on close (``auto_da_alloc``), 0.3-3 ms per batch on a busy disk,
  more than the module itself. (Host functions shadowing
  ``fd_read``/``fd_write`` for stdio were tried: no faster through ctypes,
  and a file under ``/state`` still needs WASI's own.)
- :meth:`close` releases the in-memory files (the host calls it at its end).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgerm.errors import EdgermError
from edgerm.lazy import lazy_module
from edgerm.model import Reason

if TYPE_CHECKING:
    import wasmtime
else:  # imported when the first operator runs: an idle agent does not load wasmtime
    wasmtime = lazy_module("wasmtime")

MIB = 1024 * 1024
MEMORY_RESERVATION = 64 * MIB  # virtual address space per linear memory (memories move past it)
STDERR_TAIL = 2048  # bytes of stderr quoted in a failure
_CACHED = 32


class BatchFailed(EdgermError):
    """One batch failed; ``reason`` says how (TRAP, COMMAND_EXITED, MEMORY_LIMIT, ...)."""

    def __init__(self, reason: Reason, message: str, exit_code: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.exit_code = exit_code


class ModuleInvalid(EdgermError):
    """The module does not compile, or is not a WASI command."""


def _config() -> wasmtime.Config:
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.memory_reservation = MEMORY_RESERVATION
    return config


class ModuleCache:
    """Serialized compiled modules by sha256 (LRU), shared by every executor of an agent."""

    def __init__(self, size: int = _CACHED) -> None:
        self._size = size
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str) -> bytes | None:
        with self._lock:
            data = self._items.get(sha256)
            if data is not None:
                self._items.move_to_end(sha256)
            return data

    def put(self, sha256: str, serialized: bytes) -> None:
        with self._lock:
            self._items[sha256] = serialized
            self._items.move_to_end(sha256)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


@dataclass(frozen=True, slots=True)
class ExecutorSpec:
    """What one operator instance runs, and where."""

    module: bytes = field(repr=False)  # module bytes never go to logs
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)  # may hold the task's secret_env: kept out of logs
    workdir: Path
    memory_bytes: int


class BatchExecutor:
    """One operator instance's module, run once per batch (blocking; use a thread)."""

    def __init__(self, spec: ExecutorSpec, cache: ModuleCache | None = None) -> None:
        """Compile (or load from ``cache``) the module; raises :class:`ModuleInvalid`."""
        self.spec = spec
        self._engine = wasmtime.Engine(_config())
        self._linker = wasmtime.Linker(self._engine)
        self._linker.define_wasi()
        self._module = _load(self._engine, spec.module, cache)
        if not any(e.name == "_start" for e in self._module.exports):
            raise ModuleInvalid("not a WASI command: no _start export")
        self._pre = self._linker.instantiate_pre(self._module)
        self._stdin = _Stdio(spec.workdir / "batch.in")
        self._stdout = _Stdio(spec.workdir / "batch.out")
        self._stderr = _Stdio(spec.workdir / "batch.err")
        self._argv = list(spec.argv)
        self.state_dir = spec.workdir / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._env = sorted(spec.env.items())
        self._lock = threading.Lock()  # one batch at a time
        self._stopped = False  # set by stop(): no batch runs any more
        self._closing = False  # set by close(): the stdio files go with the batch that runs

    def interrupt(self) -> None:
        """Trap the batch now running, if any (thread-safe)."""
        self._engine.increment_epoch()

    def stop(self) -> None:
        """Trap the batch now running and every later one (thread-safe): the task is ending.

        An interrupt alone is lost on a batch whose thread has not set its
        epoch deadline yet (the deadline counts from the epoch it finds); the
        flag, set before the epoch moves and read after the deadline is set,
        catches that batch too.
        """
        self._stopped = True
        self._engine.increment_epoch()

    def close(self) -> None:
        """Stop (as :meth:`stop`) and release the in-memory stdio files: now, or as the running batch ends."""
        self._closing = True
        self.stop()
        if self._lock.acquire(blocking=False):
            try:
                self._release()
            finally:
                self._lock.release()

    def _release(self) -> None:
        for f in (self._stdin, self._stdout, self._stderr):
            f.close()

    def run(self, batch: bytes) -> bytes:
        """Run the module on one batch; its stdout, or :class:`BatchFailed`."""
        with self._lock:
            try:
                return self._run(batch)
            finally:
                if self._closing:
                    self._release()

    def _run(self, batch: bytes) -> bytes:
        if self._stopped:
            raise BatchFailed(Reason.TIME_LIMIT, "interrupted (time limit or kill)")
        self._stdin.write(batch)
        store = wasmtime.Store(self._engine)
        try:
            store.set_limits(memory_size=self.spec.memory_bytes)
            store.set_epoch_deadline(1)
            if self._stopped:
                raise BatchFailed(Reason.TIME_LIMIT, "interrupted (time limit or kill)")
            wasi = wasmtime.WasiConfig()
            wasi.argv = self._argv
            wasi.env = self._env
            wasi.stdin_file = self._stdin.path
            wasi.stdout_file = self._stdout.path
            wasi.stderr_file = self._stderr.path
            wasi.preopen_dir(str(self.state_dir), "/state")
            store.set_wasi(wasi)
            try:
                instance = self._pre.instantiate(store)
                start = instance.exports(store)["_start"]
                assert isinstance(start, wasmtime.Func)
                start(store)
            except wasmtime.ExitTrap as e:
                if e.code != 0:
                    raise BatchFailed(
                        Reason.COMMAND_EXITED, self._with_stderr(f"exited with status {e.code}"), e.code
                    ) from None
            except (wasmtime.Trap, wasmtime.WasmtimeError) as e:
                text = _cause(str(e))
                if "trap: interrupt" in text:
                    raise BatchFailed(Reason.TIME_LIMIT, "interrupted (time limit or kill)") from None
                if "memory" in text and "trap" not in text:
                    raise BatchFailed(Reason.MEMORY_LIMIT, self._with_stderr(text)) from None
                raise BatchFailed(Reason.TRAP, self._with_stderr(text if "trap" in text else f"trap: {text}")) from None
        finally:
            store.close()
        return self._stdout.read()

    def read_state(self, max_bytes: int) -> dict[str, bytes]:
        """The files in ``/state`` (plain files, not sub-directories), or BatchFailed past ``max_bytes``."""
        files: dict[str, bytes] = {}
        total = 0
        for entry in os.scandir(self.state_dir):
            if not entry.is_file() or entry.name.endswith(".tmp"):
                continue
            total += entry.stat().st_size
            if total > max_bytes:
                raise BatchFailed(Reason.RUNTIME_ERROR, f"/state holds over {max_bytes} bytes: not checkpointed")
            files[entry.name] = Path(entry.path).read_bytes()
        return files

    def write_state(self, files: Mapping[str, bytes]) -> None:
        """Put a checkpoint's files in ``/state`` (before the first batch)."""
        for name, data in files.items():
            (self.state_dir / name).write_bytes(data)

    def _with_stderr(self, message: str) -> str:
        lines = self._stderr.tail(STDERR_TAIL).decode("utf-8", "replace").strip().splitlines()
        tail = " | ".join(lines[-3:])
        return f"{message}: {tail}" if tail else message


class _Stdio:
    """One of a module's stdio files: an in-memory file (memfd) where the OS has them, else ``fallback``."""

    def __init__(self, fallback: Path) -> None:
        self._fd = -1
        if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                self._fd = os.memfd_create(fallback.name)  # close-on-exec: no command inherits it
        self._fallback = fallback
        self.path = f"/proc/self/fd/{self._fd}" if self._fd >= 0 else str(fallback)

    def write(self, data: bytes) -> None:
        if self._fd < 0:
            self._fallback.write_bytes(data)
            return
        os.ftruncate(self._fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.pwrite(self._fd, view, len(data) - len(view)) :]

    def read(self) -> bytes:
        if self._fd < 0:
            return self._fallback.read_bytes()
        return self._pread(0, os.fstat(self._fd).st_size)

    def tail(self, n: int) -> bytes:
        try:
            if self._fd < 0:
                with self._fallback.open("rb") as f:
                    f.seek(0, os.SEEK_END)
                    f.seek(max(0, f.tell() - n))
                    return f.read()
            size = os.fstat(self._fd).st_size
            return self._pread(max(0, size - n), size)
        except OSError:
            return b""

    def _pread(self, start: int, end: int) -> bytes:
        parts: list[bytes] = []
        while start < end:
            chunk = os.pread(self._fd, end - start, start)
            if not chunk:
                break
            parts.append(chunk)
            start += len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self.path = str(self._fallback)

    def __del__(self) -> None:
        self.close()


def _load(engine: wasmtime.Engine, module: bytes, cache: ModuleCache | None) -> wasmtime.Module:
    sha = hashlib.sha256(module).hexdigest()
    serialized = cache.get(sha) if cache is not None else None
    if serialized is not None:
        try:
            return wasmtime.Module.deserialize(engine, serialized)
        except wasmtime.WasmtimeError:  # another engine config: compile below
            pass
    try:
        compiled = wasmtime.Module(engine, module)
    except wasmtime.WasmtimeError as e:
        raise ModuleInvalid(f"not a valid WebAssembly module: {_cause(str(e))}") from None
    if cache is not None:
        cache.put(sha, bytes(compiled.serialize()))
    return compiled


def argv_for(operator: str, args: Sequence[str]) -> tuple[str, ...]:
    """A module's argv: the operator name, then the operator's args."""
    return (operator, *args)


def _cause(text: str) -> str:
    head, sep, cause = text.partition("Caused by:")
    out = cause if sep else head
    lines = [line.strip() for line in out.strip().splitlines() if line.strip()]
    # The first line names the trap; the rest is a wasm backtrace.
    return lines[0] if lines else text.strip()
