"""Default places on disk, one function each, shared by every entry point."""

from __future__ import annotations

import os
from pathlib import Path


def default_master_state_dir() -> Path:
    """``$XDG_STATE_HOME/edgerm/master``, else ``~/.local/state/edgerm/master``: the master's state dir."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edgerm" / "master"
