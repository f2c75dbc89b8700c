"""Where the master's registry lives: the ``StateStore`` protocol and its backends.

Role: turn :class:`~edgerm.master.registry.Changes` into durable writes and
load a :class:`~edgerm.master.registry.Registry` back at start-up. Another
backend (etcd, for master failover) implements the same three methods; the
core and the service do not change.

Backends:
- :class:`SqliteStore`: one SQLite database in the state dir, WAL mode.
  ``sync="normal"`` (the default) makes every committed write survive a
  crash or ``kill -9`` of the master process (the WAL is in the OS page
  cache at commit); ``sync="full"`` also survives a power cut, at one fsync
  (~8 ms on this machine's disk) per group commit. Module bytes are files
  ``modules/<sha256>`` beside the database.
- :class:`MemoryStore`: keeps nothing (``--state-dir :memory:``).

Rules:
- ``apply`` is called from ONE writer thread (:mod:`edgerm.master.writer`),
  with every change batch that queued up since the last commit: one
  transaction for all of them (group commit). Of a task written several
  times in one group, only its last row (or its deletion) is written: no
  reader sees the transaction's middle. ``load`` and ``close`` are called
  when no writer runs.
- Rows are encoded with the wire schema (:mod:`edgerm.wire`), so the
  registry's format is the protocol's and evolves with it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Protocol

from edgerm import wire
from edgerm.errors import ConfigError
from edgerm.ids import TaskId
from edgerm.master.registry import AgentRow, Changes, FrameworkRow, Registry, TaskRow

SCHEMA_VERSION = "1"
MEMORY = ":memory:"

_SCHEMA = """
create table if not exists meta (key text primary key, value text not null);
create table if not exists frameworks (id text primary key, info blob not null, disconnected_at real);
create table if not exists agents (
  id text primary key, info blob not null, last_seen real not null, unreachable_since real
);
create table if not exists tasks (
  id text primary key, framework_id text not null, agent_id text not null,
  info blob not null, status blob not null, acknowledged integer not null
);
"""


class StateStore(Protocol):
    """A durable home for the registry. See the module docstring."""

    def load(self) -> Registry: ...

    def apply(self, batches: Sequence[Changes]) -> None: ...

    def close(self) -> None: ...

    @property
    def durable(self) -> bool:
        """False when writes go nowhere (the service then skips the writer)."""
        ...

    def module(self, sha256: str) -> bytes | None:
        """A module kept by hash, or None."""
        ...


class MemoryStore:
    """Keeps nothing: every start is a first start."""

    durable = False

    def load(self) -> Registry:
        return Registry()

    def apply(self, batches: Sequence[Changes]) -> None:
        pass

    def close(self) -> None:
        pass

    def module(self, sha256: str) -> bytes | None:
        return None


class SqliteStore:
    """The registry in ``<state_dir>/registry.db`` (WAL mode), modules in ``<state_dir>/modules/``."""

    durable = True

    def __init__(self, state_dir: str | os.PathLike[str], sync: str = "normal") -> None:
        if sync not in ("normal", "full"):
            raise ConfigError(f"registry sync mode must be 'normal' or 'full', not {sync!r}")
        self.dir = Path(state_dir)
        self._modules = self.dir / "modules"
        try:
            self._modules.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock = _lock_dir(self.dir)
            # check_same_thread=False: opened here, used by the one writer thread afterwards.
            self._db = sqlite3.connect(self.dir / "registry.db", isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"cannot open the master registry in {self.dir}: {e}") from None
        self._db.execute("pragma journal_mode=wal")
        self._db.execute(f"pragma synchronous={sync}")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("select value from meta where key = 'schema'").fetchone()
        if row is None:
            self._db.execute("insert into meta values ('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            raise ConfigError(f"{self.dir}/registry.db has schema {row[0]}, this master reads {SCHEMA_VERSION}")

    # -- loading ---------------------------------------------------------------

    def load(self) -> Registry:
        db = self._db
        frameworks = tuple(
            FrameworkRow(wire.decode_framework_info(info), disconnected_at)
            for info, disconnected_at in db.execute("select info, disconnected_at from frameworks order by id")
        )
        agents = tuple(
            AgentRow(wire.decode_agent_info(info), last_seen, unreachable_since)
            for info, last_seen, unreachable_since in db.execute(
                "select info, last_seen, unreachable_since from agents order by id"
            )
        )
        tasks = tuple(
            TaskRow(wire.decode_task_info(info), wire.decode_task_status(status), bool(acknowledged))
            for info, status, acknowledged in db.execute("select info, status, acknowledged from tasks order by rowid")
        )
        extra = {k: v for k, v in db.execute("select key, value from meta")}
        return Registry(frameworks, agents, tasks, extra)

    def module(self, sha256: str) -> bytes | None:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            return None
        try:
            return (self._modules / sha256).read_bytes()
        except OSError:
            return None

    # -- writing (writer thread) ---------------------------------------------------

    def apply(self, batches: Sequence[Changes]) -> None:
        for batch in batches:
            for module in batch.modules:
                self._write_module(module)
        db = self._db
        db.execute("begin")
        try:
            for b in batches:
                for f in b.frameworks:
                    db.execute(
                        "insert or replace into frameworks values (?, ?, ?)",
                        (f.info.id, wire.encode_framework_info(f.info), f.disconnected_at),
                    )
                for fid in b.frameworks_gone:
                    db.execute("delete from frameworks where id = ?", (fid,))
                for a in b.agents:
                    db.execute(
                        "insert or replace into agents values (?, ?, ?, ?)",
                        (
                            a.info.id,
                            wire.encode_agent_info(a.info),
                            a.last_seen,
                            a.unreachable_since,
                        ),
                    )
                for aid in b.agents_gone:
                    db.execute("delete from agents where id = ?", (aid,))
                if b.seen:
                    db.executemany("update agents set last_seen = ? where id = ?", [(t, aid) for aid, t in b.seen])
            rows, gone = _last_task_writes(batches)
            db.executemany("delete from tasks where id = ?", [(tid,) for tid in gone])
            db.executemany(
                "insert or replace into tasks values (?, ?, ?, ?, ?, ?)",
                [
                    (
                        t.info.task_id,
                        t.info.framework_id,
                        t.info.agent_id,
                        wire.encode_task_info(t.info),
                        wire.encode_task_status(t.status),
                        int(t.acknowledged),
                    )
                    for t in rows
                ],
            )
            db.execute("commit")
        except BaseException:
            db.execute("rollback")
            raise

    def _write_module(self, module: bytes) -> None:
        path = self._modules / hashlib.sha256(module).hexdigest()
        if path.exists():
            return
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(module)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def close(self) -> None:
        self._db.close()
        self._lock.close()  # releases the flock


def _last_task_writes(batches: Sequence[Changes]) -> tuple[list[TaskRow], list[TaskId]]:
    """What a group of batches leaves of each task: its last row (in the order of the last writes, which
    ``load`` keeps), or its deletion. A task's RUNNING, FINISHED and acknowledged rows often come in one group:
    only the last is written (the group is one transaction, so nothing in between is ever seen on disk)."""
    rows: dict[TaskId, TaskRow] = {}
    gone: dict[TaskId, None] = {}
    for b in batches:
        for t in b.tasks:  # within a batch the upserts come before the deletions, as they always were applied
            tid = t.info.task_id
            rows.pop(tid, None)
            rows[tid] = t
            gone.pop(tid, None)
        for tid in b.tasks_gone:
            rows.pop(tid, None)
            gone[tid] = None
    return list(rows.values()), list(gone)


def _lock_dir(state_dir: Path) -> IO[str]:
    """Hold ``<state_dir>/lock`` (flock) with our pid in it; a second master on the dir is refused."""
    path = state_dir / "lock"
    f = open(path, "a+")  # noqa: SIM115 - held open for the store's lifetime
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise ConfigError(f"state dir {state_dir} is in use by another master (pid {holder})") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def open_store(state_dir: str, sync: str = "normal") -> StateStore:
    """``:memory:`` -> :class:`MemoryStore`, else a :class:`SqliteStore` in that dir."""
    if state_dir == MEMORY:
        return MemoryStore()
    return SqliteStore(state_dir, sync)
