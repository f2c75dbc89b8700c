"""The credentials file: one entry per principal, tokens stored as hashes only.

Role: the master's record of who may connect (:class:`CredentialStore`, an
:class:`~edgerm.auth.principal.Authenticator`), and the functions that read
and rewrite the file for ``edgerm-master init``, ``edgerm token`` and the
agent join endpoint. Format (YAML, ``credentials.yaml`` in the master's
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
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

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

    __slots__ = ("_by_hash", "_by_name")

    def __init__(self, entries: Iterable[Credential] = ()) -> None:
        by_name: dict[str, Credential] = {}
        by_hash: dict[str, Credential] = {}
        for c in entries:
            if c.name in by_name:
                raise ConfigError(f"credential {c.name}: the name is used twice")
            if c.sha256 in by_hash:
                raise ConfigError(f"credential {c.name}: the same token as {by_hash[c.sha256].name}")
            by_name[c.name] = c
            by_hash[c.sha256] = c
        self._by_name = by_name
        self._by_hash = by_hash

    def __iter__(self) -> Iterator[Credential]:
        return iter(sorted(self._by_name.values(), key=lambda c: c.name))

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Credential | None:
        return self._by_name.get(name)

    def by_hash(self, digest: str) -> Credential | None:
        return self._by_hash.get(digest)

    def agent_credential(self, agent_id: AgentId) -> Credential | None:
        return next((c for c in self._by_name.values() if c.agent_id == agent_id), None)

    def added(self, credential: Credential) -> Credentials:
        """A copy with ``credential``; ConfigError if its name or token is taken."""
        return Credentials([*self._by_name.values(), credential])

    def without(self, name: str) -> Credentials:
        return Credentials(c for c in self._by_name.values() if c.name != name)

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
    return Credentials(_entry(e, f"{source}: credentials[{i}]") for i, e in enumerate(entries))


def _entry(raw: object, where: str) -> Credential:
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


def update(path: Path, change: Callable[[Credentials], Credentials], *, create: bool = False) -> Credentials:
    """Read, ``change`` and write the file under its lock; returns what was written.

    ``create``: a missing file counts as empty (``init``); else it is ConfigError.
    """
    with _locked(path):
        if create and not path.exists():
            current = Credentials()
        else:
            current = load(path)
        new = change(current)
        save(path, new)
        return new


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
        if credentials is None:
            credentials = load(path) if path is not None else Credentials()
        self._set(credentials)

    @property
    def credentials(self) -> Credentials:
        return self._credentials

    def _set(self, credentials: Credentials) -> None:
        self._credentials = credentials
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
        if self.path is not None:
            self._set(load(self.path))
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
        """
        check_agent_id(agent_id)
        token, credential = self._mint(Role.AGENT, f"agent-{agent_id}", agent_id=agent_id)

        def change(current: Credentials) -> Credentials:
            old = current.agent_credential(agent_id)
            if old is not None and not old.expired(self._clock()):
                raise Forbidden(f"agent {agent_id} has already joined; revoke {old.name!r} to let it join again")
            stale = current.get(credential.name)  # e.g. an expired entry under the same name
            if stale is not None and stale.expired(self._clock()):
                current = current.without(stale.name)
            return (current.without(old.name) if old is not None else current).added(credential)

        self._change(change)
        return token, credential

    def _change(self, change: Callable[[Credentials], Credentials]) -> None:
        if self.path is None:
            self._set(change(self._credentials))
        else:
            self._set(update(self.path, change))
