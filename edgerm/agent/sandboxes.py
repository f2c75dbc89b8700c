"""Task sandboxes: ``work_dir/tasks/<task>/``, made for each task and recycled when old.

Each task gets a directory of its own (its WASI ``stdout`` / ``stderr``, a
Docker task's ``/edgerm/sandbox``). The sandboxes of the last
:data:`KEPT_SANDBOXES` finished tasks are kept for inspection; older ones
are retired :data:`RETIRE_SANDBOXES` at a time (between 32 and 47 are on
disk, spares aside).

Why recycle: creating an inode (a directory, two files per task) on a file
system that also deletes them at the same rate is expensive: ext4 without a
journal scans past every inode deleted in the last seconds to find a free
one (``recently_deleted``), which at a few hundred tasks a second was about
half of an agent's CPU. So a retired sandbox that holds nothing but regular
``stdout`` / ``stderr`` files is not removed: its files are truncated to
zero (no reader can see the old task's output) and it is renamed to
``tasks/.spare-<hex>``; a new task's sandbox is a spare renamed to its name
(a WASI runtime truncates the files again when it opens them). A sandbox
that holds anything else (a Docker task may write what it likes) is removed
as before. A task name never starts with a dot (``sandbox_name``), so a
spare never collides with a sandbox. At most :data:`MAX_SPARES` spares are
kept; spares found at start (from an earlier process) are used too.

Blocking work (:func:`make`, :func:`retire`, :func:`find_spares`) runs in a
thread; the :class:`Sandboxes` bookkeeping and :func:`claim` (one rename of
a spare, no inode made) run on the event loop.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections import deque
from pathlib import Path

from edgerm.ids import TaskId

KEPT_SANDBOXES = 32
RETIRE_SANDBOXES = 16  # older sandboxes are retired this many at a time
MAX_SPARES = 64
SPARE_PREFIX = ".spare-"
RECYCLED_FILES = frozenset({"stdout", "stderr"})  # what a sandbox may hold and still be recycled
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def sandbox_name(task_id: TaskId) -> str:
    """A directory name for a task id that may hold any characters (never starting with a dot)."""
    readable = _UNSAFE.sub("_", task_id)[:64].lstrip(".") or "task"
    if readable == task_id:
        return readable
    return f"{readable}-{hashlib.sha256(task_id.encode()).hexdigest()[:10]}"


class Sandboxes:
    """Which sandboxes are kept and which spares wait (event-loop side; see the module docstring)."""

    def __init__(self, root: Path, *, kept: int = KEPT_SANDBOXES, batch: int = RETIRE_SANDBOXES) -> None:
        self.root = root
        self._kept = kept
        self._batch = batch
        self._finished: deque[Path] = deque()
        self._spares: list[Path] = []

    def path(self, task_id: TaskId) -> Path:
        return self.root / sandbox_name(task_id)

    def take_spare(self) -> Path | None:
        """A spare for a new sandbox (give it back with :meth:`add_spares` if :func:`make` did not use it)."""
        return self._spares.pop() if self._spares else None

    def add_spares(self, spares: list[Path]) -> list[Path]:
        """Keep these spares; returns those beyond :data:`MAX_SPARES`, to remove."""
        room = max(0, MAX_SPARES - len(self._spares))
        self._spares.extend(spares[:room])
        return spares[room:]

    def finished(self, task_id: TaskId) -> list[Path]:
        """A task's sandbox is done with: the old sandboxes to :func:`retire` now (often none)."""
        self._finished.append(self.path(task_id))
        old: list[Path] = []
        if len(self._finished) >= self._kept + self._batch:  # one thread hop per batch tasks
            while len(self._finished) > self._kept:
                old.append(self._finished.popleft())
        return old

    @property
    def spares(self) -> int:
        return len(self._spares)


def claim(spare: Path, workdir: Path) -> bool:
    """Rename a spare to a new sandbox: one metadata call, cheap enough for the event loop. False: not done."""
    try:
        os.rename(spare, workdir)
    except OSError:
        return False
    return True


def make(workdir: Path, spare: Path | None) -> bool:
    """Make a sandbox (blocking): rename the spare to it, else create it. True if the spare was used."""
    if spare is not None:
        try:
            os.rename(spare, workdir)  # fails if workdir exists and is not empty: it is kept as it is
            return True
        except FileNotFoundError:
            if not spare.exists():  # the spare is gone (removed by hand?): forget it
                spare = None
        except OSError:
            pass
    workdir.mkdir(parents=True, exist_ok=True)
    return spare is None


def retire(old: list[Path]) -> list[Path]:
    """Turn old sandboxes into spares, or remove those that cannot be (blocking). Returns the spares."""
    spares: list[Path] = []
    for path in old:
        spare = _recycle(path)
        if spare is not None:
            spares.append(spare)
        else:
            shutil.rmtree(path, ignore_errors=True)
    return spares


def remove(paths: list[Path]) -> None:
    """Remove these directories (blocking)."""
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def find_spares(root: Path) -> list[Path]:
    """Spares an earlier process left (blocking)."""
    try:
        with os.scandir(root) as entries:
            return [Path(e.path) for e in entries if e.name.startswith(SPARE_PREFIX) and e.is_dir()]
    except OSError:
        return []


def _recycle(path: Path) -> Path | None:
    """Empty the sandbox's files and rename it to a spare; None if it holds anything else or that failed."""
    try:
        with os.scandir(path) as entries:
            found = list(entries)
        if any(e.name not in RECYCLED_FILES or not e.is_file(follow_symlinks=False) for e in found):
            return None
        for e in found:
            os.truncate(e.path, 0)
        spare = path.with_name(SPARE_PREFIX + uuid.uuid4().hex[:16])
        os.rename(path, spare)
        return spare
    except OSError:
        return None
