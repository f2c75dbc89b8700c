"""Suite-wide fixtures (and hypothesis imported early; see the comment below the imports).

Every master started without ``--state-dir`` (a console script, a README
block) keeps its registry under ``$XDG_STATE_HOME``: point that at a fresh
directory for the session, so the suite never reads or writes the user's own
state and two runs never share a registry.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import hypothesis  # noqa: F401  (see below)
import pytest

from tests.harness import Checks, Cluster, watch

# hypothesis is imported here, at collection, for the runs whose tests do not use it: its pytest plugin
# imports it at the session's end otherwise, from deep in pluggy's stack, where CPython 3.11.7's ast.parse
# (pytest's assertion rewriting) fails now and then with "SystemError: AST constructor recursion depth
# mismatch" (2 runs in 45 of one test file on a loaded machine).


@pytest.fixture(scope="session", autouse=True)
def isolated_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    old = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("xdg-state"))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("XDG_STATE_HOME", None)
        else:
            os.environ["XDG_STATE_HOME"] = old


# -- the cluster harness (tests/harness.py) ------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def checks(request: pytest.FixtureRequest) -> Iterator[Checks]:
    """Fails the test on a logged ERROR or traceback, a leaked process, or a warning (tests/harness.py)."""
    expected = tuple(p for mark in request.node.iter_markers("expect_errors") for p in mark.args)
    yield from watch(expected)


@pytest.fixture
async def cluster(checks: Checks, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """Masters, agents and frameworks started for the test, all stopped after it (tests/harness.py)."""
    c = Cluster(tmp_path, checks)
    try:
        yield c
    finally:
        await c.close()
        if request.node.stash.get(_CALL_FAILED, False) and c.procs:
            print(c.logs())
