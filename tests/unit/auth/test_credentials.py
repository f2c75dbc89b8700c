"""The credentials model: tokens hashed, strict parsing, the file's atomic locked updates, expiry, join."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edgerm.auth import credentials as creds
from edgerm.auth.principal import Principal, Role
from edgerm.errors import ConfigError, Forbidden, MalformedMessage
from edgerm.ids import AgentId, FrameworkId


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_token_is_random_and_only_its_hash_is_kept() -> None:
    store = creds.CredentialStore()
    token, entry = store.issue(Role.ADMIN, "ops")
    other, _ = store.issue(Role.ADMIN, "ops2")
    assert token != other and token.startswith("edgerm_admin_") and len(token) > 40
    assert entry.sha256 == creds.hash_token(token) and token not in store.credentials.dump()
    assert store.principal_for_token(token) == Principal("ops", Role.ADMIN)
    assert store.principal_for_token(token + "x") is None
    assert store.principal_for_token("") is None
    assert store.principal_for_token("x" * 10_000) is None  # refused before hashing


def test_a_remembered_token_is_forgotten_when_revoked() -> None:
    store = creds.CredentialStore()
    token, _ = store.issue(Role.FRAMEWORK, "f")
    assert store.principal_for_token(token) is not None  # now cached
    assert store.revoke("f")
    assert store.principal_for_token(token) is None
    assert not store.revoke("f")


def test_bindings_travel_with_the_principal() -> None:
    store = creds.CredentialStore()
    agent, _ = store.issue(Role.AGENT, "a", agent_id=AgentId("edge-1"))
    framework, _ = store.issue(Role.FRAMEWORK, "f", framework_id=FrameworkId("fw-1"))
    assert store.principal_for_token(agent) == Principal("a", Role.AGENT, agent_id=AgentId("edge-1"))
    assert store.principal_for_token(framework) == Principal("f", Role.FRAMEWORK, framework_id=FrameworkId("fw-1"))
    with pytest.raises(ConfigError, match="needs its agent_id"):
        store.issue(Role.AGENT, "no-id")
    with pytest.raises(ConfigError, match="only agent credentials"):
        store.issue(Role.ADMIN, "x", agent_id=AgentId("edge-1"))
    with pytest.raises(ConfigError, match="used twice"):
        store.issue(Role.ADMIN, "a")


def test_expired_tokens_stop_working() -> None:
    clock = Clock()
    store = creds.CredentialStore(clock=clock)
    token, entry = store.issue(Role.FRAMEWORK, "short", expires_in=60)
    assert entry.expires == 1060.0 and store.principal_for_token(token) is not None
    clock.now = 1060.0
    assert store.principal_for_token(token) is None
    assert not store.valid(Principal("short", Role.FRAMEWORK))


def test_parse_is_strict_and_names_the_entry() -> None:
    good = creds.CredentialStore()
    good.issue(Role.ADMIN, "admin")
    assert [c.name for c in creds.parse(good.credentials.dump())] == ["admin"]
    digest = "a" * 64
    cases = {
        "credentials: [{name: x, role: king, sha256: " + digest + "}]": "credentials[0].role",
        "credentials: [{name: x, role: admin, sha256: short}]": "sha256 must be",
        "credentials: [{name: x, role: admin, sha256: " + digest + ", colour: red}]": "unknown key 'colour'",
        "credentials: [{name: x, role: admin, sha256: " + digest + ", expires: soon}]": "expires: expected a number",
        "version: 2\ncredentials: []": "version 2",
        "credentials: {}": "expected a list",
        "- just a list": "expected a mapping",
        "credentials: [{name: '', role: admin, sha256: " + digest + "}]": "credential name",
    }
    for text, message in cases.items():
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            creds.parse(text, "f.yaml")
    assert len(creds.parse("")) == 0


def test_the_file_is_written_atomically_mode_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "state" / creds.CREDENTIALS_FILE
    creds.update(path, lambda c: c, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store = creds.CredentialStore(path=path)
    token, _ = store.issue(Role.ADMIN, "admin")
    other = creds.CredentialStore(path=path)  # e.g. the running master
    assert other.principal_for_token(token) is not None
    creds.CredentialStore(path=path).issue(Role.METRICS, "scrape")  # e.g. `edgerm token create`
    assert [c.name for c in other.reload()] == ["admin", "scrape"]
    store.revoke("admin")
    other.reload()
    assert other.principal_for_token(token) is None
    assert not list(path.parent.glob(".credentials-*"))  # no temporary file left behind


def test_a_broken_file_on_reload_keeps_the_old_credentials(tmp_path: Path) -> None:
    path = tmp_path / creds.CREDENTIALS_FILE
    creds.update(path, lambda c: c, create=True)
    store = creds.CredentialStore(path=path)
    token, _ = store.issue(Role.ADMIN, "admin")
    path.write_text("credentials: [{oops")
    with pytest.raises(ConfigError):
        store.reload()
    assert store.principal_for_token(token) is not None
    with pytest.raises(ConfigError, match="run `edgerm-master init`"):
        creds.load(tmp_path / "missing.yaml")


def test_join_binds_an_id_once_and_an_expired_agent_may_rejoin() -> None:
    clock = Clock()
    store = creds.CredentialStore(clock=clock)
    token, entry = store.join(AgentId("edge-1"))
    assert entry.name == "agent-edge-1" and store.principal_for_token(token) == entry.principal()
    with pytest.raises(Forbidden, match="already joined"):
        store.join(AgentId("edge-1"))  # a second joiner cannot take the id over
    with pytest.raises(MalformedMessage):
        store.join(AgentId("bad id with spaces"))
    # An agent whose credential expired (e.g. it was offline) joins again under its id.
    expiring = creds.CredentialStore(clock=clock)
    expiring.issue(Role.AGENT, "agent-edge-2", agent_id=AgentId("edge-2"), expires_in=10)
    clock.now += 11
    again, _ = expiring.join(AgentId("edge-2"))
    assert expiring.principal_for_token(again) is not None
    assert len(expiring.credentials) == 1


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("12h", 43200), ("30d", 2592000), ("5", 5)])
def test_durations(text: str, seconds: float) -> None:
    assert creds.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5m", "0", "3y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError):
        creds.parse_duration(text)
