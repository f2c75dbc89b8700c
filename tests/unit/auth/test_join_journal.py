"""The join journal (edgerm.auth.joined): joins cost O(1), nothing is lost, the files stay one set."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgerm.auth import credentials as creds
from edgerm.auth import joined
from edgerm.auth.cli import token_main
from edgerm.auth.principal import Role
from edgerm.errors import ConfigError, Forbidden
from edgerm.ids import AgentId


class Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


def _init(state: Path) -> Path:
    path = state / creds.CREDENTIALS_FILE
    creds.update(path, lambda c: c, create=True)
    creds.CredentialStore(path=path).issue(Role.ADMIN, "admin")
    return path


def test_a_join_appends_to_the_journal_and_leaves_the_yaml_alone(tmp_path: Path) -> None:
    path = _init(tmp_path)
    before = path.read_bytes(), path.stat().st_ino
    store = creds.CredentialStore(path=path)
    tokens = [store.join(AgentId(f"edge-{i}"))[0] for i in range(50)]
    assert (path.read_bytes(), path.stat().st_ino) == before  # the YAML was not rewritten
    journal = tmp_path / joined.JOURNAL_FILE
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    assert len(journal.read_bytes().splitlines()) == 50
    fresh = creds.CredentialStore(path=path)  # e.g. the master after a restart
    assert len(fresh.credentials) == 51
    for i, token in enumerate(tokens):
        principal = fresh.principal_for_token(token)
        assert principal is not None and principal.agent_id == f"edge-{i}"
    with pytest.raises(Forbidden, match="already joined"):
        fresh.join(AgentId("edge-7"))  # the journal's entries count for the id check


def test_the_cli_lists_and_revokes_joined_agents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _init(tmp_path)
    master = creds.CredentialStore(path=path)
    token, _ = master.join(AgentId("edge-1"))
    master.join(AgentId("edge-2"))
    assert token_main(["list", "--json", "--state-dir", str(tmp_path)]) == 0
    names = [row["name"] for row in json.loads(capsys.readouterr().out)]
    assert names == ["admin", "agent-edge-1", "agent-edge-2"]
    assert token_main(["revoke", "agent-edge-1", "--state-dir", str(tmp_path)]) == 0
    assert master.principal_for_token(token) is not None  # until the master reloads (SIGHUP)
    master.reload()
    assert master.principal_for_token(token) is None
    assert master.credentials.get("agent-edge-2") is not None
    again, _ = master.join(AgentId("edge-1"))  # a revoked id may join again
    assert creds.CredentialStore(path=path).principal_for_token(again) is not None


def test_a_join_sees_what_the_cli_did_meanwhile(tmp_path: Path) -> None:
    path = _init(tmp_path)
    master = creds.CredentialStore(path=path)
    master.join(AgentId("edge-1"))
    assert token_main(["revoke", "agent-edge-1", "--state-dir", str(tmp_path)]) == 0
    creds.CredentialStore(path=path).issue(Role.METRICS, "scrape")
    master.join(AgentId("edge-1"))  # not Forbidden: the revocation was read under the lock
    assert {c.name for c in master.credentials} == {"admin", "scrape", "agent-edge-1"}


def test_a_torn_last_line_is_ignored_then_cut_off(tmp_path: Path) -> None:
    path = _init(tmp_path)
    store = creds.CredentialStore(path=path)
    token, _ = store.join(AgentId("edge-1"))
    journal = tmp_path / joined.JOURNAL_FILE
    with open(journal, "ab") as f:
        f.write(b'{"add": {"name": "agent-edge-2", "ro')  # a writer died mid-line
    reader = creds.CredentialStore(path=path)
    assert {c.name for c in reader.credentials} == {"admin", "agent-edge-1"}
    reader.join(AgentId("edge-3"))  # under the lock: the torn line goes, the new one is whole
    lines = journal.read_bytes().splitlines()
    assert len(lines) == 2 and all(json.loads(line) for line in lines)
    assert creds.CredentialStore(path=path).principal_for_token(token) is not None
    store.reload()
    assert {c.name for c in store.credentials} == {"admin", "agent-edge-1", "agent-edge-3"}


def test_a_broken_line_is_an_error_naming_it(tmp_path: Path) -> None:
    path = _init(tmp_path)
    store = creds.CredentialStore(path=path)
    store.join(AgentId("edge-1"))
    journal = tmp_path / joined.JOURNAL_FILE
    with open(journal, "ab") as f:
        f.write(b'{"add": {"name": "x", "role": "wizard", "sha256": "00"}}\n')
    with pytest.raises(ConfigError, match="line 2"):
        creds.CredentialStore(path=path)
    with pytest.raises(ConfigError, match="line 2"):
        store.reload()
    assert store.credentials.get("agent-edge-1") is not None  # the old set stays in force


def test_rejoining_many_times_compacts_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(joined, "COMPACT_SLACK", 8)
    clock = Clock()
    path = _init(tmp_path)
    store = creds.CredentialStore(path=path, clock=clock)
    store.join(AgentId("stays"))
    journal = tmp_path / joined.JOURNAL_FILE
    longest = 0
    for _ in range(40):
        store.revoke("agent-edge-1") if store.credentials.get("agent-edge-1") else None
        store.join(AgentId("edge-1"))
        longest = max(longest, len(journal.read_bytes().splitlines()))
    assert longest <= 2 * 2 + 8 + 2
    fresh = creds.CredentialStore(path=path)
    assert {c.name for c in fresh.credentials} == {"admin", "agent-stays", "agent-edge-1"}
    assert fresh.credentials.get("agent-edge-1") == store.credentials.get("agent-edge-1")


def test_an_agent_credential_in_the_yaml_from_an_older_master_is_replaced_there(tmp_path: Path) -> None:
    clock = Clock()
    path = _init(tmp_path)
    creds.CredentialStore(path=path, clock=clock).issue(Role.AGENT, "agent-old", agent_id=AgentId("old"), expires_in=10)
    clock.now += 11
    store = creds.CredentialStore(path=path, clock=clock)
    token, _ = store.join(AgentId("old"))
    assert "agent-old" not in path.read_text()  # the expired entry left the YAML
    assert creds.CredentialStore(path=path).principal_for_token(token) is not None


def test_a_name_in_both_files_is_refused(tmp_path: Path) -> None:
    path = _init(tmp_path)
    store = creds.CredentialStore(path=path)
    store.join(AgentId("edge-1"))
    entry = store.credentials.get("agent-edge-1")
    assert entry is not None
    creds.save(path, creds.Credentials([*creds.load(path), entry]))
    with pytest.raises(ConfigError, match="agent-edge-1"):
        creds.CredentialStore(path=path)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("join"), st.integers(0, 5)),
        st.tuples(st.just("revoke"), st.integers(0, 5)),
        st.tuples(st.just("issue"), st.integers(0, 3)),
        st.tuples(st.just("expire"), st.just(0)),
        st.tuples(st.just("restart"), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_the_files_always_hold_what_the_store_says(ops: list[tuple[str, int]]) -> None:
    """Any mix of joins, CLI changes, expiry and restarts: a fresh reader sees exactly the store's set."""
    joined.COMPACT_SLACK, saved = 3, joined.COMPACT_SLACK
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = _init(Path(tmp))
            clock = Clock()
            store = creds.CredentialStore(path=path, clock=clock)
            model: dict[str, str] = {c.name: c.sha256 for c in store.credentials}
            expires: dict[str, float] = {}
            for op, n in ops:
                if op == "join":
                    name = f"agent-a{n}"
                    live = name in model and (name not in expires or expires[name] > clock.now)
                    if live:
                        with pytest.raises(Forbidden):
                            store.join(AgentId(f"a{n}"))
                    else:
                        _, c = store.join(AgentId(f"a{n}"))
                        model[name] = c.sha256
                        expires.pop(name, None)
                elif op == "revoke":
                    cli = creds.CredentialStore(path=path)
                    assert cli.revoke(f"agent-a{n}") == (f"agent-a{n}" in model)
                    model.pop(f"agent-a{n}", None)
                    store.reload()
                elif op == "issue":
                    name = f"agent-a{n}"
                    if name not in model:  # an operator-made agent credential, expiring, in the YAML
                        creds.CredentialStore(path=path, clock=clock).issue(
                            Role.AGENT, name, agent_id=AgentId(f"a{n}"), expires_in=5
                        )
                        store.reload()
                        model[name] = store.credentials.get(name).sha256  # type: ignore[union-attr]
                        expires[name] = clock.now + 5
                elif op == "expire":
                    clock.now += 6
                else:
                    store = creds.CredentialStore(path=path, clock=clock)
                assert {c.name: c.sha256 for c in store.credentials} == model
                assert {c.name: c.sha256 for c in creds.CredentialStore(path=path).credentials} == model
            journal = Path(tmp) / joined.JOURNAL_FILE
            lines = len(journal.read_bytes().splitlines()) if journal.exists() else 0
            assert lines <= 2 * len(model) + 3 + 2
            assert not [p for p in os.listdir(tmp) if p.startswith(".credentials")]
    finally:
        joined.COMPACT_SLACK = saved
