"""The cluster harness of the integration tests: real masters and agents, and what a test must not leave behind.

``cluster`` (a fixture, see tests/conftest.py) is a :class:`Cluster`: it starts masters and agents in this
process (:meth:`Cluster.master`, :meth:`Cluster.agent`) or as child processes (:meth:`Cluster.master_process`,
:meth:`Cluster.agent_process`, :meth:`Cluster.spawn`), provisions their credentials (an in-process master's
tokens, or ``edgerm-master init`` for a process), runs frameworks on the real ``HttpDriver``
(:meth:`Cluster.framework`), and stops all of it at teardown, whatever happened.

Then :class:`Checks` (the ``checks`` fixture, which ``cluster`` uses; a directory's conftest can make it
autouse for tests that start their own masters) fails the test if:

- a record at ERROR or above, or any record with a traceback, was logged in this process;
- a child process logged an ERROR line or printed a traceback (its log is under the test's tmp dir);
- a child process this test started did not exit on SIGTERM, or exited non-zero on it, or any process
  started during the test (a grandchild too) is still alive after the stop: a leak;
- a warning was raised: a ResourceWarning (an unclosed socket, transport or file), a RuntimeWarning
  (a coroutine never awaited), an unraisable exception, or any other.

A test that provokes an error on purpose declares it: ``cluster.expect_error(REGEX)`` (or
``checks.expect_error``), or ``@pytest.mark.expect_errors(REGEX, ...)``; a logged error or traceback
whose text matches one of them is allowed. Nothing else is.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import signal
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from edgerm.agent.config import AgentConfig
from edgerm.agent.main import RunningAgent, start_agent
from edgerm.errors import WireError
from edgerm.frameworks import Framework, HttpDriver
from edgerm.master.main import RunningMaster, start_master
from tests.support import init_state_dir

ROOT = Path(__file__).resolve().parents[1]
STOP_WITHIN = 15.0  # seconds a child gets to exit on SIGTERM
#: A text log line at ERROR or CRITICAL (edgerm.logs.TEXT_FORMAT) or a JSON one.
_ERROR_LINE = re.compile(r'^\S+ \S+ (ERROR|CRITICAL) |"level": "(ERROR|CRITICAL)"')
_TRACEBACK = "Traceback (most recent call last)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- what a test must not leave behind ------------------------------------------------------------


class _Recorder(logging.Handler):
    """Keeps every record at ERROR or above, and every record with a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


def _text(record: logging.LogRecord) -> str:
    text = f"{record.levelname} {record.name}: {record.getMessage()}"
    if record.exc_info:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    return text


def log_problems(text: str) -> list[str]:
    """The ERROR lines and tracebacks in a child's log, each with its context (the line before a traceback)."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _TRACEBACK in line:
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
                j += 1
            block = lines[max(0, i - 1) : j + 1]
            out.append("\n".join(block))
            i = j + 1
            continue
        if _ERROR_LINE.search(line):
            out.append(line)
        i += 1
    return out


class Checks:
    """Watches one test: logs of this process, child processes, warnings. :meth:`verify` lists what went wrong."""

    def __init__(self, expected: tuple[str, ...] = ()) -> None:
        self.expected: list[re.Pattern[str]] = [re.compile(p) for p in expected]
        self.logs: list[Path] = []  # child logs to scan
        self.problems: list[str] = []  # found by the harness while stopping (a child that would not stop)
        self._handler = _Recorder()
        self._me = psutil.Process()
        self._before = {self._key(p) for p in self._children()}
        self._warnings: warnings.catch_warnings[list[warnings.WarningMessage]] | None = None
        self._caught: list[warnings.WarningMessage] = []

    def expect_error(self, pattern: str) -> None:
        """Allow logged errors and tracebacks whose text matches ``pattern`` (a regex) in this test."""
        self.expected.append(re.compile(pattern))

    def start(self) -> None:
        logging.getLogger().addHandler(self._handler)
        self._warnings = warnings.catch_warnings(record=True)
        self._caught = self._warnings.__enter__()
        warnings.simplefilter("always")

    def verify(self) -> list[str]:
        """Stop watching and return the problems (empty: the test left nothing behind)."""
        try:
            for _ in range(3):  # unclosed transports and sockets warn when collected
                gc.collect()
        finally:
            if self._warnings is not None:
                self._warnings.__exit__(None, None, None)
                self._warnings = None
            logging.getLogger().removeHandler(self._handler)
        problems = list(self.problems)
        problems += [f"logged: {t}" for t in (_text(r) for r in self._handler.records) if not self._allowed(t)]
        for log in self.logs:
            try:
                text = log.read_text(errors="replace")
            except OSError:
                continue
            problems += [f"{log.name}: {p}" for p in log_problems(text) if not self._allowed(p)]
        problems += [f"warning: {w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in self._caught]
        problems += self._leaks()
        return problems

    def _allowed(self, text: str) -> bool:
        return any(p.search(text) for p in self.expected)

    def _children(self) -> list[psutil.Process]:
        try:
            return self._me.children(recursive=True)
        except psutil.Error:
            return []

    @staticmethod
    def _key(p: psutil.Process) -> tuple[int, float]:
        try:
            return (p.pid, p.create_time())
        except psutil.Error:
            return (p.pid, 0.0)

    def _leaks(self) -> list[str]:
        """Processes started during the test that are still alive (given a moment to exit); killed here."""
        deadline = time.monotonic() + 5.0
        while True:
            alive = [p for p in self._children() if self._key(p) not in self._before and _running(p)]
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        out = []
        for p in alive:
            try:
                out.append(f"leaked process {p.pid}: {' '.join(p.cmdline())[:200]}")
                p.kill()
            except psutil.Error:
                pass
        return out


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def watch(expected: tuple[str, ...] = ()) -> Iterator[Checks]:
    """The body of the ``checks`` fixture: watch the test, fail it on what :meth:`Checks.verify` finds."""
    import pytest

    checks = Checks(expected)
    checks.start()
    try:
        yield checks
    finally:
        problems = checks.verify()
    if problems:
        pytest.fail("the test left problems behind:\n- " + "\n- ".join(problems), pytrace=False)


# -- child processes ----------------------------------------------------------------------------


class Proc:
    """One child process and its log file."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.killed = False  # by the test (kill -9): no clean exit expected

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def signal(self, sig: int) -> None:
        if self.alive:
            os.kill(self.proc.pid, sig)

    def send_signal(self, sig: int) -> None:
        self.signal(sig)

    async def kill9(self) -> None:
        """SIGKILL, and reap it."""
        self.killed = True
        self.signal(signal.SIGKILL)
        await self.proc.wait()

    async def wait(self) -> int:
        return await self.proc.wait()

    async def terminate(self, within: float = STOP_WITHIN) -> int:
        """SIGTERM (SIGCONT first, in case it is stopped), then SIGKILL after ``within`` seconds."""
        if self.alive:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), within)
            except TimeoutError:
                await self.kill9()
                self.killed = False
                return -signal.SIGKILL
        assert self.proc.returncode is not None
        return self.proc.returncode

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


# -- the cluster ----------------------------------------------------------------------------------


class Cluster:
    """Masters, agents and frameworks of one test; :meth:`close` stops them all (the fixture calls it)."""

    def __init__(self, tmp: Path, checks: Checks) -> None:
        self.tmp = tmp
        self.checks = checks
        self.procs: list[Proc] = []
        self.masters: list[RunningMaster] = []
        self.agents: list[RunningAgent] = []
        self.drivers: list[tuple[HttpDriver, asyncio.Task[None]]] = []
        #: The environment of every child: no EDGERM_* of the caller's, HOME and XDG_STATE_HOME in tmp.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EDGERM_")}
        self.env |= {"HOME": str(tmp), "XDG_STATE_HOME": str(tmp / "xdg-state"), "PYTHONPATH": str(ROOT)}
        self.admin_token = ""
        self.stop_within = STOP_WITHIN  # seconds a child gets to exit on SIGTERM at close

    def expect_error(self, pattern: str) -> None:
        self.checks.expect_error(pattern)

    # -- in this process --------------------------------------------------------------------------

    async def master(self, **options: Any) -> RunningMaster:
        """``start_master(**options)`` (an ephemeral port, tokens provisioned unless insecure), stopped at close."""
        options.setdefault("allocation_interval", 0.05)
        running = await start_master(**options)
        self.masters.append(running)
        return running

    async def agent(
        self,
        master: RunningMaster | str,
        config: AgentConfig | None = None,
        work_dir: Path | None = None,
        **options: Any,
    ) -> RunningAgent:
        """``start_agent`` against ``master`` (joining with its join token), stopped at close."""
        url = master if isinstance(master, str) else master.url
        if isinstance(master, RunningMaster) and master.tokens is not None:
            options.setdefault("join_token", master.tokens.join)
        elif "EDGERM_JOIN_TOKEN" in self.env:
            options.setdefault("join_token", self.env["EDGERM_JOIN_TOKEN"])
        running = await start_agent(url, config, work_dir, **options)
        self.agents.append(running)
        return running

    async def stop_agent(self, agent: RunningAgent) -> None:
        await agent.stop()
        self.agents.remove(agent)

    async def stop_master(self, master: RunningMaster) -> None:
        await master.stop()
        self.masters.remove(master)

    def framework(self, framework: Framework, url: str, token: str | None = None, **options: Any) -> HttpDriver:
        """Run ``framework`` on an ``HttpDriver`` (fast reconnects) until close; returns the driver."""
        options.setdefault("backoff_initial", 0.1)
        options.setdefault("backoff_max", 0.5)
        driver = HttpDriver(framework, url, token=token if token is not None else self.admin_token, **options)
        self.drivers.append((driver, asyncio.create_task(driver.run())))
        return driver

    # -- child processes --------------------------------------------------------------------------

    async def spawn(self, name: str, *args: str) -> Proc:
        """``python ARGS...`` with its output in ``TMP/NAME-N.log`` (scanned at teardown)."""
        log = self.tmp / f"{name}-{len(self.procs)}.log"
        self.checks.logs.append(log)
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *args, cwd=ROOT, env=self.env, stdout=out, stderr=asyncio.subprocess.STDOUT
            )
        p = Proc(name, proc, log)
        self.procs.append(p)
        return p

    async def secure(self, state_dir: Path | None = None) -> str:
        """``edgerm-master init`` once in ``state_dir`` (default: TMP/master-state): children get the join
        and admin tokens in their environment; returns the admin token (also :attr:`admin_token`)."""
        state = state_dir or self.tmp / "master-state"
        if not self.admin_token:
            tokens = await init_state_dir(state)
            self.admin_token = tokens["admin_token"]
            self.env["EDGERM_TOKEN"] = tokens["admin_token"]
            self.env["EDGERM_JOIN_TOKEN"] = tokens["join_token"]
        return self.admin_token

    async def master_process(self, port: int, *flags: str, state_dir: Path | None = None) -> Proc:
        """``edgerm-master`` on ``port`` (secure, its registry in ``state_dir``), HTTP only, fast allocation."""
        state = state_dir or self.tmp / "master-state"
        await self.secure(state)
        return await self.spawn(
            "master",
            *("-m", "edgerm.master.main", "--state-dir", str(state), "--port", str(port)),
            *("--no-coap", "--no-broker", "--allocation-interval", "0.05", *flags),
        )

    async def agent_process(self, master_url: str, work_dir: Path, config: Path | str, *flags: str) -> Proc:
        """``edgerm-agent`` joining ``master_url``; ``config``: a YAML file, or its text (written next to the dir)."""
        if isinstance(config, str):
            path = work_dir.with_suffix(".yaml")
            path.write_text(config)
            config = path
        args = ("--master", master_url, "--work-dir", str(work_dir), "--config", str(config), *flags)
        return await self.spawn("agent", "-m", "edgerm.agent.main", *args)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (pid {p.pid}, exit {p.returncode}) ---\n{p.output()}" for p in self.procs)

    # -- teardown ---------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop frameworks, then agents, then masters, then child processes; note a child that would not stop."""
        for driver, task in reversed(self.drivers):
            with contextlib.suppress(WireError):  # its TEARDOWN failed (the master is gone): it stopped all the same
                await driver.stop()
            await asyncio.gather(task, return_exceptions=True)
        for agent in reversed(self.agents):
            await agent.stop()
        for master in reversed(self.masters):
            await master.stop()
        for p in self.procs:
            was_alive = p.alive
            code = await p.terminate(self.stop_within)
            if was_alive and code != 0:
                self.checks.problems.append(f"{p.name} (pid {p.pid}) exited {code} on SIGTERM, not 0")
