"""The credentials agents got by joining: an append-only journal beside ``credentials.yaml``.

Role: a join must not cost time proportional to the fleet. Rewriting the
whole ``credentials.yaml`` for each join did (0.5 s per join at 1,000
agents: 4.4 minutes for a 1,000-agent fleet to join). So the credentials
the join endpoint mints go to ``credentials.joined.jsonl`` in the same
state dir (mode 0600), one JSON line per change, appended and fsynced before
the join is answered::

    {"add": {"name": "agent-a1", "role": "agent", "sha256": "...", "created": 1790000000.0, "agent_id": "a1"}}
    {"remove": "agent-a1"}

The credential set is the file's entries plus the journal's live ones
(:class:`edgerm.auth.credentials.CredentialFiles` joins the two); names and
token hashes are unique across both.

Rules:
- Written only under the credentials file's lock (``credentials.yaml.lock``),
  like the YAML, so ``edgerm token`` and a running master never lose each
  other's changes.
- Read incrementally: a reader remembers how far it read (and the file's
  inode), and reads only what was appended since. A compaction (the file
  rewritten with the live entries only, renamed over the old one) is seen
  as a new inode and read from the start.
- A crash can leave a torn last line (no newline): readers stop before it,
  and the next writer, holding the lock, cuts it off. Its join was never
  answered (the answer waits for the fsync), so nothing anyone holds is
  lost. Any other line that does not parse is a ConfigError naming the line.
- Compaction when the journal holds more than twice its live entries plus
  :data:`COMPACT_SLACK` lines: the cost of a join stays O(1) amortized.
- No asyncio here; every method does file I/O.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from edgerm.errors import ConfigError

JOURNAL_FILE = "credentials.joined.jsonl"
COMPACT_SLACK = 1024  # dead lines tolerated beyond the live entries before a rewrite


class Recorded(Protocol):
    """What the journal stores: a named entry that says itself as JSON."""

    @property
    def name(self) -> str: ...

    def to_json(self) -> dict[str, object]: ...


C = TypeVar("C", bound=Recorded)


class Journal(Generic[C]):
    """What one process has read of the journal at ``path``: the live entries by name."""

    def __init__(self, path: Path, parse: Callable[[Mapping[str, object], str], C]) -> None:
        self.path = path
        self._parse = parse  # raw entry, where -> a checked entry (raises ConfigError)
        self.entries: dict[str, C] = {}
        self._inode: int | None = None
        self._offset = 0  # bytes read, up to the end of the last whole line
        self._lines = 0

    def refresh(self, *, repair: bool = False) -> bool:
        """Read what was appended (all of it after a compaction); whether anything changed.

        ``repair`` (the caller holds the lock): cut a torn last line off.
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            changed = self._inode is not None or bool(self.entries)
            self.entries, self._inode, self._offset, self._lines = {}, None, 0, 0
            return changed
        restart = st.st_ino != self._inode or st.st_size < self._offset
        if not restart and st.st_size == self._offset:
            return False
        entries = {} if restart else dict(self.entries)
        offset, lines = (0, 0) if restart else (self._offset, self._lines)
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        for raw in data[:end].splitlines():
            lines += 1
            self._apply(entries, raw, lines)
        if end < len(data) and repair:
            os.truncate(self.path, offset + end)
        self.entries, self._inode, self._offset, self._lines = entries, st.st_ino, offset + end, lines
        return True

    def _apply(self, entries: dict[str, C], raw: bytes, number: int) -> None:
        where = f"{self.path}: line {number}"
        try:
            doc = json.loads(raw)
        except ValueError:
            raise ConfigError(f"{where}: not JSON") from None
        if isinstance(doc, dict) and set(doc) == {"add"} and isinstance(doc["add"], Mapping):
            entry = self._parse(doc["add"], where)
            if entry.name in entries:
                raise ConfigError(f"{where}: {entry.name} is added twice")
            entries[entry.name] = entry
        elif isinstance(doc, dict) and set(doc) == {"remove"} and isinstance(doc["remove"], str):
            entries.pop(doc["remove"], None)
        else:
            raise ConfigError(f'{where}: expected {{"add": {{...}}}} or {{"remove": "name"}}')

    def append(self, adds: Iterable[C], removes: Iterable[str] = ()) -> None:
        """Record ``removes`` (of names it holds) then ``adds``, fsynced; the caller holds the lock.

        Call :meth:`refresh` (with ``repair``) first, so this process has read the whole file.
        """
        new, gone = list(adds), [name for name in removes if name in self.entries]
        if not new and not gone:
            return
        records: list[dict[str, object]] = [{"remove": name} for name in gone]
        records += [{"add": c.to_json()} for c in new]
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, _lines(records))
            os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        for name in gone:
            del self.entries[name]
        for c in new:
            self.entries[c.name] = c
        self._inode, self._offset, self._lines = st.st_ino, st.st_size, self._lines + len(records)
        if self._lines > 2 * len(self.entries) + COMPACT_SLACK:
            self.compact()

    def compact(self) -> None:
        """Rewrite the journal with its live entries only (renamed over the old one); the caller holds the lock."""
        fd, tmp = tempfile.mkstemp(prefix=".credentials-joined-", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(_lines({"add": c.to_json()} for c in self.entries.values()))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        st = os.stat(self.path)
        self._inode, self._offset, self._lines = st.st_ino, st.st_size, len(self.entries)


def _lines(records: Iterable[dict[str, object]]) -> bytes:
    return b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)
