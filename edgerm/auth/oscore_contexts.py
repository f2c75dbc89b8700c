"""OSCORE (RFC 8613) security contexts for CoAP agents: what a join hands out and both ends keep.

Role: the key material of one agent's OSCORE context is made by the master
when the agent joins over HTTP(S) (``POST /api/v1/join`` with ``"coap":
true``, :mod:`edgerm.master.http_auth`) and handed over in the join answer
(:class:`OscoreMaterial`, hex in JSON). Each side stores its half of the
context as an aiocoap ``FilesystemSecurityContext`` directory:

- the agent in ``WORK_DIR/oscore/{kid}/`` (:func:`save_agent_context`,
  :func:`load_agent_context`), next to its ``credential.json``;
- the master in ``STATE_DIR/oscore/{agent_id}-{kid}/`` (:class:`AgentContexts`),
  next to ``credentials.yaml``.

A directory holds ``secret.json`` (master secret, salt, sender and recipient
ids; mode 0600, written before it is used), ``binding.json`` (which agent id,
master and credential it belongs to), and aiocoap's ``sequence.json`` and
``lock``. aiocoap persists the sender sequence number ahead of use (in
growing chunks, RFC 8613 Appendix B.1.1) and the replay window on a clean
close; after a crash the replay window is "unknown" and the first request is
answered 4.01 with an Echo option, which the aiocoap client answers (B.1.2).
So neither a nonce nor an accepted request is ever reused across restarts.

Rules:
- Ids: the master's sender id is empty for every context (each context has
  its own master secret, so nonces never collide across contexts); the
  agent's sender id (the "kid" the master finds the context by) is 6 random
  bytes, unique among the master's contexts. AES-CCM-16-64-128, HKDF-SHA256,
  a replay window of 32: aiocoap's defaults.
- Binding: a context speaks for the agent id in its ``binding.json`` while
  the agent credential it was issued with (by name and token hash) is still
  in ``credentials.yaml`` and unexpired (:meth:`AgentContexts.principal`).
  Revoking or replacing that credential revokes the context at once.
- A new context for an agent replaces its old one (closed, its directory
  removed); a new secret starts with fresh sequence numbers and replay window.
- File I/O happens in the functions and methods that say so; the master's
  index is changed on the event loop only (:meth:`AgentContexts.install`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Container, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock
from aiocoap import oscore

from edgerm.auth.credentials import Credential, Credentials
from edgerm.auth.principal import Principal, Role
from edgerm.errors import ConfigError, MalformedMessage
from edgerm.ids import AgentId

log = logging.getLogger(__name__)

CONTEXTS_DIR = "oscore"
SECRET_FILE = "secret.json"
BINDING_FILE = "binding.json"
SEQUENCE_FILE = "sequence.json"  # aiocoap's
TREE_LOCK = "contexts.lock"  # the master's flock over all its contexts
RESERVED_SEQUENCE_NUMBERS = 1000  # sender sequence numbers the master persists ahead when it opens a context
MASTER_KID = b""
CLOSE_THREADS = 8  # threads that write the master's contexts when it stops (file creation waits on the disk)
KID_BYTES = 6
SECRET_BYTES = 32
SALT_BYTES = 8
_MAX_ID = 7  # AES-CCM-16-64-128: nonce of 13 bytes, ids of at most 13 - 6


@dataclass(frozen=True, slots=True)
class OscoreMaterial:
    """One agent's context as the join answer carries it (from the agent's point of view)."""

    secret: bytes
    salt: bytes
    agent_kid: bytes  # the agent's sender id, the master's recipient id
    master_kid: bytes = MASTER_KID

    def to_json(self) -> dict[str, str]:
        return {
            "secret_hex": self.secret.hex(),
            "salt_hex": self.salt.hex(),
            "sender_id_hex": self.agent_kid.hex(),
            "recipient_id_hex": self.master_kid.hex(),
        }

    @classmethod
    def from_json(cls, doc: object) -> OscoreMaterial:
        """The material in a join answer; MalformedMessage if it is not well formed."""
        if not isinstance(doc, Mapping):
            raise MalformedMessage("the join answer's oscore entry is not an object")
        try:
            secret, salt, sender, recipient = (
                bytes.fromhex(doc[k]) for k in ("secret_hex", "salt_hex", "sender_id_hex", "recipient_id_hex")
            )
        except (KeyError, TypeError, ValueError):
            raise MalformedMessage("the join answer's oscore entry lacks hex secret, salt or ids") from None
        if len(secret) < 16 or len(sender) > _MAX_ID or len(recipient) > _MAX_ID or sender == recipient:
            raise MalformedMessage("the join answer's oscore entry has a short secret or unusable ids")
        return cls(secret, salt, sender, recipient)


def new_material(taken: Container[bytes] = frozenset()) -> OscoreMaterial:
    """Fresh random material with an agent kid not in ``taken``."""
    while True:
        kid = secrets.token_bytes(KID_BYTES)
        if kid not in taken and kid != MASTER_KID:
            return OscoreMaterial(secrets.token_bytes(SECRET_BYTES), secrets.token_bytes(SALT_BYTES), kid)


# -- directories (file I/O) ---------------------------------------------------------------


def _write_private(path: Path, doc: Mapping[str, object]) -> None:
    """Write JSON atomically with mode 0600 from the start."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_context(
    directory: Path, sender_id: bytes, recipient_id: bytes, material: OscoreMaterial, binding: Mapping[str, object]
) -> None:
    """Make ``directory`` a context directory with new keys (an old context there is replaced)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    # A new secret starts afresh: an old sequence file would carry the old replay window over.
    with contextlib.suppress(FileNotFoundError):
        (directory / SEQUENCE_FILE).unlink()
    secret = {
        "secret_hex": material.secret.hex(),
        "salt_hex": material.salt.hex(),
        "sender-id_hex": sender_id.hex(),
        "recipient-id_hex": recipient_id.hex(),
    }
    _write_private(directory / SECRET_FILE, secret)
    _write_private(directory / BINDING_FILE, binding)


#: A ``_TreeLockedContext``'s ``lockfile``: not None while open, so aiocoap's ``__del__`` and
#: :func:`close_context` still persist it; there is no lock file behind it.
_TREE_LOCKED = "covered by the tree's lock"


class _TreeLockedContext(oscore.FilesystemSecurityContext):  # type: ignore[misc]  # aiocoap ships no type hints
    """aiocoap's ``FilesystemSecurityContext`` without a lock file of its own.

    For a process that holds one lock over the whole tree (:class:`AgentContexts`).
    aiocoap 0.4.17's ``__init__`` and ``_destroy`` but for the lock: opening
    one cost 0.3 ms on the master's event loop, most of it filelock probing
    the directory, and kept a descriptor open per context.
    """

    def __init__(self, basedir: str) -> None:
        self.basedir = basedir
        self.lockfile: str | None = None  # set once loaded: a half-made context has nothing to persist
        self.echo_recovery = secrets.token_bytes(8)
        try:
            self._load()
        except KeyError as k:
            raise self.LoadError(f"Configuration key missing: {k.args[0]}") from None
        self.sequence_number_chunksize_start = 10
        self.sequence_number_chunksize_limit = 10000
        self.sequence_number_chunksize = 10
        self.sequence_number_persisted = self.sender_sequence_number
        self.lockfile = _TREE_LOCKED

    def _destroy(self, *, durable: bool = True) -> None:
        self.replay_window_persisted = True
        self.sequence_number_persisted = self.sender_sequence_number
        self._store(durable=durable)
        del self.sender_key
        del self.recipient_key
        self.lockfile = None

    def _store(self, *, durable: bool = True) -> None:
        """aiocoap 0.4.17's ``_store`` (the same file, replaced the same way); ``durable`` False: no fsync,
        for a caller that syncs the file system once after many (:meth:`AgentContexts.close`)."""
        data = {
            "next-to-send": self.sequence_number_persisted,
            "received": self.recipient_replay_window.persist() if self.replay_window_persisted else "unknown",
        }
        handle, name = tempfile.mkstemp(dir=self.basedir, prefix=".sequence-", suffix=".json", text=True)
        with open(handle, "wb") as f:
            f.write(json.dumps(data).encode("utf8"))
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(name, os.path.join(self.basedir, SEQUENCE_FILE))


def open_context(directory: Path, *, hold_lock: bool = True) -> Any:
    """The ``FilesystemSecurityContext`` in ``directory``; ConfigError if unusable (or its lock is held).

    ``hold_lock`` False: no lock file for this context (no descriptor, no
    probing). Only for a process that holds a lock over the whole tree
    already (:class:`AgentContexts`), which keeps any second user out.
    """
    try:
        if not hold_lock:
            return _TreeLockedContext(str(directory))
        return oscore.FilesystemSecurityContext(str(directory))
    except filelock.Timeout:
        raise ConfigError(f"{directory}: the OSCORE context is in use (its lock is held)") from None
    except (oscore.FilesystemSecurityContext.LoadError, OSError, ValueError) as e:
        raise ConfigError(f"{directory}: not a usable OSCORE context: {e}") from None


def make_ready(context: Any, reserve: int) -> None:
    """Persist, before the context answers anything, its replay window as unknown and ``reserve`` sender
    sequence numbers ahead (file I/O: one write and fsync).

    aiocoap writes the same two things on its own, at the first accepted
    request and at the first notification, each a write and an fsync: at a
    fleet's start (500 agents registering a second) those were a third of
    the master's event loop. A crash afterwards costs the agent an Echo
    round trip (RFC 8613 B.1.2), as aiocoap's own marking would, and skips
    the unused numbers, as its chunks do; a clean close persists both exactly.
    """
    context.replay_window_persisted = False
    context.sequence_number_persisted = context.sender_sequence_number + reserve
    context._store()


def open_ready(entry: ContextEntry) -> Any | None:
    """Open the master's context of ``entry`` and make it ready (:func:`make_ready`): file I/O, for a worker
    thread. None, logged, if it cannot be opened, does not hold its kid or cannot persist its state."""
    try:
        context = open_context(entry.directory, hold_lock=False)  # the tree's lock covers it
    except ConfigError as e:
        log.error("agent %s: %s", entry.agent_id, e)
        return None
    if context.recipient_id != entry.kid:
        context.lockfile = None  # never used: nothing to persist
        log.error("agent %s: %s does not hold kid %s", entry.agent_id, entry.directory, entry.kid.hex())
        return None
    try:
        make_ready(context, RESERVED_SEQUENCE_NUMBERS)
    except OSError as e:
        context.lockfile = None
        log.error("agent %s: cannot persist its OSCORE context's state in %s: %s", entry.agent_id, entry.directory, e)
        return None
    return context


def _persist_for_close(context: _TreeLockedContext) -> None:
    """Write a context's exact state, not yet durable (file I/O); an error is logged: the others go on."""
    try:
        context._destroy(durable=False)
    except OSError as e:  # its file says "unknown" and numbers ahead still: the agent pays an Echo round trip
        context.lockfile = None
        log.error("cannot persist the OSCORE context in %s: %s", context.basedir, e)


def sync_file_system(path: Path) -> None:
    """Make everything written to the file system holding ``path`` durable: ``syncfs(2)``, else ``sync(2)``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        os.sync()
        return
    try:
        syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def close_context(context: Any) -> None:
    """Persist the exact sequence number and replay window and release the lock (idempotent)."""
    if getattr(context, "lockfile", None) is not None:
        context._destroy()


def read_binding(directory: Path) -> dict[str, object] | None:
    try:
        doc = json.loads((directory / BINDING_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# -- the agent's side -------------------------------------------------------------------------


def save_agent_context(work_dir: Path, coap_url: str, agent_id: AgentId, material: OscoreMaterial) -> Path:
    """Store the agent's half of a new context in ``WORK_DIR/oscore/{kid}`` and make it current (file I/O).

    ``WORK_DIR/oscore/binding.json`` names the current context, its master
    and agent id; it is replaced last, so a crash leaves the old one current.
    """
    root = work_dir / CONTEXTS_DIR
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory = root / material.agent_kid.hex()
    write_context(directory, material.agent_kid, material.master_kid, material, {"agent_id": agent_id})
    _write_private(
        root / BINDING_FILE,
        {"master": coap_url.rstrip("/"), "agent_id": agent_id, "context": material.agent_kid.hex()},
    )
    return directory


def load_agent_context(work_dir: Path, coap_url: str, agent_id: AgentId, *, cleanup: bool = True) -> Any | None:
    """The agent's current context for this master and id, opened (file I/O); None if there is none.

    ``cleanup``: remove the contexts of earlier joins (at start, when no other is open).
    """
    root = work_dir / CONTEXTS_DIR
    binding = read_binding(root)
    if binding is None or binding.get("agent_id") != agent_id:
        return None
    if str(binding.get("master", "")).rstrip("/") != coap_url.rstrip("/"):
        return None
    name = str(binding.get("context", ""))
    directory = root / name
    if not name or not (directory / SECRET_FILE).exists():
        return None
    context = open_context(directory)
    if cleanup:
        for other in root.iterdir():
            if other.is_dir() and other.name != name:
                shutil.rmtree(other, ignore_errors=True)
    return context


def retire_agent_context(context: Any) -> None:
    """Close a context that is no longer current and remove its directory (file I/O)."""
    close_context(context)
    shutil.rmtree(context.basedir, ignore_errors=True)


# -- the master's side ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContextEntry:
    """What the master knows of one agent's context without opening it."""

    kid: bytes
    agent_id: AgentId
    credential: str  # the agent credential's name
    sha256: str  # ... and its token hash: the context is valid while both match
    directory: Path


class AgentContexts:
    """The master's per-agent OSCORE contexts under ``root`` (``STATE_DIR/oscore``).

    A context is opened and made ready when its agent joins, in the join's
    worker thread (:func:`open_ready`, :meth:`install`); one made before the
    master started is opened on its agent's first protected request, also in
    a worker thread (:meth:`ready`). Either way the event loop does no file
    I/O for an agent's first request. Contexts stay open until
    :meth:`close`. They hold no file descriptor: one flock on
    ``root/contexts.lock``, held from here to :meth:`close`, keeps any other
    process out of the whole tree (ConfigError if one holds it), so a context
    is opened without a lock file of its own (10,000 CoAP agents would
    otherwise hold 10,000 descriptors, out of the budget
    :mod:`edgerm.master.conn_guard` assumes) and made ready with one write
    (:func:`make_ready`).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = os.open(root / TREE_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise ConfigError(f"{root}: another process (a second master?) uses these OSCORE contexts") from None
        self._by_kid: dict[bytes, ContextEntry] = {}
        self._by_agent: dict[AgentId, bytes] = {}
        self._open: dict[bytes, Any] = {}
        self._opening: dict[bytes, asyncio.Future[Any | None]] = {}
        for directory in sorted(p for p in root.iterdir() if p.is_dir()):
            entry = self._read_entry(directory)
            if entry is not None:
                # Two for one agent only after a crash mid-join: both stay, the credential decides.
                self._index(entry, replace=False)
        self._closed = False

    def __len__(self) -> int:
        return len(self._by_kid)

    @staticmethod
    def _read_entry(directory: Path) -> ContextEntry | None:
        binding = read_binding(directory)
        try:
            assert binding is not None
            kid = bytes.fromhex(str(binding["kid_hex"]))
            entry = ContextEntry(
                kid, AgentId(str(binding["agent_id"])), str(binding["credential"]), str(binding["sha256"]), directory
            )
        except (AssertionError, KeyError, ValueError):
            log.warning("ignoring %s: not an agent's OSCORE context", directory)
            return None
        return entry

    def _index(self, entry: ContextEntry, *, replace: bool = True) -> None:
        old_kid = self._by_agent.get(entry.agent_id)
        if replace and old_kid is not None and old_kid != entry.kid:
            old = self._by_kid.pop(old_kid)
            context = self._open.pop(old_kid, None)
            if context is not None:
                close_context(context)
            shutil.rmtree(old.directory, ignore_errors=True)
        self._by_kid[entry.kid] = entry
        self._by_agent[entry.agent_id] = entry.kid

    def taken(self) -> frozenset[bytes]:
        return frozenset(self._by_kid)

    def write(self, credential: Credential) -> tuple[OscoreMaterial, ContextEntry]:
        """Make a new context for the agent of ``credential`` on disk (file I/O; call :meth:`install` next).

        Each context has its own directory (``{agent_id}-{kid}``), so the
        agent's old context keeps working until :meth:`install` replaces it.
        """
        agent_id = credential.agent_id
        if credential.role is not Role.AGENT or agent_id is None:
            raise ValueError("OSCORE contexts are for agent credentials")
        material = new_material(self._by_kid.keys())  # membership tests only: no copy per join
        directory = self.root / f"{agent_id}-{material.agent_kid.hex()}"
        binding = {
            "agent_id": agent_id,
            "kid_hex": material.agent_kid.hex(),
            "credential": credential.name,
            "sha256": credential.sha256,
        }
        write_context(directory, MASTER_KID, material.agent_kid, material, binding)
        return material, ContextEntry(material.agent_kid, agent_id, credential.name, credential.sha256, directory)

    def write_ready(self, credential: Credential) -> tuple[OscoreMaterial, ContextEntry, Any | None]:
        """:meth:`write`, then the new context opened and made ready (:func:`open_ready`; file I/O, for the
        join's worker thread): pass both to :meth:`install`."""
        material, entry = self.write(credential)
        return material, entry, open_ready(entry)

    def install(self, entry: ContextEntry, opened: Any | None = None) -> None:
        """Start using a context :meth:`write` made, dropping the agent's older one (on the event loop).

        ``opened``: the context already opened and made ready (:func:`open_ready`, in the join's worker
        thread), so that the agent's first request finds it open: no file I/O on the event loop for it."""
        self._index(entry)
        self._adopt(entry, opened)
        log.info("agent %s: new OSCORE context (kid %s)", entry.agent_id, entry.kid.hex())

    def opened(self, kid: bytes) -> Any | None:
        """The context whose recipient id is ``kid`` if it is open already (no file I/O); else None."""
        return self._open.get(kid)

    def context(self, kid: bytes) -> Any | None:
        """The open context whose recipient id is ``kid``, opened now if need be (file I/O, blocking the caller:
        the master's CoAP endpoint uses :meth:`ready` instead); None if unknown or unusable."""
        context = self._open.get(kid)
        if context is not None:
            return context
        entry = self._by_kid.get(kid)
        if entry is None or self._closed:
            return None
        return self._adopt(entry, open_ready(entry))

    async def ready(self, kid: bytes) -> Any | None:
        """The open context whose recipient id is ``kid``, opened in a worker thread if need be (on the event
        loop; one open per kid however many requests wait for it); None if unknown or unusable."""
        context = self._open.get(kid)
        if context is not None:
            return context
        entry = self._by_kid.get(kid)
        if entry is None or self._closed:
            return None
        opening = self._opening.get(kid)
        if opening is None:
            opening = self._opening[kid] = asyncio.ensure_future(asyncio.to_thread(open_ready, entry))
            opening.add_done_callback(lambda _: self._opening.pop(kid, None))
        opened = await asyncio.shield(opening)
        return self._open.get(kid) or self._adopt(entry, opened)

    def _adopt(self, entry: ContextEntry, context: Any | None) -> Any | None:
        """Keep a context :func:`open_ready` opened, if its entry is still current (on the event loop)."""
        if context is None:
            return None
        if self._closed or self._by_kid.get(entry.kid) is not entry:  # replaced or closed meanwhile: unused
            context.lockfile = None  # nothing to persist: it answered nothing (and its directory may be gone)
            return None
        self._open[entry.kid] = context
        return context

    def principal(self, kid: bytes, credentials: Credentials, now: float) -> Principal | None:
        """The agent principal a context speaks for, while its credential stands; else None."""
        entry = self._by_kid.get(kid)
        if entry is None:
            return None
        credential = credentials.get(entry.credential)
        if (
            credential is None
            or credential.sha256 != entry.sha256
            or credential.agent_id != entry.agent_id
            or credential.expired(now)
        ):
            return None
        return credential.principal()

    def close(self) -> None:
        """Persist and release every open context (the master is stopping): each file written, then the file
        system synced once, by :data:`CLOSE_THREADS` threads (one fsync each, one after the other, took 0.7 ms a
        context: 7 s to stop a master of 10,000 CoAP agents)."""
        self._closed = True
        still_open = [c for c in self._open.values() if c.lockfile is not None]  # all opened tree-locked
        self._open.clear()
        if still_open:
            with ThreadPoolExecutor(CLOSE_THREADS, thread_name_prefix="edgerm-oscore-close") as pool:
                list(pool.map(_persist_for_close, still_open))
            sync_file_system(self.root)
        if self._lock >= 0:
            os.close(self._lock)  # releases the tree's flock
            self._lock = -1
