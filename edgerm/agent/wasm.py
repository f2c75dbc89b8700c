"""``WasmRuntime``: WASI command modules on wasmtime, executor ``wasm``.

A task's module runs as ``argv = [task name, *args]`` with the task's ``env``;
its stdout and stderr go to ``stdout`` and ``stderr`` in its workdir. Its
end becomes one ``TaskEnded``:

==========================================  =====================================
how it ended                                 state / reason
==========================================  =====================================
``_start`` returned, or ``proc_exit(0)``     FINISHED, COMMAND_EXITED
``proc_exit(n)``, n != 0                     FAILED, COMMAND_EXITED, exit_code n,
                                             message ends with stderr's last lines
a trap                                       FAILED, TRAP, message = the trap
the wall-clock limit passed                  FAILED, TIME_LIMIT
``kill``                                     KILLED, KILLED_BY_FRAMEWORK
initial memory above the task's cap          FAILED, MEMORY_LIMIT
no module, bad module, not a WASI command    FAILED, IMAGE_UNAVAILABLE / INVALID_TASK
==========================================  =====================================

How, and why so:

- **One engine, epoch interruption.** Every store gets an epoch deadline one
  tick ahead and a deadline callback (wasmtime's
  ``wasmtime_store_epoch_deadline_callback``, reached through wasmtime-py's
  ``_bindings`` because the public API lacks it). Nothing ticks while all is
  well; to stop a task we mark it and call ``engine.increment_epoch()``: every
  running store then asks its callback, which traps only the marked one and
  lets the others continue. Cancelling an asyncio future would not stop a
  running wasm thread (MACHINE-NOTES); this does, within about 0.2 ms.
  A task blocked inside a WASI host call (a sleep in ``poll_oneoff``) stops
  when that call returns.
- **Time limits** are loop timers armed when the module starts: the task's
  ``WasmSpec.time_limit`` or the agent's default.
- **Memory**: ``store.set_limits(memory_size=...)`` from the task's ``mem``
  (MiB) or the agent's default; ``Config.memory_reservation`` is kept small
  (memories move when they grow past it) so a 32-bit board does not run out
  of address space reserving 4 GiB per instance.
- **Threads**: modules compile and run in a pool of threads (threads.py), never
  on the event loop; reports are delivered on the loop that called ``launch``.
  ``TaskStarted`` is sent right before ``_start`` runs, so queued tasks stay
  STARTING and a queued task that is killed never runs. What the threads
  hand to the loop joins one queue, and the loop is woken once for all that
  queued meanwhile (a wake-up per report cost more than the report). The
  short C calls a run makes keep the GIL instead of handing it to another
  thread about 20 times per task (wasm_calls.py).
- **Module cache** by sha256: in memory (LRU) and, when a work dir is given,
  serialized under ``work_dir/modules/`` so a restarted agent deserializes
  instead of compiling. A module named only by ``module_sha256`` and not
  cached is fetched through ``fetch_module`` (the master's module store).
- **Restart**: wasm tasks do not survive the agent; ``recover`` finds none.
  The service relaunches or fails them from its journal, per their
  restart policy (journal.py, docs/agent-reliability.md).
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import logging
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgerm.agent.runtime import RecoveredTask, ReportCallback, TaskEnded, TaskStarted
from edgerm.agent.threads import RunPool
from edgerm.agent.wasm_calls import keep_gil_for_short_calls
from edgerm.errors import EdgermError
from edgerm.ids import TaskId
from edgerm.lazy import lazy_module
from edgerm.model import Reason, TaskInfo, TaskState, WasmSpec

if TYPE_CHECKING:
    import wasmtime
    from wasmtime import _bindings as ffi
else:  # imported at the first task: an idle agent does not load wasmtime
    wasmtime = lazy_module("wasmtime")
    ffi = lazy_module("wasmtime._bindings")

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MEMORY_RESERVATION = 128 * MIB  # virtual address space set aside per linear memory
CACHED_MODULES = 128  # compiled modules kept in memory
STDERR_LINES = 5  # last stderr lines quoted in a failed task's message
_STDERR_TAIL_BYTES = 4096

ModuleFetcher = Callable[[str], Awaitable[bytes]]

_CONTINUE = 0  # wasmtime_update_deadline_kind_t: keep running


def load_module(path: Path) -> bytes:
    """A module's binary from a ``.wasm`` file, or compiled from a ``.wat`` file."""
    if path.suffix == ".wat":
        return bytes(wasmtime.wat2wasm(path.read_text(encoding="utf-8")))
    return path.read_bytes()


class _TaskFailed(EdgermError):
    """Ends a task before its module runs, with this reason."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(slots=True)
class _Run:
    """One task this runtime holds, from ``launch`` until it ends."""

    task: TaskInfo
    spec: WasmSpec
    module: bytes  # inline or fetched bytes; empty when the cache has the module
    workdir: Path
    report: ReportCallback
    time_limit: float
    memory_bytes: int
    stop: Reason | None = None  # set on the loop; read by the deadline callback in the wasm thread
    timer: asyncio.TimerHandle | None = None
    ended: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class WasmRuntime:
    """Runs WASI command modules; implements :class:`~edgerm.agent.runtime.Runtime`."""

    executor = "wasm"

    def __init__(
        self,
        work_dir: Path | None = None,
        *,
        default_time_limit: float = 60.0,
        default_memory: float = 64.0,
        threads: int = 32,
        fetch_module: ModuleFetcher | None = None,
    ) -> None:
        self._wasm: tuple[wasmtime.Engine, wasmtime.Linker] | None = None  # made at the first use
        self._wasm_lock = threading.Lock()
        self._cache_dir = work_dir / "modules" if work_dir is not None else None
        self._default_time_limit = default_time_limit
        self._default_memory = default_memory
        self._fetch = fetch_module
        self._pool = RunPool(threads, "edgerm-wasm")
        self._modules: OrderedDict[str, wasmtime.Module] = OrderedDict()
        self._modules_lock = threading.Lock()
        self._runs: dict[TaskId, _Run] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._posted: deque[tuple[Callable[..., None], tuple[object, ...]]] = deque()  # wasm threads -> loop
        self._drain_due = False  # a drain of _posted is scheduled on the loop
        self._closed = False
        #: How many modules were compiled / loaded from disk / found in memory (for tests and metrics).
        self.compiled = 0
        self.deserialized = 0
        self.cache_hits = 0

    @property
    def _engine(self) -> wasmtime.Engine:
        return self._engine_and_linker()[0]

    @property
    def _linker(self) -> wasmtime.Linker:
        return self._engine_and_linker()[1]

    def _engine_and_linker(self) -> tuple[wasmtime.Engine, wasmtime.Linker]:
        """The engine and its WASI linker, made once (from whichever thread asks first)."""
        wasm = self._wasm
        if wasm is None:
            with self._wasm_lock:
                wasm = self._wasm
                if wasm is None:
                    keep_gil_for_short_calls()
                    config = wasmtime.Config()
                    config.epoch_interruption = True
                    config.memory_reservation = MEMORY_RESERVATION
                    engine = wasmtime.Engine(config)
                    linker = wasmtime.Linker(engine)
                    linker.define_wasi()
                    wasm = self._wasm = (engine, linker)
        return wasm

    # -- Runtime protocol ---------------------------------------------------------------

    async def available(self) -> bool:
        return not self._closed

    async def launch(self, task: TaskInfo, workdir: Path, report: ReportCallback) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        if task.task_id in self._runs:
            return  # already running: LAUNCH is idempotent
        spec = task.container
        if not isinstance(spec, WasmSpec):
            report(TaskEnded(task.task_id, TaskState.FAILED, Reason.INVALID_TASK, "not a WebAssembly task"))
            return
        if self._closed:
            report(TaskEnded(task.task_id, TaskState.FAILED, Reason.RUNTIME_ERROR, "the wasm runtime is shut down"))
            return
        mem = task.resources.mem or self._default_memory
        run = _Run(
            task=task,
            spec=spec,
            module=spec.module,
            workdir=workdir,
            report=report,
            time_limit=spec.time_limit if spec.time_limit > 0 else self._default_time_limit,
            memory_bytes=int(mem * MIB),
        )
        self._runs[task.task_id] = run
        if not spec.module and not self._have_module(spec.module_sha256):
            try:
                run.module = await self._fetch_module(spec.module_sha256)
            except EdgermError as e:
                self._finish(run, TaskEnded(task.task_id, TaskState.FAILED, Reason.IMAGE_UNAVAILABLE, str(e)))
                return
            except asyncio.CancelledError:  # the agent is stopping: the task never ran
                self._finish(run, TaskEnded(task.task_id, TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK, "stopped"))
                raise
            if run.stop is not None:  # killed while the module was downloading
                self._finish(run, self._stopped(run))
                return
        self._pool.submit(self._execute, run)

    async def kill(self, task_id: TaskId, grace: float) -> None:
        run = self._runs.get(task_id)
        if run is None or run.ended.done():
            return
        self._interrupt(run, Reason.KILLED_BY_FRAMEWORK)
        # WebAssembly has no polite stop; wait (up to the grace) for the thread to let go.
        try:
            await asyncio.wait_for(asyncio.shield(run.ended), timeout=max(grace, 0.1))
        except TimeoutError:
            log.warning("wasm task %s did not stop within %.1fs (blocked in a host call?)", task_id, grace)

    async def recover(self, report: ReportCallback) -> list[RecoveredTask]:
        return []  # a wasm task lives in the agent's process; none survive a restart

    async def cleanup(self, task_id: TaskId) -> None:
        # The workdir is the service's; a finished run holds nothing else.
        self._runs.pop(task_id, None)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        runs = [r for r in self._runs.values() if not r.ended.done()]
        for run in runs:
            self._interrupt(run, Reason.KILLED_BY_FRAMEWORK)
        stuck = 0
        if runs:
            _, pending = await asyncio.wait([asyncio.shield(r.ended) for r in runs], timeout=5.0)
            stuck = len(pending)
        if stuck:
            # Threads blocked in a host call cannot be interrupted; do not wait for them forever.
            log.warning("%d wasm task(s) did not stop; leaving their threads behind", stuck)
            self._pool.shutdown(wait=False)
        else:
            await asyncio.to_thread(self._pool.shutdown, wait=True)

    # -- loop side ------------------------------------------------------------------------

    def running(self) -> list[TaskId]:
        """Tasks launched and not yet ended."""
        return [t for t, r in self._runs.items() if not r.ended.done()]

    def _interrupt(self, run: _Run, reason: Reason) -> None:
        if run.stop is None:
            run.stop = reason
        self._engine.increment_epoch()

    def _on_started(self, run: _Run) -> None:
        if run.ended.done():
            return
        assert self._loop is not None
        run.timer = self._loop.call_later(run.time_limit, self._interrupt, run, Reason.TIME_LIMIT)
        run.report(TaskStarted(run.task.task_id))

    def _finish(self, run: _Run, ended: TaskEnded) -> None:
        if run.ended.done():
            return
        if run.timer is not None:
            run.timer.cancel()
        run.module = b""  # the bytes may be large; the compiled module is cached
        run.ended.set_result(None)
        run.report(ended)

    def _post(self, fn: Callable[..., None], *args: object) -> None:
        """Run ``fn(*args)`` on the loop (from a wasm thread), in the order posted."""
        assert self._loop is not None
        self._posted.append((fn, args))
        if self._drain_due:  # the loop will run it with the others (it clears the flag before it drains)
            return
        self._drain_due = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            log.debug("wasm report dropped: loop closed")

    def _drain(self) -> None:
        """Loop side: run what the wasm threads posted."""
        self._drain_due = False
        posted = self._posted
        while posted:
            fn, args = posted.popleft()
            try:
                fn(*args)
            except Exception:  # boundary: one report that fails does not hold up the others
                log.exception("wasm runtime: a report failed on the loop")

    async def _fetch_module(self, sha256: str) -> bytes:
        if self._fetch is None:
            raise _TaskFailed(Reason.IMAGE_UNAVAILABLE, f"module {sha256} is not cached and there is no master to ask")
        return await self._fetch(sha256)

    # -- wasm thread side -----------------------------------------------------------------

    def _execute(self, run: _Run) -> None:
        """Compile (or fetch from cache), instantiate and run one module, then report."""
        tid = run.task.task_id
        try:
            if run.stop is not None:
                ended = self._stopped(run)
            else:
                ended = self._run_module(run)
        except _TaskFailed as e:
            ended = TaskEnded(tid, TaskState.FAILED, e.reason, e.message)
        except Exception as e:  # the outermost boundary of a wasm thread: one task fails, not the agent
            log.exception("wasm task %s failed in the runtime", tid)
            ended = TaskEnded(tid, TaskState.FAILED, Reason.RUNTIME_ERROR, f"{type(e).__name__}: {e}")
        self._post(self._finish, run, ended)

    def _run_module(self, run: _Run) -> TaskEnded:
        tid = run.task.task_id
        module = self._module(run.spec, run.module)
        run.workdir.mkdir(parents=True, exist_ok=True)
        store = wasmtime.Store(self._engine)
        # Keep the callback object alive as long as the store: wasmtime holds only its address.
        watcher = _watch_stops(store, run)
        try:
            store.set_limits(memory_size=run.memory_bytes)
            store.set_epoch_deadline(1)
            wasi = wasmtime.WasiConfig()
            wasi.argv = [run.task.name or tid, *run.task.args]
            wasi.env = sorted(run.task.environment().items())  # env and secret_env
            wasi.stdout_file = str(run.workdir / "stdout")
            wasi.stderr_file = str(run.workdir / "stderr")
            store.set_wasi(wasi)
            try:
                instance = self._linker.instantiate(store, module)
            except wasmtime.Trap as e:
                return self._outcome(run, e)
            except wasmtime.WasmtimeError as e:
                text = str(e)
                if "memory limits" in text or "memory minimum size" in text:
                    return TaskEnded(tid, TaskState.FAILED, Reason.MEMORY_LIMIT, _cause(text))
                return TaskEnded(tid, TaskState.FAILED, Reason.INVALID_TASK, f"cannot instantiate: {_cause(text)}")
            start = instance.exports(store).get("_start")
            if not isinstance(start, wasmtime.Func):
                return TaskEnded(tid, TaskState.FAILED, Reason.INVALID_TASK, "not a WASI command: no _start export")
            # A kill that came before the deadline was set did not interrupt this store: look again.
            if run.stop is not None:
                return self._stopped(run)
            self._post(self._on_started, run)
            try:
                start(store)
            except wasmtime.WasmtimeError as e:  # ExitTrap is one of these
                return self._outcome(run, e)
            except wasmtime.Trap as e:
                return self._outcome(run, e)
            return self._outcome(run, None)
        finally:
            store.close()
            del watcher

    def _outcome(self, run: _Run, error: Exception | None) -> TaskEnded:
        tid = run.task.task_id
        if isinstance(error, wasmtime.ExitTrap):
            if error.code == 0:
                return TaskEnded(tid, TaskState.FINISHED, Reason.COMMAND_EXITED, "exited with code 0")
            message = f"exited with code {error.code}"
            tail = _tail(run.workdir / "stderr")
            if tail:
                message += "; last stderr:\n" + tail
            return TaskEnded(tid, TaskState.FAILED, Reason.COMMAND_EXITED, message, error.code)
        if error is None:
            return TaskEnded(tid, TaskState.FINISHED, Reason.COMMAND_EXITED, "exited with code 0")
        if run.stop is not None:
            return self._stopped(run)
        text = error.message if isinstance(error, wasmtime.Trap) else str(error)
        return TaskEnded(tid, TaskState.FAILED, Reason.TRAP, _cause(text))

    @staticmethod
    def _stopped(run: _Run) -> TaskEnded:
        tid = run.task.task_id
        if run.stop is Reason.TIME_LIMIT:
            return TaskEnded(tid, TaskState.FAILED, Reason.TIME_LIMIT, f"ran longer than {run.time_limit:g}s")
        return TaskEnded(tid, TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK, "killed")

    # -- module cache ---------------------------------------------------------------------

    def _have_module(self, sha256: str) -> bool:
        with self._modules_lock:
            if sha256 in self._modules:
                return True
        return self._cache_dir is not None and (self._cache_dir / f"{sha256}.cwasm").is_file()

    def _module(self, spec: WasmSpec, data: bytes) -> wasmtime.Module:
        """The compiled module: from memory, from disk, or compiled now (and saved)."""
        sha256 = hashlib.sha256(data).hexdigest() if data else spec.module_sha256
        if data and spec.module_sha256 and spec.module_sha256.lower() != sha256:
            raise _TaskFailed(Reason.INVALID_TASK, "the module's bytes do not match its module_sha256")
        with self._modules_lock:
            module = self._modules.get(sha256)
            if module is not None:
                self._modules.move_to_end(sha256)
                self.cache_hits += 1
                return module
        module = self._load_serialized(sha256)
        if module is None:
            if not data:
                raise _TaskFailed(Reason.IMAGE_UNAVAILABLE, f"module {sha256} is not available on this agent")
            try:
                module = wasmtime.Module(self._engine, data)
            except wasmtime.WasmtimeError as e:
                raise _TaskFailed(Reason.INVALID_TASK, f"not a valid WebAssembly module: {_cause(str(e))}") from None
            self.compiled += 1
            self._save_serialized(sha256, module)
        with self._modules_lock:
            self._modules[sha256] = module
            while len(self._modules) > CACHED_MODULES:
                self._modules.popitem(last=False)
        return module

    def _load_serialized(self, sha256: str) -> wasmtime.Module | None:
        if self._cache_dir is None:
            return None
        path = self._cache_dir / f"{sha256}.cwasm"
        if not path.is_file():
            return None
        try:
            module = wasmtime.Module.deserialize_file(self._engine, str(path))
        except wasmtime.WasmtimeError as e:  # another wasmtime version or engine config: compile again
            log.info("cached module %s not loadable (%s); compiling it again", sha256, _cause(str(e)))
            return None
        self.deserialized += 1
        return module

    def _save_serialized(self, sha256: str, module: wasmtime.Module) -> None:
        if self._cache_dir is None:
            return
        try:
            self._cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = self._cache_dir / f".{sha256}.{threading.get_ident()}.tmp"
            tmp.write_bytes(module.serialize())
            os.replace(tmp, self._cache_dir / f"{sha256}.cwasm")
        except OSError as e:  # a full disk costs a recompile after restart, nothing more
            log.warning("cannot save compiled module %s: %s", sha256, e)


def _watch_stops(store: wasmtime.Store, run: _Run) -> object:
    """Install the epoch deadline callback that traps ``run`` once it is marked to stop."""

    def on_deadline(
        _ctx: object, _env: object, delta: ctypes.Array[ctypes.c_uint64], kind: ctypes.Array[ctypes.c_uint8]
    ) -> int:
        if run.stop is not None:
            error = ffi.wasmtime_error_new(f"edgerm: {run.stop.value.lower()}".encode())
            return int(ctypes.cast(error, ctypes.c_void_p).value or 0)
        delta[0] = 1
        kind[0] = _CONTINUE
        return 0

    # ctypes types of wasmtime's epoch deadline callback (argument 1) and its finalizer (argument 3).
    argtypes: Any = ffi._wasmtime_store_epoch_deadline_callback.argtypes
    callback = argtypes[1](on_deadline)
    ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), callback, None, argtypes[3]())
    return callback


def _cause(text: str) -> str:
    """The reason line(s) of a wasmtime error, without the backtrace."""
    head, sep, cause = text.partition("Caused by:")
    out = cause if sep else head
    return " ".join(line.strip() for line in out.strip().splitlines() if line.strip()) or text.strip()


def _tail(path: Path) -> str:
    """The last lines of a (possibly large) text file."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - _STDERR_TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").rstrip("\n").splitlines()
    return "\n".join(lines[-STDERR_LINES:])
