"""Authorization decisions: agents for their own id, frameworks for what they own, admin's teardown, views."""

from __future__ import annotations

import pytest

from edgerm import messages as m
from edgerm.auth.policy import Policy, check_view
from edgerm.auth.principal import Principal, Role
from edgerm.errors import Forbidden
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.model import AgentInfo, FrameworkInfo
from edgerm.resources import Resources

AGENT = Principal("agent-edge-1", Role.AGENT, agent_id=AgentId("edge-1"))
ALICE = Principal("alice", Role.FRAMEWORK)
BOB = Principal("bob", Role.FRAMEWORK)
PINNED = Principal("pinned", Role.FRAMEWORK, framework_id=FrameworkId("fw-pinned"))
ADMIN = Principal("admin", Role.ADMIN)
A = FrameworkId("fw-a")


def info(agent_id: str) -> AgentInfo:
    return AgentInfo(AgentId(agent_id), "h", Resources.parse("cpus:1"))


def test_an_agent_speaks_only_for_its_own_id() -> None:
    policy = Policy()
    for call in (
        m.RegisterAgent(info("edge-1")),
        m.AgentHeartbeat(AgentId("edge-1")),
        m.SubscribeAgent(AgentId("edge-1")),
    ):
        policy.agent_call(AGENT, call)
    for call in (
        m.RegisterAgent(info("edge-2")),
        m.AgentHeartbeat(AgentId("edge-2")),
        m.SubscribeAgent(AgentId("edge-2")),
    ):
        with pytest.raises(Forbidden):
            policy.agent_call(AGENT, call)
    for who in (ADMIN, ALICE):
        with pytest.raises(Forbidden, match="not an agent"):
            policy.agent_call(who, m.AgentHeartbeat(AgentId("edge-1")))


def test_a_framework_id_belongs_to_its_first_subscriber() -> None:
    policy = Policy()
    policy.subscribe(ALICE, m.Subscribe(FrameworkInfo(A, "a")))
    assert policy.subscribed(ALICE, A)
    assert not policy.subscribed(ALICE, A)  # re-subscribing keeps the binding
    policy.subscribe(ALICE, m.Subscribe(FrameworkInfo(A, "a")))
    with pytest.raises(Forbidden):
        policy.subscribe(BOB, m.Subscribe(FrameworkInfo(A, "a")))
    for call in (
        m.Kill(A, TaskId("t")),
        m.Acknowledge(A, AgentId("edge-1"), TaskId("t"), "u"),
        m.Reconcile(A),
        m.Teardown(A),
        m.Revive(A),
        m.Accept(A, (), ()),
    ):
        assert policy.scheduler_call(ALICE, call) is False
        with pytest.raises(Forbidden):
            policy.scheduler_call(BOB, call)
    assert policy.owners.owned_by("alice") == {A}
    assert policy.state_for(BOB, {"frameworks": [{"id": A}], "tasks": [], "agents": []})["frameworks"] == []


def test_admin_may_tear_any_framework_down_but_not_act_for_it() -> None:
    policy = Policy()
    policy.subscribed(ALICE, A)
    assert policy.scheduler_call(ADMIN, m.Teardown(A)) is True
    with pytest.raises(Forbidden):
        policy.scheduler_call(ADMIN, m.Kill(A, TaskId("t")))
    policy.torn_down(A)
    assert policy.owners.owner(A) is None


def test_a_pinned_credential_uses_only_its_framework_id() -> None:
    policy = Policy()
    call = policy.subscribe(PINNED, m.Subscribe(FrameworkInfo(FrameworkId(""), "p")))
    assert call.framework.id == "fw-pinned"
    with pytest.raises(Forbidden):
        policy.subscribe(PINNED, m.Subscribe(FrameworkInfo(A, "p")))
    with pytest.raises(Forbidden):
        policy.scheduler_call(PINNED, m.Revive(A))


def test_views_by_role() -> None:
    allowed = {
        Role.AGENT: {"agent", "modules"},
        Role.FRAMEWORK: {"scheduler", "state", "dashboard"},
        Role.ADMIN: {"scheduler", "state", "dashboard", "metrics", "modules", "other", "/new/route"},
        Role.METRICS: {"metrics"},
        Role.JOIN: {"join"},
    }
    views = {"agent", "scheduler", "state", "dashboard", "metrics", "modules", "join", "other", "/new/route"}
    for role, ok in allowed.items():
        who = Principal("p", role, agent_id=AgentId("x") if role is Role.AGENT else None)
        for view in views:
            if view in ok:
                check_view(who, view)
            else:
                with pytest.raises(Forbidden):
                    check_view(who, view)


def test_a_framework_sees_only_its_own_share_of_the_state() -> None:
    policy = Policy()
    policy.subscribed(ALICE, A)
    state: dict[str, object] = {
        "master": {"id": "m", "frameworks": 2, "tasks": 2, "outstanding_offers": 3},
        "frameworks": [{"id": A, "name": "a"}, {"id": "fw-b", "name": "b"}],
        "tasks": [{"id": "t-a", "framework_id": A}, {"id": "t-b", "framework_id": "fw-b"}],
        "agents": [{"id": "edge-1", "tasks": ["t-a", "t-b"]}],
    }
    mine = policy.state_for(ALICE, state)
    assert mine["frameworks"] == [{"id": A, "name": "a"}]
    assert mine["tasks"] == [{"id": "t-a", "framework_id": A}]
    assert mine["agents"] == [{"id": "edge-1", "tasks": ["t-a"]}]
    assert mine["master"] == {"id": "m", "frameworks": 1, "tasks": 1}
    assert policy.state_for(ADMIN, state) is state
