"""The agent's journal: what must outlive the agent process, in its work dir.

``work_dir/state/journal.jsonl`` is an append-only file of JSON lines, one
record each:

===========  ==============================================================
``launch``   a task was handed to a runtime (its launch record)
``update``   a status update the master has not acknowledged yet
``ack``      the master acknowledged that update
``forget``   the task's end was acknowledged: its launch record is done
===========  ==============================================================

Replaying it (:meth:`Journal.load`, at start) gives every task that was
live or had updates waiting, with those updates in order: the agent core
takes them back (``state.Restored``) and delivers them, and relaunches or
fails the tasks that died with the process. Rules:

- **Durable before sent.** Records are queued on the event loop and
  written by one writer thread of the journal's own, many records per
  ``fsync`` (group commit): it takes whatever queued while it was writing,
  without a round trip through the loop, and tells the loop once per batch.
  :meth:`durable` waits until everything queued so far is on disk; the
  service awaits it before it sends an update or launches a task, so a
  crash never loses a fact the master was not told.
- **Torn tails are expected.** ``kill -9`` or a power cut can cut the last
  line short; replay drops a last line that does not parse (a bad line in
  the middle is skipped with a warning).
- **Bounded.** The core bounds what is live (``AgentCore.max_pending``);
  the file is compacted (rewritten with only live records, atomically)
  when it holds more than :data:`COMPACT_AT` lines and four times the live
  ones, and at every load.
- **What a launch record holds.** For a task with restart policy NEVER
  only what reporting it needs (id, name, executor, resources, owner):
  neither its env, args nor secrets. For ON_AGENT_RESTART the whole
  ``TaskInfo`` (it must run again, secrets included: the file is mode 0600)
  without inline module bytes; those are kept once per content hash in
  ``work_dir/modules/<sha256>.wasm`` (:class:`ModuleStore`).
- A disk error does not stop the agent: it is logged once, and updates go
  on from memory (a restart may then lose them).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgerm.errors import EdgermError
from edgerm.ids import TaskId
from edgerm.model import RestartPolicy, TaskInfo, TaskStatus, WasmSpec
from edgerm.wire import decode_task_info, decode_task_status, encode_task_info, encode_task_status

log = logging.getLogger(__name__)

JOURNAL_FILE = Path("state") / "journal.jsonl"
MODULES_DIR = "modules"
COMPACT_AT = 4096  # lines; below this the file is never rewritten while running


@dataclass(frozen=True, slots=True)
class JournalTask:
    """One task as replayed: its launch record (if it was launched) and its unacknowledged updates."""

    task_id: TaskId
    executor: str
    info: TaskInfo | None
    pending: tuple[TaskStatus, ...]


def launch_record(task: TaskInfo) -> TaskInfo:
    """What the journal keeps of a launched task (see the module docstring)."""
    container = task.container
    if isinstance(container, WasmSpec) and container.module:
        container = WasmSpec(module_sha256=container.sha256, time_limit=container.time_limit)
    if task.restart_policy is RestartPolicy.ON_AGENT_RESTART:
        return replace(task, container=container)
    return TaskInfo(
        task_id=task.task_id,
        name=task.name,
        agent_id=task.agent_id,
        resources=task.resources,
        container=container,
        kill_grace=task.kill_grace,
        framework_id=task.framework_id,
        restart_policy=task.restart_policy,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# The lines are what json.dumps would write for these dicts, formatted directly (several per task).
_q = json.encoder.encode_basestring_ascii  # a JSON string literal, quoted


def _launch_line(task: TaskInfo) -> str:
    blob = _b64(encode_task_info(launch_record(task)))
    return f'{{"op": "launch", "task": {_q(task.task_id)}, "executor": {_q(task.executor)}, "info": "{blob}"}}'


def _update_line(status: TaskStatus, executor: str) -> str:
    blob = _b64(encode_task_status(status))
    return (
        f'{{"op": "update", "task": {_q(status.task_id)}, "uuid": {_q(status.uuid)}, '
        f'"state": {_q(status.state.value)}, "executor": {_q(executor)}, "status": "{blob}"}}'
    )


def _ack_line(task_id: TaskId, uuid: str) -> str:
    return f'{{"op": "ack", "task": {_q(task_id)}, "uuid": {_q(uuid)}}}'


def _forget_line(task_id: TaskId) -> str:
    return f'{{"op": "forget", "task": {_q(task_id)}}}'


class Journal:
    """The append-only journal of one work dir (see the module docstring)."""

    def __init__(self, work_dir: Path, *, fsync: bool = True) -> None:
        self.path = work_dir / JOURNAL_FILE
        self._fsync = fsync
        # The live records, in file order: what a compaction writes.
        self._launches: dict[TaskId, str] = {}
        self._executors: dict[TaskId, str] = {}
        self._pending: dict[tuple[TaskId, str], str] = {}
        self._lines = 0  # lines in the file (counted on the loop as they are queued), for compaction
        # Loop -> writer thread: lines, or a list of the live lines (compact: the file becomes these).
        self._queue: deque[str | list[str]] = deque()
        self._queued = 0  # records ever queued
        self._written = 0  # records ever written (or given up on)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._writer: threading.Thread | None = None
        # Loop -> writer: one token when lines were queued while it slept (a C-level queue: an Event's
        # set() is a Python-level condition: 8 % of an agent's GIL samples in bench/task_throughput.py).
        self._wake: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._wake_due = False  # a token is in _wake (or the writer is awake and has not yet cleared this)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._file: Any = None
        self._failed = False
        self._closed = False

    # -- start ----------------------------------------------------------------------

    def load(self) -> list[JournalTask]:
        """Replay the file (blocking: call from a thread, before anything is queued) and compact it."""
        launches: dict[TaskId, tuple[str, str, TaskInfo]] = {}  # task -> (executor, line, launch record)
        pending: dict[tuple[TaskId, str], tuple[str, str, TaskStatus]] = {}  # (task, uuid) -> (executor, line, s)
        ended: set[TaskId] = set()
        for n, rec, line in self._records():
            op, task_id = rec.get("op"), TaskId(str(rec.get("task", "")))
            try:
                if op == "launch":
                    record = decode_task_info(base64.b64decode(rec["info"]))
                    launches[task_id] = (str(rec["executor"]), line, record)
                    ended.discard(task_id)
                elif op == "update":
                    status = decode_task_status(base64.b64decode(rec["status"]))
                    pending[(task_id, status.uuid)] = (str(rec["executor"]), line, status)
                    if status.state.terminal:
                        ended.add(task_id)
                elif op == "ack":
                    pending.pop((task_id, str(rec["uuid"])), None)
                elif op == "forget":
                    launches.pop(task_id, None)
                else:
                    raise KeyError(op)
            except (KeyError, ValueError, TypeError, EdgermError) as e:
                log.warning("%s:%d: skipping a bad record (%s)", self.path, n, e)
        # A task whose end is recorded and acknowledged is done, even if its "forget" was not written.
        waiting = {task_id for task_id, _ in pending}
        for task_id in ended - waiting:
            launches.pop(task_id, None)
        out: list[JournalTask] = []
        by_task: dict[TaskId, list[TaskStatus]] = {}
        for (task_id, _), (executor, _, status) in pending.items():
            by_task.setdefault(task_id, []).append(status)
            self._executors.setdefault(task_id, executor)
        for task_id, (executor, line, _) in launches.items():
            self._launches[task_id] = line
            self._executors[task_id] = executor
        for key, (_, line, _) in pending.items():
            self._pending[key] = line
        for task_id in dict.fromkeys([*launches, *by_task]):
            info = launches[task_id][2] if task_id in launches else None
            out.append(JournalTask(task_id, self._executors[task_id], info, tuple(by_task.get(task_id, ()))))
        self._rewrite(self._live_lines())
        return out

    def _records(self) -> Iterable[tuple[int, dict[str, Any], str]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        lines = data.split(b"\n")
        for n, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                if n == len(lines):  # the last line, cut short by a crash
                    log.info("%s: dropping a torn last record (%d bytes)", self.path, len(raw))
                else:
                    log.warning("%s:%d: skipping a bad line (%s)", self.path, n, e)
                continue
            yield n, rec, raw.decode("utf-8")

    # -- records (on the event loop) -------------------------------------------------------

    def launch(self, task: TaskInfo) -> None:
        line = _launch_line(task)
        self._launches[task.task_id] = line
        self._executors[task.task_id] = task.executor
        self._append(line)

    def has_launch(self, task_id: TaskId) -> bool:
        return task_id in self._launches

    def update(self, status: TaskStatus, executor: str) -> None:
        line = _update_line(status, executor)
        self._pending[(status.task_id, status.uuid)] = line
        self._append(line)

    def ack(self, task_id: TaskId, uuid: str) -> None:
        if self._pending.pop((task_id, uuid), None) is not None:
            self._append(_ack_line(task_id, uuid))

    def forget(self, task_id: TaskId) -> None:
        if self._launches.pop(task_id, None) is not None:
            self._executors.pop(task_id, None)
            self._append(_forget_line(task_id))

    def live(self) -> tuple[int, int]:
        """(launch records, unacknowledged updates) held."""
        return len(self._launches), len(self._pending)

    async def durable(self) -> None:
        """Wait until every record queued so far is written (and synced)."""
        target = self._queued
        if self._written >= target:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        await future

    async def close(self) -> None:
        """Write what is queued, then close the file (and stop the writer thread)."""
        self._closed = True
        writer = self._writer
        if writer is not None:
            self._wake.put(True)
            await asyncio.to_thread(writer.join)
            self._writer = None
        if self._file is not None:
            await asyncio.to_thread(self._file.close)
            self._file = None

    # -- the writer ----------------------------------------------------------------------

    def _append(self, line: str) -> None:
        self._queued += 1
        self._lines += 1
        if self._should_compact():
            live = self._live_lines()
            self._lines = len(live)
            self._queue.append(live)  # the file becomes the live records: they include this line's effect
        else:
            self._queue.append(line)
        if self._writer is None:
            self._loop = asyncio.get_running_loop()
            self._writer = threading.Thread(target=self._write_thread, name="edgerm-journal", daemon=True)
            self._writer.start()
        if not self._wake_due:
            self._wake_due = True
            self._wake.put(True)

    def _write_thread(self) -> None:
        """Writer thread: write what is queued, in batches, until the journal is closed."""
        while True:
            self._wake.get()
            self._wake_due = False  # before taking the queue: a line queued after this wakes us again
            taken: list[str | list[str]] = []
            while self._queue:
                taken.append(self._queue.popleft())
            if taken:
                self._write_taken(taken)
            if self._closed and not self._queue:
                return

    def _write_taken(self, taken: list[str | list[str]]) -> None:
        # A compaction covers every line queued before it: write the last one and the lines after it.
        last = max((i for i, item in enumerate(taken) if isinstance(item, list)), default=-1)
        live = taken[last] if last >= 0 else None
        batch = [item for item in taken[last + 1 :] if isinstance(item, str)]
        try:
            if live is not None:
                assert isinstance(live, list)
                self._write([], live)
            if batch:
                self._write(batch, None)
            error: Exception | None = None
        except Exception as e:  # the writer thread's boundary: a disk error (or a bug) loses no waiter
            error = e
        self._post(len(taken), error)

    def _post(self, count: int, error: Exception | None) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._wrote, count, error)

    def _wrote(self, count: int, error: Exception | None) -> None:
        """Loop side: ``count`` more records are written (or given up on); wake who waited for them."""
        if error is not None:
            if not self._failed:
                log.warning(
                    "cannot write the journal %s (%s): status updates are kept in memory only", self.path, error
                )
            self._failed = True
        self._written += count
        upto = self._written
        still: list[tuple[int, asyncio.Future[None]]] = []
        for target, future in self._waiters:
            if target <= upto:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((target, future))
        self._waiters = still

    def _should_compact(self) -> bool:
        lines = self._lines
        return lines > COMPACT_AT and lines > 4 * (len(self._launches) + len(self._pending))

    def _live_lines(self) -> list[str]:
        return [*self._launches.values(), *self._pending.values()]

    def _write(self, batch: list[str], live: list[str] | None) -> None:
        """Writer thread: append a batch, or (compaction) replace the file by the live records."""
        if live is not None:
            if self._file is not None:
                self._file.close()
                self._file = None
            self._rewrite(live, count=False)
            return
        if self._file is None:
            self._file = _open_append(self.path)
        self._file.write("".join(line + "\n" for line in batch))
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def _rewrite(self, lines: list[str], *, count: bool = True) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            if self._fsync:
                os.fsync(f.fileno())
        os.replace(tmp, self.path)
        if self._fsync:
            _fsync_dir(self.path.parent)
        if count:  # at load; while running the loop counts
            self._lines = len(lines)


def _open_append(path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ModuleStore:
    """WebAssembly module bytes by content hash, for tasks that must run again after a restart."""

    def __init__(self, work_dir: Path, *, fsync: bool = True) -> None:
        self.dir = work_dir / MODULES_DIR
        self._fsync = fsync

    def path(self, sha256: str) -> Path:
        return self.dir / f"{sha256.lower()}.wasm"

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def load(self, sha256: str) -> bytes | None:
        try:
            return self.path(sha256).read_bytes()
        except OSError:
            return None

    def save(self, sha256: str, data: bytes) -> None:
        """Keep ``data`` under its hash (atomic; blocking: call from a thread)."""
        path = self.path(sha256)
        if path.is_file():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            if self._fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)

    def prune(self, keep: Iterable[str]) -> None:
        """Delete kept modules no launch record names any more (blocking)."""
        wanted = {f"{sha.lower()}.wasm" for sha in keep}
        try:
            entries = list(self.dir.glob("*.wasm"))
        except OSError:
            return
        for path in entries:
            if path.name not in wanted:
                path.unlink(missing_ok=True)
