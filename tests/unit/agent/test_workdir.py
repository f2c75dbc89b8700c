"""The work-dir lock: one agent per work dir, a clear error naming the holder, no stale lock after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgerm.agent.workdir import LOCK_FILE, WorkDirLock
from edgerm.errors import ConfigError, WorkDirInUse


def test_a_second_lock_on_the_same_dir_names_the_dir_and_the_holder(tmp_path: Path) -> None:
    with WorkDirLock.acquire(tmp_path) as lock:
        assert lock.held
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
        with pytest.raises(WorkDirInUse) as info:
            WorkDirLock.acquire(tmp_path)
        assert str(tmp_path) in str(info.value) and f"pid {os.getpid()}" in str(info.value)
    assert not lock.held
    WorkDirLock.acquire(tmp_path).release()  # free again after release


def test_release_is_idempotent_and_creates_the_dir(tmp_path: Path) -> None:
    lock = WorkDirLock.acquire(tmp_path / "new" / "dir")
    lock.release()
    lock.release()
    assert (tmp_path / "new" / "dir" / LOCK_FILE).is_file()


def test_an_unusable_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot open the lock file"):
        WorkDirLock.acquire(blocker)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    holder = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from edgerm.agent.workdir import WorkDirLock
        WorkDirLock.acquire(Path({str(tmp_path)!r}))
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"locked"
        with pytest.raises(WorkDirInUse, match=f"pid {proc.pid}"):
            WorkDirLock.acquire(tmp_path)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        WorkDirLock.acquire(tmp_path).release()  # the kernel dropped the dead process's lock
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
