"""Reading a piece of a task's output for the master (``SendLogsCommand`` -> ``TaskLogs``).

Role: the agent service answers a log request from the master with
:func:`read_piece` over the task's sandbox file (``work_dir/tasks/<task>/
stdout`` or ``stderr``, where the runtimes write a task's output), or with
a runtime's own ``read_log`` when it keeps output elsewhere.

Rules: a piece is at most ``messages.MAX_LOG_CHUNK`` bytes; a negative
offset counts from the end of the stream; an offset past the end gives an
empty piece at the end (the stream may have been truncated). Blocking file
reads run in a thread (the caller's ``asyncio.to_thread``).
"""

from __future__ import annotations

import os
from pathlib import Path

from edgerm import messages as m


def read_piece(path: Path, offset: int, limit: int) -> tuple[int, bytes, int]:
    """(start, data, size) of ``path``; raises FileNotFoundError when there is no such file."""
    limit = max(0, min(limit, m.MAX_LOG_CHUNK))
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        start = max(0, size + offset) if offset < 0 else min(offset, size)
        f.seek(start)
        return start, f.read(limit), size
