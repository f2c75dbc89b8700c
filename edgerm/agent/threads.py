"""``RunPool``: threads that run blocking jobs (wasm modules) handed over from the event loop.

Like a ``ThreadPoolExecutor`` without futures: at most ``max_threads``
threads, started when a job finds none idle, kept afterwards. Why not the
executor: its ``submit`` takes a Python-level semaphore (``threading``
locks and conditions) that the workers take too, so under load the loop and
the workers contended for it while handing the GIL back and forth (7 % of
an agent's loop time at a few hundred tasks a second). Here the hand-over
is two C-level queues: the jobs, and one token per idle thread.

**Run slots.** A thread that has a job waits for one of ``parallel`` slots
before it runs it. A short job (a WASI command that prints a line) is
mostly Python and ctypes calls that take and give back the GIL: thirty-two
of them at once only fight for it (an agent spent 1.2-2.0 ms of CPU per
hello-world task with 32 running together, 0.45 ms one at a time). A job
still running after ``long_after`` seconds is long: it is in wasm code,
which runs without the GIL, so a monitor thread (awake only while jobs run)
gives its slot to the next job and the long job returns none when it ends.
So short jobs take turns, long ones all run at once, and a job waits for a
slot at most about ``long_after`` behind long ones.

A job reports its own result (it is run for its effect); an exception that
escapes one is logged and the thread goes on. Threads are daemons: one
stuck in a host call does not keep the process from exiting.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_STOP = None


class _Slot:
    """A job that is running: when it started and whether it still holds its run slot."""

    __slots__ = ("holds", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.holds = True


class RunPool:
    def __init__(self, max_threads: int, name: str, *, parallel: int = 1, long_after: float = 0.005) -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        if not long_after > 0:
            raise ValueError("long_after must be a positive number of seconds")
        self._max = max_threads
        self._name = name
        self._long_after = long_after
        self._jobs: queue.SimpleQueue[tuple[Callable[..., object], tuple[object, ...]] | None] = queue.SimpleQueue()
        self._idle: queue.SimpleQueue[bool] = queue.SimpleQueue()  # one token per thread waiting for a job
        self._slots: queue.SimpleQueue[bool] = queue.SimpleQueue()  # one token per free run slot
        for _ in range(parallel):
            self._slots.put(True)
        self._lock = threading.Lock()  # guards _running and _monitor_idle
        self._running: dict[int, _Slot] = {}  # thread ident -> its running job
        self._monitor_idle = True  # the monitor waits on _wake (started at the first job)
        self._wake: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._monitor: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._closed = False
        #: Jobs whose slot was handed on because they ran past ``long_after`` (for tests and metrics).
        self.went_long = 0

    @property
    def threads(self) -> int:
        return len(self._threads)

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` in a pool thread (from the loop thread only)."""
        if self._closed:
            raise RuntimeError("the pool is shut down")
        self._jobs.put((fn, args))
        if self._monitor is None:
            self._monitor = threading.Thread(target=self._watch, name=f"{self._name}_monitor", daemon=True)
            self._monitor.start()
        try:
            self._idle.get_nowait()  # an idle thread will take it
        except queue.Empty:
            if len(self._threads) < self._max:
                thread = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def shutdown(self, wait: bool = True) -> None:
        """Drop the jobs not started, stop the threads once their job is done; ``wait``: join them."""
        self._closed = True
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            self._jobs.put(_STOP)
        self._wake.put(True)
        if wait:
            for thread in self._threads:
                thread.join()

    def _work(self) -> None:
        me = threading.get_ident()
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            fn, args = job
            self._slots.get()
            slot = _Slot(time.monotonic())
            with self._lock:
                self._running[me] = slot
                wake, self._monitor_idle = self._monitor_idle, False
            if wake:
                self._wake.put(True)
            try:
                fn(*args)
            except Exception:  # the outermost boundary of a pool thread: one job fails, not the thread
                log.exception("%s: a job failed", self._name)
            with self._lock:
                del self._running[me]
                holds = slot.holds
            if holds:
                self._slots.put(True)
            del job, fn, args, slot
            self._idle.put(True)

    def _watch(self) -> None:
        """Monitor thread: hand the slot of a job running past ``long_after`` to the next job."""
        while not self._closed:
            with self._lock:
                idle = self._monitor_idle = not self._running
            if idle:
                self._wake.get()  # a job started (or the pool shut down)
                continue
            time.sleep(self._long_after)
            now = time.monotonic()
            released = 0
            with self._lock:
                for slot in self._running.values():
                    if slot.holds and now - slot.started >= self._long_after:
                        slot.holds = False
                        released += 1
            self.went_long += released
            for _ in range(released):
                self._slots.put(True)
