"""``RunPool``: threads that run blocking jobs (wasm modules) handed over from the event loop.

Like a ``ThreadPoolExecutor`` without futures: at most ``max_threads``
threads, started when a job finds none idle, kept afterwards. Why not the
executor: its ``submit`` takes a Python-level semaphore (``threading``
locks and conditions) that the workers take too, so under load the loop and
the workers contended for it while handing the GIL back and forth (7 % of
an agent's loop time at a few hundred tasks a second). Here the hand-over
is two C-level queues: the jobs, and one token per idle thread.

A job reports its own result (it is run for its effect); an exception that
escapes one is logged and the thread goes on. Threads are daemons: one
stuck in a host call does not keep the process from exiting.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

_STOP = None


class RunPool:
    def __init__(self, max_threads: int, name: str) -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self._max = max_threads
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[..., object], tuple[object, ...]] | None] = queue.SimpleQueue()
        self._idle: queue.SimpleQueue[bool] = queue.SimpleQueue()  # one token per thread waiting for a job
        self._threads: list[threading.Thread] = []
        self._closed = False

    @property
    def threads(self) -> int:
        return len(self._threads)

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` in a pool thread (from the loop thread only)."""
        if self._closed:
            raise RuntimeError("the pool is shut down")
        self._jobs.put((fn, args))
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
        if wait:
            for thread in self._threads:
                thread.join()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            fn, args = job
            try:
                fn(*args)
            except Exception:  # the outermost boundary of a pool thread: one job fails, not the thread
                log.exception("%s: a job failed", self._name)
            del job, fn, args
            self._idle.put(True)
