"""The data plane's logins and ACLs (edgerm.master.broker_gate), without a broker."""

from __future__ import annotations

from edgerm import dataflow_keys as k
from edgerm.auth.credentials import CredentialStore
from edgerm.auth.principal import Role
from edgerm.master.broker_gate import MASTER_USER, Access, BrokerGate, TaskView


def env(dag: str, op: str, inputs: str = "", index: int = 0) -> dict[str, str]:
    e = {k.ROLE: "operator", k.DAG: dag, k.OPERATOR: op, k.OUTPUT: f"edgerm/{dag}/{op}/out", k.REPLICA: f"{index}/2"}
    if inputs:
        e[k.INPUTS] = inputs
    return e


class World:
    def __init__(self) -> None:
        self.store = CredentialStore()
        self.gate = BrokerGate(b"k" * 32)
        self.tasks: dict[str, TaskView] = {}
        self.frameworks = {"fa", "fb"}
        self.owners: dict[str, set[str]] = {"alice": {"fa"}, "bob": {"fb"}}
        self.gate.attach(
            self.tasks.get,
            lambda fid: fid in self.frameworks,
            self.store,
            lambda p: frozenset(self.owners.get(p.name, set())),
        )

    def task(self, task_id: str, fid: str, e: dict[str, str], live: bool = True) -> tuple[str, str]:
        self.tasks[task_id] = TaskView(fid, e, live)
        creds = self.gate.credential_env(task_id)
        return creds[k.BROKER_USERNAME], creds[k.BROKER_PASSWORD]


def test_nobody_logs_in_without_a_valid_credential() -> None:
    w = World()
    user, password = w.task("t1", "fa", env("d", "map", "edgerm/d/src/out"))
    assert w.gate.login(None, None) is None
    assert w.gate.login(user, None) is None
    assert w.gate.login(user, password[:-1] + "0") is None
    assert w.gate.login("task:t2", password) is None  # another task's password
    assert w.gate.login(MASTER_USER, "guess") is None
    assert w.gate.login("anyone", "not-a-token") is None
    assert w.gate.login(user, password) is not None


def test_a_task_reads_its_inputs_and_writes_only_its_own_topics() -> None:
    w = World()
    grant = w.gate.login(*w.task("t1", "fa", env("d", "map", "edgerm/d/src/out", index=1)))
    assert grant is not None
    assert grant.may(Access.SUBSCRIBE, "edgerm/d/src/out") and grant.may(Access.RECEIVE, "edgerm/d/src/out")
    for own in ("edgerm/d/map/out", "edgerm/d/map/stats/1", "edgerm/d/map/state/1", "edgerm/d/map/claim/1"):
        assert grant.may(Access.PUBLISH, own), own
    for foreign in ("edgerm/d/src/out", "edgerm/d/map/state/0", "edgerm/d/other/out", "edgerm/e/map/out", "x"):
        assert not grant.may(Access.PUBLISH, foreign), foreign
    for unread in ("edgerm/d/#", "#", "edgerm/d/other/out", "edgerm/d/map/state/0"):
        assert not grant.may(Access.SUBSCRIBE, unread), unread


def test_a_finished_or_unknown_task_cannot_log_in() -> None:
    w = World()
    creds = w.task("t1", "fa", env("d", "map", "edgerm/d/src/out"), live=False)
    assert w.gate.login(*creds) is None
    assert w.gate.login(*w.task("t2", "fa", {"PLAIN": "1"})) is None  # not a dataflow task


def test_a_dataflow_belongs_to_the_first_framework_until_it_is_gone() -> None:
    w = World()
    assert w.gate.login(*w.task("a1", "fa", env("d", "map", "edgerm/d/src/out"))) is not None
    assert w.gate.login(*w.task("b1", "fb", env("d", "evil", "edgerm/d/map/out"))) is None
    assert w.gate.login(*w.task("b2", "fb", env("e", "ok", "edgerm/d/map/out"))) is None  # reads another dag
    w.frameworks.discard("fa")
    assert w.gate.login(*w.task("b3", "fb", env("d", "evil", "edgerm/d/map/out"))) is not None


def test_frameworks_read_only_their_own_dataflows_and_admins_read_all() -> None:
    w = World()
    w.gate.login(*w.task("a1", "fa", env("d", "map", "edgerm/d/src/out")))
    alice, _ = w.store.issue(Role.FRAMEWORK, "alice")
    bob, _ = w.store.issue(Role.FRAMEWORK, "bob")
    admin, _ = w.store.issue(Role.ADMIN, "root")
    agent, _ = w.store.issue(Role.AGENT, "ag", agent_id="a1")
    a, b, root = w.gate.login("x", alice), w.gate.login("x", bob), w.gate.login("x", admin)
    assert a is not None and b is not None and root is not None
    assert a.may(Access.RECEIVE, "edgerm/d/map/out") and not b.may(Access.RECEIVE, "edgerm/d/map/out")
    assert b.may(Access.SUBSCRIBE, "edgerm/#")  # a filter: deliveries are checked one by one
    assert root.may(Access.RECEIVE, "edgerm/d/map/out")
    assert not any(g.may(Access.PUBLISH, "edgerm/d/map/out") for g in (a, b, root))
    assert w.gate.login("x", agent) is None


def test_the_masters_own_login_reads_everything() -> None:
    w = World()
    grant = w.gate.login(MASTER_USER, w.gate.master_password)
    assert grant is not None and grant.may(Access.RECEIVE, "edgerm/d/map/stats/0")
    assert not grant.may(Access.PUBLISH, "edgerm/d/map/stats/0")


def test_passwords_come_from_the_key_and_are_not_in_reprs() -> None:
    one, two = BrokerGate(b"a" * 32), BrokerGate(b"a" * 32)
    assert one.task_password("t") == two.task_password("t") != BrokerGate(b"b" * 32).task_password("t")
