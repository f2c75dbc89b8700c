"""The harness's own checks: each kind of problem a test can leave behind is found, and only those."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import warnings
from pathlib import Path

from tests.harness import Checks, Cluster, log_problems
from tests.support import eventually

log = logging.getLogger("tests.harness.selftest")


def _verify(checks: Checks) -> list[str]:
    return checks.verify()


def test_a_clean_test_has_no_problems() -> None:
    checks = Checks()
    checks.start()
    log.warning("a warning line is fine")
    assert _verify(checks) == []


def test_a_logged_error_or_traceback_is_a_problem_unless_expected() -> None:
    checks = Checks()
    checks.start()
    log.error("boom: the disk is on fire")
    try:
        raise ValueError("bad")
    except ValueError:
        log.warning("handled, but with a traceback", exc_info=True)
    problems = _verify(checks)
    assert len(problems) == 2
    assert "boom" in problems[0] and "ValueError: bad" in problems[1]

    checks = Checks(("disk is on fire",))
    checks.start()
    log.error("boom: the disk is on fire")
    assert _verify(checks) == []


def test_a_warning_is_a_problem() -> None:
    checks = Checks()
    checks.start()
    s = socket.socket()
    del s  # unclosed: a ResourceWarning when collected
    warnings.warn("something odd", RuntimeWarning, stacklevel=1)
    problems = _verify(checks)
    assert any("ResourceWarning" in p and "unclosed" in p for p in problems), problems
    assert any("RuntimeWarning: something odd" in p for p in problems), problems


async def test_a_process_left_running_is_a_leak_and_is_killed() -> None:
    checks = Checks()
    checks.start()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(60)")
    problems = _verify(checks)
    assert [p for p in problems if p.startswith(f"leaked process {proc.pid}")], problems
    assert await asyncio.wait_for(proc.wait(), 10) == -9


def test_errors_and_tracebacks_in_a_child_log_are_found() -> None:
    text = "\n".join(
        [
            "2026-01-01 00:00:00,000 INFO edgerm.master: started",
            "2026-01-01 00:00:01,000 ERROR edgerm.master: lost the registry",
            "2026-01-01 00:00:02,000 WARNING edgerm.agent: retrying",
            "Traceback (most recent call last):",
            '  File "x.py", line 1, in <module>',
            "ZeroDivisionError: division by zero",
            "2026-01-01 00:00:03,000 INFO edgerm.master: stopped",
            '{"ts": "x", "level": "ERROR", "logger": "edgerm.agent", "message": "json too"}',
        ]
    )
    problems = log_problems(text)
    assert len(problems) == 3
    assert "lost the registry" in problems[0]
    assert "ZeroDivisionError" in problems[1] and "retrying" in problems[1]  # with the line before it
    assert "json too" in problems[2]


async def test_a_child_that_logs_an_error_or_ignores_sigterm_fails_the_check(tmp_path: Path) -> None:
    checks = Checks()
    checks.start()
    cluster = Cluster(tmp_path, checks)
    code = (
        "import logging, signal, sys, time\n"
        "logging.basicConfig(format='%(asctime)s %(levelname)s %(name)s: %(message)s')\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "logging.getLogger('child').error('cannot open the state dir')\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    cluster.stop_within = 0.5  # not the usual 15 s of grace
    child = await cluster.spawn("stubborn", "-c", code)
    await eventually(lambda: "ready" in child.output(), what="the child started")
    await cluster.close()
    problems = _verify(checks)
    assert any("cannot open the state dir" in p for p in problems), problems
    assert any(f"stubborn (pid {child.pid}) exited -9 on SIGTERM" in p for p in problems), problems


async def test_the_cluster_fixture_runs_a_master_and_an_agent(cluster: Cluster, tmp_path: Path) -> None:
    master = await cluster.master()
    agent = await cluster.agent(master, work_dir=tmp_path / "agent")
    assert [a["id"] for a in master.service.core.snapshot()["agents"]] == [agent.agent_id]
