"""RunPool: jobs run in at most max_threads threads, reused; a failing job does not stop its thread."""

from __future__ import annotations

import threading
import time

import pytest

from edgerm.agent.threads import RunPool


def test_jobs_run_in_reused_threads_up_to_the_limit() -> None:
    pool = RunPool(3, "t")
    done: list[str] = []
    names: set[str] = set()
    lock = threading.Lock()

    def job(n: int) -> None:
        with lock:
            done.append(f"j{n}")
            names.add(threading.current_thread().name)

    for n in range(50):
        pool.submit(job, n)
        time.sleep(0.001)
    deadline = time.monotonic() + 5
    while len(done) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(done) == sorted(f"j{n}" for n in range(50))
    assert pool.threads <= 3 and names <= {"t_0", "t_1", "t_2"}
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(job, 99)


def test_blocked_threads_make_room_for_new_ones_and_a_failing_job_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    pool = RunPool(2, "b")
    release = threading.Event()
    ran = threading.Event()

    def fail() -> None:
        raise ValueError("boom")

    pool.submit(release.wait, 5)  # holds one thread
    pool.submit(fail)  # a second thread: it fails and goes on
    deadline = time.monotonic() + 5
    while "boom" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    pool.submit(ran.set)  # the failed job's thread takes this one
    assert ran.wait(5) and pool.threads == 2 and "a job failed" in caplog.text
    release.set()
    pool.shutdown(wait=True)


def test_shutdown_drops_jobs_not_started() -> None:
    pool = RunPool(1, "s")
    release = threading.Event()
    later: list[int] = []
    pool.submit(release.wait, 5)
    pool.submit(later.append, 1)
    pool.shutdown(wait=False)
    release.set()
    time.sleep(0.1)
    assert later == []
    with pytest.raises(ValueError):
        RunPool(0, "x")
