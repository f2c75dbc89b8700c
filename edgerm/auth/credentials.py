"""The credentials file: one entry per principal, tokens stored as hashes only.

Role: the master's record of who may connect (:class:`CredentialStore`, an
:class:`~edgerm.auth.principal.Authenticator`), and the functions that read
and rewrite the file for ``edgerm-master init`` and ``edgerm token``. The
credentials minted by the agent join endpoint go to the join journal beside
it instead (:mod:`edgerm.auth.joined`: one appended line per join, so a join
costs O(1)); :class:`CredentialFiles` reads both as one set. Format (YAML, ``credentials.yaml`` in the master's
state dir, mode 0600)::

    version: 1
    credentials:
      - name: admin
        role: admin                  # agent | framework | admin | metrics | join
        sha256: 5e88...              # hashlib.sha256(token).hexdigest()
        created: 1790000000.0
        expires: 1790086400.0        # optional, unix time; absent: never
        agent_id: 3f2a...            # agent credentials: the only agent id it speaks for
        framework_id: ...            # optional: the only framework id it may use

Rules:
- Tokens are 256-bit random strings from :mod:`secrets`; only their sha256
  is stored, so a plain hash (not a slow KDF) is enough and a lookup costs
  one hash and one dict probe. The digest found is compared again with
  :func:`hmac.compare_digest`. Accepted tokens are remembered (token ->
  principal, at most :data:`CACHE_SIZE`), so a heartbeat costs one dict
  probe; the cache is dropped whenever the set changes (reload, issue,
  revoke), and expiry is checked on every use.
- Every write goes to a temporary file that is renamed over the old one
  (mode 0600), under an exclusive ``flock`` on ``credentials.yaml.lock``, so
  the CLI and a running master (join) never lose each other's changes, and
  a reader never sees half a file.
- Parsing is strict: an unknown key, a bad role, a duplicate name or hash
  raises :class:`~edgerm.errors.ConfigError` naming the entry; the master
  keeps its old credentials when a reload (SIGHUP) finds a broken file.
- No asyncio here; file access only in the functions that say so.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from edgerm.auth.joined import JOURNAL_FILE, Journal
from edgerm.auth.principal import Principal, Role
from edgerm.errors import ConfigError, Forbidden, MalformedMessage
from edgerm.ids import AgentId, FrameworkId

CREDENTIALS_FILE = "credentials.yaml"
FORMAT_VERSION = 1
TOKEN_PREFIX = "edgerm_"
MAX_TOKEN_LENGTH = 256  # longer "tokens" are refused before hashing
CACHE_SIZE = 65_536  # accepted tokens remembered; the cache starts over when full

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:\-]{0,127}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_KEYS = frozenset({"name", "role", "sha256", "created", "expires", "agent_id", "framework_id"})


def new_token(role: Role) -> str:
    """A fresh random token (256 bits), prefixed so it is recognisable in a leak scan."""
    return f"{TOKEN_PREFIX}{role.value}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``12h``, ``30d``, ``2w`` (or plain seconds) as seconds; ConfigError otherwise."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f"{text!r} is not a duration like 90s, 15m, 12h, 30d or 2w")
    return float(match.group(1)) * _UNITS[match.group(2)]


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"credential name {name!r}: use 1-128 letters, digits and _.@:- (starting alphanumeric)")
    return name


def check_agent_id(agent_id: str) -> AgentId:
    if not _ID.fullmatch(agent_id):
        raise MalformedMessage(f"agent id {agent_id[:80]!r} is not 1-128 letters, digits and _.:-")
    return AgentId(agent_id)


@dataclass(frozen=True, slots=True)
class Credential:
    """One principal's entry. ``sha256`` is the hex digest of its token."""

    name: str
    role: Role
    sha256: str
    created: float = 0.0
    expires: float | None = None
    agent_id: AgentId | None = None
    framework_id: FrameworkId | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        if not _SHA256.fullmatch(self.sha256):
            raise ConfigError(f"credential {self.name}: sha256 must be 64 lowercase hex digits")
        if self.role is Role.AGENT and not self.agent_id:
            raise ConfigError(f"credential {self.name}: an agent credential needs its agent_id")
        if self.agent_id and self.role is not Role.AGENT:
            raise ConfigError(f"credential {self.name}: only agent credentials have an agent_id")
        if self.framework_id and self.role is not Role.FRAMEWORK:
            raise ConfigError(f"credential {self.name}: only framework credentials have a framework_id")

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    def principal(self) -> Principal:
        return Principal(self.name, self.role, self.agent_id, self.framework_id)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "role": self.role.value, "sha256": self.sha256}
        out["created"] = self.created
        if self.expires is not None:
            out["expires"] = self.expires
        if self.agent_id:
            out["agent_id"] = self.agent_id
        if self.framework_id:
            out["framework_id"] = self.framework_id
        return out


class Credentials:
    """An immutable set of credentials, unique by name and by hash."""

    __slots__ = ("_by_agent", "_by_hash", "_by_name")

    def __init__(self, entries: Iterable[Credential] = ()) -> None:
        by_name: dict[str, Credential] = {}
        by_hash: dict[str, Credential] = {}
        by_agent: dict[AgentId, tuple[str, ...]] = {}
        for c in entries:
            if c.name in by_name:
                raise ConfigError(f"credential {c.name}: the name is used twice")
            if c.sha256 in by_hash:
                raise ConfigError(f"credential {c.name}: the same token as {by_hash[c.sha256].name}")
            by_name[c.name] = c
            by_hash[c.sha256] = c
            if c.agent_id:
                by_agent[c.agent_id] = (*by_agent.get(c.agent_id, ()), c.name)
        self._by_name = by_name
        self._by_hash = by_hash
        self._by_agent = by_agent

    def __iter__(self) -> Iterator[Credential]:
        return iter(sorted(self._by_name.values(), key=lambda c: c.name))

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Credential | None:
        return self._by_name.get(name)

    def by_hash(self, digest: str) -> Credential | None:
        return self._by_hash.get(digest)

    def agent_credential(self, agent_id: AgentId) -> Credential | None:
        """The first credential (in the order they were added) that speaks for ``agent_id``."""
        names = self._by_agent.get(agent_id)
        return self._by_name[names[0]] if names else None

    def _copy(self) -> Credentials:
        out = Credentials.__new__(Credentials)
        out._by_name, out._by_hash, out._by_agent = dict(self._by_name), dict(self._by_hash), dict(self._by_agent)
        return out

    def added(self, credential: Credential) -> Credentials:
        """A copy with ``credential``; ConfigError if its name or token is taken. O(1) but for copying dicts."""
        c = credential
        if c.name in self._by_name:
            raise ConfigError(f"credential {c.name}: the name is used twice")
        if c.sha256 in self._by_hash:
            raise ConfigError(f"credential {c.name}: the same token as {self._by_hash[c.sha256].name}")
        out = self._copy()
        out._by_name[c.name] = c
        out._by_hash[c.sha256] = c
        if c.agent_id:
            out._by_agent[c.agent_id] = (*out._by_agent.get(c.agent_id, ()), c.name)
        return out

    def without(self, name: str) -> Credentials:
        c = self._by_name.get(name)
        if c is None:
            return self
        out = self._copy()
        del out._by_name[name]
        del out._by_hash[c.sha256]
        if c.agent_id:
            rest = tuple(n for n in out._by_agent[c.agent_id] if n != name)
            if rest:
                out._by_agent[c.agent_id] = rest
            else:
                del out._by_agent[c.agent_id]
        return out

    def dump(self) -> str:
        header = "# edgerm credentials: token hashes only. Change with `edgerm token create|revoke`.\n"
        body = {"version": FORMAT_VERSION, "credentials": [c.to_json() for c in self]}
        return header + yaml.safe_dump(body, sort_keys=False)


def parse(text: str, source: str = CREDENTIALS_FILE) -> Credentials:
    """The credentials in ``text`` (the YAML above); ConfigError naming the entry otherwise."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not YAML: {e}") from None
    if doc is None:
        return Credentials()
    if not isinstance(doc, Mapping) or set(doc) - {"version", "credentials"}:
        raise ConfigError(f"{source}: expected a mapping with 'version' and 'credentials'")
    if doc.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        raise ConfigError(f"{source}: version {doc.get('version')!r} is not {FORMAT_VERSION}")
    entries = doc.get("credentials")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: credentials: expected a list")
    return Credentials(entry(e, f"{source}: credentials[{i}]") for i, e in enumerate(entries))


def entry(raw: object, where: str) -> Credential:
    """One checked entry of the file (or of the join journal); ConfigError naming ``where``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(map(str, unknown))[0]!r}")
    try:
        role = Role(str(raw.get("role")))
    except ValueError:
        raise ConfigError(f"{where}.role: one of {', '.join(r.value for r in Role)}") from None

    def number(key: str) -> float | None:
        value = raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}.{key}: expected a number (unix time)")
        return float(value)

    def text(key: str) -> str | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{where}.{key}: expected a string")
        return value

    try:
        agent_id, framework_id = text("agent_id"), text("framework_id")
        return Credential(
            name=text("name") or "",
            role=role,
            sha256=text("sha256") or "",
            created=number("created") or 0.0,
            expires=number("expires"),
            agent_id=AgentId(agent_id) if agent_id else None,
            framework_id=FrameworkId(framework_id) if framework_id else None,
        )
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


# -- the file (these functions do file I/O) -------------------------------------------


def load(path: Path) -> Credentials:
    """Read the credentials file; a missing file is ConfigError (run ``edgerm-master init``)."""
    try:
        return parse(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no credentials file (run `edgerm-master init`)") from None


def save(path: Path, credentials: Credentials) -> None:
    """Write atomically, mode 0600 (a reader sees the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(credentials.dump())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class CredentialFiles:
    """``credentials.yaml`` and the journal of joined agents (:mod:`edgerm.auth.joined`), as last read (file I/O).

    :attr:`credentials` is both together. :meth:`refresh` re-reads the YAML
    only when its inode, size or mtime changed, and the journal from where it
    stopped, so a process that keeps one of these pays for what changed.
    Change it only under the file's lock (:func:`update` and :class:`CredentialStore` take it).
    """

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        self.journal: Journal[Credential] = Journal(path.with_name(JOURNAL_FILE), entry)
        self.listed = Credentials()  # the YAML's
        self.credentials = Credentials()  # the YAML's and the journal's
        self._seen: tuple[int, int, int] | None = None
        self._create = create
        self.refresh()

    def refresh(self, *, repair: bool = False) -> bool:
        """Read what changed on disk; whether anything did. ``repair``: the caller holds the lock."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if not self._create:
                raise ConfigError(f"{self.path}: no credentials file (run `edgerm-master init`)") from None
            st = None
        seen = _stat_key(st) if st is not None else None
        listed_changed = seen != self._seen or (seen is None and len(self.listed) > 0)
        if listed_changed:
            self.listed = load(self.path) if st is not None else Credentials()
            self._seen = seen
        if self.journal.refresh(repair=repair) or listed_changed:
            self.credentials = Credentials([*self.listed._by_name.values(), *self.journal.entries.values()])
            return True
        return False

    def commit(self, new: Credentials) -> None:
        """Make the files hold ``new`` (the caller holds the lock and refreshed): entries the journal
        holds and ``new`` keeps stay there, the rest is the YAML's (rewritten only if its part changed)."""
        kept = self.journal.entries
        removes = [name for name, c in kept.items() if new._by_name.get(name) is not c]
        listed = Credentials(c for name, c in new._by_name.items() if name not in kept or name in removes)
        if listed._by_name != self.listed._by_name or not self.path.exists():
            self._save_listed(listed)
        self.listed = listed
        self.journal.append((), removes)
        self.credentials = new

    def join(self, credential: Credential, replaces: Iterable[str]) -> None:
        """Record a joined agent's credential in the journal, dropping ``replaces`` (the caller holds the lock
        and refreshed); O(1) unless a replaced entry is in the YAML (from an older master)."""
        gone = [name for name in replaces if self.credentials.get(name) is not None]
        in_yaml = [name for name in gone if name in self.listed._by_name]
        new = self.credentials
        for name in gone:
            new = new.without(name)
        if in_yaml:
            listed = self.listed
            for name in in_yaml:
                listed = listed.without(name)
            self._save_listed(listed)
        self.journal.append([credential], [name for name in gone if name not in in_yaml])
        self.credentials = new.added(credential)

    def _save_listed(self, listed: Credentials) -> None:
        """Write the YAML's part (the caller holds the lock) and remember it as read."""
        save(self.path, listed)
        self.listed, self._seen = listed, _stat_key(os.stat(self.path))


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


def update(path: Path, change: Callable[[Credentials], Credentials], *, create: bool = False) -> Credentials:
    """Read, ``change`` and write the files under their lock; returns what they hold now.

    ``create``: a missing file counts as empty (``init``); else it is ConfigError.
    New entries go to the YAML; removed ones leave whichever file held them.
    """
    with _locked(path):
        files = CredentialFiles(path, create=create)
        files.refresh(repair=True)
        files.commit(change(files.credentials))
        return files.credentials


# -- the master's view ------------------------------------------------------------------


class CredentialStore:
    """The master's :class:`~edgerm.auth.principal.Authenticator` over a credentials set.

    ``path`` None: in memory only (tests and the demo provision through
    :meth:`issue`). With a path, :meth:`reload` re-reads it (SIGHUP) and
    :meth:`issue`/:meth:`revoke` rewrite it under its lock.
    """

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._clock = clock
        self._cache: dict[str, tuple[Principal, float | None]] = {}
        self._mutex = threading.Lock()  # joins run in worker threads; one at a time changes the files
        self._files = CredentialFiles(path) if path is not None else None
        if credentials is None:
            credentials = self._files.credentials if self._files is not None else Credentials()
        self._set(credentials)

    @property
    def credentials(self) -> Credentials:
        return self._credentials

    def _set(self, credentials: Credentials, *, only_added: bool = False) -> None:
        self._credentials = credentials
        if not only_added:
            self._cache = {}  # a new set: nothing remembered may outlive a revocation

    def principal_for_token(self, token: str) -> Principal | None:
        hit = self._cache.get(token)
        if hit is None:
            if not token or len(token) > MAX_TOKEN_LENGTH:
                return None
            digest = hash_token(token)
            credential = self._credentials.by_hash(digest)
            if credential is None or not hmac.compare_digest(credential.sha256, digest):
                return None
            if len(self._cache) >= CACHE_SIZE:
                self._cache = {}
            hit = self._cache[token] = (credential.principal(), credential.expires)
        principal, expires = hit
        if expires is not None and self._clock() >= expires:
            return None
        return principal

    def valid(self, principal: Principal) -> bool:
        """Whether ``principal``'s credential still exists, unexpired (checked on open streams after a reload)."""
        credential = self._credentials.get(principal.name)
        return credential is not None and credential.principal() == principal and not credential.expired(self._clock())

    def reload(self) -> Credentials:
        """Re-read the file (no-op in memory); ConfigError leaves the old set in place."""
        if self._files is not None:
            with self._mutex:
                if self._files.refresh():
                    self._set(self._files.credentials)
        return self._credentials

    def issue(
        self,
        role: Role,
        name: str | None = None,
        *,
        expires_in: float | None = None,
        agent_id: AgentId | None = None,
        framework_id: FrameworkId | None = None,
    ) -> tuple[str, Credential]:
        """Mint a token for a new credential and record it; returns (token, entry). ConfigError if the name is taken."""
        token, credential = self._mint(role, name, expires_in, agent_id, framework_id)
        self._change(lambda c: c.added(credential))
        return token, credential

    def _mint(
        self,
        role: Role,
        name: str | None,
        expires_in: float | None = None,
        agent_id: AgentId | None = None,
        framework_id: FrameworkId | None = None,
    ) -> tuple[str, Credential]:
        token = new_token(role)
        now = self._clock()
        credential = Credential(
            name=check_name(name or f"{role.value}-{secrets.token_hex(4)}"),
            role=role,
            sha256=hash_token(token),
            created=now,
            expires=now + expires_in if expires_in is not None else None,
            agent_id=agent_id,
            framework_id=framework_id,
        )
        return token, credential

    def revoke(self, name: str) -> bool:
        """Remove a credential by name; whether it existed."""
        existed = self._credentials.get(name) is not None
        self._change(lambda c: c.without(name))
        return existed

    def join(self, agent_id: AgentId) -> tuple[str, Credential]:
        """Mint the agent credential for ``agent_id`` (the join endpoint).

        An id whose credential is still valid is taken: Forbidden (revoke it
        first to let another joiner claim it). An expired one is replaced, so
        an agent that was offline past its expiry re-joins under its old id.
        With a path, the credential is appended to the join journal
        (:mod:`edgerm.auth.joined`) and fsynced before this returns: O(1) in
        the number of credentials.
        """
        check_agent_id(agent_id)
        token, credential = self._mint(Role.AGENT, f"agent-{agent_id}", agent_id=agent_id)
        if self._files is None:
            current = self._credentials
            for name in self._replaced_by(current, credential):
                current = current.without(name)
            self._set(current.added(credential))
            return token, credential
        assert self.path is not None
        with self._mutex, _locked(self.path):
            changed = self._files.refresh(repair=True)
            replaced = self._replaced_by(self._files.credentials, credential)
            self._files.join(credential, replaced)
            self._set(self._files.credentials, only_added=not changed and not replaced)
        return token, credential

    def _replaced_by(self, current: Credentials, credential: Credential) -> list[str]:
        """The expired entries a join of ``credential`` replaces; Forbidden if its agent id is taken."""
        assert credential.agent_id is not None
        now = self._clock()
        old = current.agent_credential(credential.agent_id)
        if old is not None and not old.expired(now):
            raise Forbidden(f"agent {credential.agent_id} has already joined; revoke {old.name!r} to let it join again")
        gone = []
        stale = current.get(credential.name)  # e.g. an expired entry under the same name
        if stale is not None and stale.expired(now):
            gone.append(stale.name)
        if old is not None and old.name not in gone:
            gone.append(old.name)
        return gone

    def _change(self, change: Callable[[Credentials], Credentials]) -> None:
        if self._files is None or self.path is None:
            self._set(change(self._credentials))
            return
        with self._mutex, _locked(self.path):
            self._files.refresh(repair=True)
            self._files.commit(change(self._files.credentials))
            self._set(self._files.credentials)
