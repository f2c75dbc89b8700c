"""Suite-wide fixtures.

Every master started without ``--state-dir`` (a console script, a README
block) keeps its registry under ``$XDG_STATE_HOME``: point that at a fresh
directory for the session, so the suite never reads or writes the user's own
state and two runs never share a registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


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
