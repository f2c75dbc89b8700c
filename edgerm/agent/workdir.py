"""The agent's lock on its work dir: one identity, one agent.

The work dir holds the agent id, so two agents on one dir would be one
agent to the master, each killing the other's tasks. ``WorkDirLock`` takes
an exclusive ``flock`` on ``work_dir/agent.lock`` and writes its pid there.
Rules:

- Acquired before anything else reads the work dir (the id, the journal,
  the tasks), held for the life of the agent, released by :meth:`release`
  or, if the process dies (``kill -9``, a power cut), by the kernel: a
  crashed agent never leaves a stale lock behind.
- A second agent on the same dir gets :class:`~edgerm.errors.WorkDirInUse`
  at once (no waiting), naming the dir and the pid that holds it.
- ``flock`` locks belong to an open file, so two agents in one process
  (tests) exclude each other too.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from types import TracebackType

from edgerm.errors import ConfigError, WorkDirInUse

log = logging.getLogger(__name__)

LOCK_FILE = "agent.lock"


class WorkDirLock:
    """An exclusive lock on an agent work dir (see the module docstring)."""

    def __init__(self, work_dir: Path, fd: int) -> None:
        self.work_dir = work_dir
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, work_dir: Path) -> WorkDirLock:
        """Lock ``work_dir`` (created if missing) or raise ``WorkDirInUse``."""
        path = work_dir / LOCK_FILE
        try:
            work_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise ConfigError(f"{work_dir}: cannot open the lock file: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise WorkDirInUse(f"work dir {work_dir} is in use by another agent ({who})") from None
        except OSError as e:
            os.close(fd)
            raise ConfigError(f"{work_dir}: cannot lock {path.name}: {e.strerror or e}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        log.debug("locked work dir %s (pid %d)", work_dir, os.getpid())
        return cls(work_dir, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Unlock (idempotent). The pid is cleared so the file names no live holder."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> WorkDirLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0
