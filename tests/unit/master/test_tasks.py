"""Task lifecycle: status forwarding, reliability, kill, heartbeats, lost agents, teardown."""

from __future__ import annotations

import json

import pytest

from edgerm import messages as m
from edgerm.errors import UnknownAgent
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master import events as ev
from edgerm.master.actions import DropAgent, KillTask, LaunchTask, SendEvent
from edgerm.master.state import MasterConfig
from edgerm.master.tasks import TaskRecord, TaskTable
from edgerm.model import Reason, Source, TaskState, TaskStatus
from edgerm.resources import EMPTY, Resources
from tests.unit.master.conftest import task_info

A1, F1, F2, T1 = AgentId("a1"), FrameworkId("f1"), FrameworkId("f2"), TaskId("t1")


def staged(h, *task_ids: str, resources: str = "cpus:1;mem:128") -> None:
    """Agent a1, framework f1, and tasks launched (STAGING) from f1's offer."""
    h.agent()
    [offer] = h.offers(h.framework())
    h.accept("f1", [offer], [h.task(t, resources) for t in task_ids], refuse=0)


def ack(h, status: TaskStatus, framework_id: str = "f1") -> list:
    return h.do(m.Acknowledge(FrameworkId(framework_id), status.agent_id, status.task_id, status.uuid))


# -- status updates ---------------------------------------------------------------


def test_status_is_forwarded_with_the_agents_uuid(h):
    staged(h, "t1")
    actions = h.status("t1", TaskState.RUNNING, uuid="u-1")
    assert actions == [SendEvent(F1, m.Update(h.core.task(T1).status))]
    [update] = h.updates(actions, "f1")
    assert update.state is TaskState.RUNNING and update.uuid == "u-1" and update.agent_id == A1


def test_duplicate_status_is_taken_once(h):
    staged(h, "t1")
    assert len(h.updates(h.status("t1", TaskState.RUNNING, uuid="u-1"))) == 1
    assert h.status("t1", TaskState.RUNNING, uuid="u-1") == []
    h.status("t1", TaskState.FINISHED, uuid="u-2")
    assert h.status("t1", TaskState.FINISHED, uuid="u-2") == []
    assert h.status("t1", TaskState.RUNNING, uuid="u-1") == []


def test_status_without_uuid_gets_one_from_the_master(h):
    staged(h, "t1")
    [update] = h.updates(h.status("t1", TaskState.RUNNING, uuid=""))
    assert update.uuid.startswith("m-S")
    assert h.status("t1", TaskState.RUNNING, uuid="") == []  # same state, no uuid: no news


def test_terminal_status_frees_resources_and_allocates(h):
    staged(h, "t1", resources="cpus:2;mem:512")
    h.status("t1", TaskState.RUNNING)
    assert h.core.free(A1) == EMPTY  # the rest is offered again to f1
    actions = h.status("t1", TaskState.FINISHED)
    assert [u.state for u in h.updates(actions)] == [TaskState.FINISHED]
    [offer] = h.offers(actions)
    assert offer.resources == Resources.parse("cpus:2;mem:512")


def test_nothing_follows_a_terminal_state(h):
    staged(h, "t1")
    h.status("t1", TaskState.FAILED)
    assert h.status("t1", TaskState.RUNNING) == []
    assert h.status("t1", TaskState.KILLED) == []
    assert h.core.task(T1).state is TaskState.FAILED


def test_backwards_status_is_ignored(h):
    staged(h, "t1")
    h.status("t1", TaskState.RUNNING)
    assert h.status("t1", TaskState.STARTING) == []
    assert h.core.task(T1).state is TaskState.RUNNING


def test_status_of_unknown_task_kills_it_unless_it_ended(h):
    h.agent()
    assert h.status("ghost", TaskState.RUNNING) == [KillTask(A1, TaskId("ghost"), 3.0)]
    assert h.status("ghost", TaskState.FINISHED) == []


def test_status_from_the_wrong_agent_is_treated_as_unknown(h):
    staged(h, "t1")
    h.agent("a2")
    assert h.status("t1", TaskState.RUNNING, agent_id="a2") == [KillTask(AgentId("a2"), T1, 3.0)]
    assert h.core.task(T1).state is TaskState.STAGING


# -- reliable delivery ------------------------------------------------------------


def test_unacknowledged_update_is_resent_with_backoff_until_acknowledged(h):
    staged(h, "t1")
    [update] = h.updates(h.status("t1", TaskState.RUNNING))
    resent = []
    for _ in range(200):
        if h.updates(h.tick(0.5)):
            resent.append(h.now)
    assert resent == [2.0, 6.0, 14.0, 30.0, 60.0, 90.0]  # waits of 2, 4, 8, 16, then capped at 30
    assert ack(h, update) == []
    assert h.updates(h.tick(60)) == []
    assert ack(h, update) == []  # acknowledging twice is fine


def test_acknowledging_an_unknown_uuid_is_harmless(h):
    staged(h, "t1")
    assert h.do(m.Acknowledge(F1, A1, T1, "no-such-uuid")) == []


def test_a_newer_update_supersedes_the_unacknowledged_older_one(h):
    staged(h, "t1")
    h.status("t1", TaskState.RUNNING)
    h.status("t1", TaskState.FINISHED)
    [resent] = h.updates(h.tick(2.0))
    assert resent.state is TaskState.FINISHED


def test_updates_wait_for_a_disconnected_framework_and_come_first_on_resubscribe(h):
    staged(h, "t1", "t2")
    h.do(ev.FrameworkDisconnected(F1))
    assert h.status("t1", TaskState.RUNNING) == []
    assert h.updates(h.tick(5)) == []
    actions = h.framework("f1")
    states = [(u.task_id, u.state) for u in h.updates(actions)]
    assert states == [(T1, TaskState.RUNNING)]
    assert isinstance(actions[0], SendEvent) and isinstance(actions[0].event, m.Update)
    assert isinstance(actions[-1].event, m.Offers)


def test_returning_framework_keeps_its_tasks(h):
    staged(h, "t1")
    h.do(ev.FrameworkDisconnected(F1))
    h.framework("f1")
    assert h.core.task(T1).framework_id == F1
    assert len(h.kills(h.do(m.Kill(F1, T1)))) == 1


# -- reconciliation ---------------------------------------------------------------


def test_reconcile_named_tasks_including_unknown_ones(h):
    staged(h, "t1")
    h.status("t1", TaskState.RUNNING)
    actions = h.do(m.Reconcile(F1, ((T1, A1), (TaskId("zz"), A1))))
    known, unknown = h.updates(actions, "f1")
    assert (known.task_id, known.state, known.uuid, known.reason) == (T1, TaskState.RUNNING, "", Reason.RECONCILIATION)
    assert (unknown.task_id, unknown.state, unknown.uuid) == (TaskId("zz"), TaskState.UNKNOWN, "")
    assert unknown.reason is Reason.RECONCILIATION and unknown.source is Source.MASTER


def test_reconcile_all_tasks_of_the_framework(h):
    staged(h, "t1", "t2")
    h.status("t2", TaskState.RUNNING)
    statuses = {u.task_id: u.state for u in h.updates(h.do(m.Reconcile(F1)))}
    assert statuses == {T1: TaskState.STAGING, TaskId("t2"): TaskState.RUNNING}


def test_reconcile_does_not_reveal_another_frameworks_task(h):
    staged(h, "t1")
    h.framework("f2")
    [update] = h.updates(h.do(m.Reconcile(F2, ((T1, A1),))))
    assert update.state is TaskState.UNKNOWN


# -- kill -------------------------------------------------------------------------


def test_kill_running_task_marks_it_killing(h):
    staged(h, "t1")
    h.status("t1", TaskState.RUNNING)
    assert h.do(m.Kill(F1, T1)) == [KillTask(A1, T1, 3.0)]
    assert h.core.task(T1).state is TaskState.KILLING
    [update] = h.updates(h.status("t1", TaskState.KILLED))
    assert update.state is TaskState.KILLED


def test_kill_uses_the_tasks_grace(h):
    h.agent()
    [offer] = h.offers(h.framework())
    h.accept("f1", [offer], [h.task("t1", kill_grace=7.5)])
    assert h.do(m.Kill(F1, T1)) == [KillTask(A1, T1, 7.5)]


def test_kill_staging_task_is_sent_anyway_and_never_relaunched(h):
    staged(h, "t1")
    assert h.kills(h.do(m.Kill(F1, T1))) == [KillTask(A1, T1, 3.0)]
    h.advance(10)
    actions = h.heartbeat("a1")
    assert h.launches(actions) == []
    assert h.kills(actions) == [KillTask(A1, T1, 3.0)]  # the agent answers KILLED for a task it lacks


def test_kill_of_ended_task_is_a_no_op(h):
    staged(h, "t1")
    h.status("t1", TaskState.FINISHED)
    assert h.do(m.Kill(F1, T1)) == []
    assert h.core.task(T1).state is TaskState.FINISHED


def test_status_reported_before_the_kill_arrived_does_not_undo_killing(h):
    staged(h, "t1")
    h.do(m.Kill(F1, T1))
    assert h.status("t1", TaskState.RUNNING) == []
    assert h.core.task(T1).state is TaskState.KILLING


# -- heartbeats -------------------------------------------------------------------


def test_heartbeat_kills_tasks_the_master_does_not_know_or_considers_ended(h):
    staged(h, "t1", "t2")
    h.status("t2", TaskState.FINISHED)
    actions = h.heartbeat("a1", "t1", "t2", "zz")
    assert actions == [KillTask(A1, TaskId("t2"), 3.0), KillTask(A1, TaskId("zz"), 3.0)]


def test_heartbeat_resends_launch_of_a_staging_task_it_does_not_list(h):
    staged(h, "t1", "t2")
    h.advance(2.0)
    assert h.heartbeat("a1") == []  # not more than launch_retry_interval yet
    h.advance(0.5)
    actions = h.heartbeat("a1", "t2")
    assert [(a.agent_id, a.task.task_id) for a in actions if isinstance(a, LaunchTask)] == [(A1, T1)]
    h.advance(1.0)
    assert h.heartbeat("a1", "t2") == []  # sent 1 s ago
    h.advance(1.5)
    assert len(h.launches(h.heartbeat("a1", "t2"))) == 1


def test_heartbeat_from_unknown_agent_is_refused(h):
    with pytest.raises(UnknownAgent):
        h.heartbeat("nobody")


# -- lost agents ------------------------------------------------------------------


def test_silent_agent_is_unreachable_after_three_intervals_then_lost_after_the_timeout(make_harness):
    h = make_harness(MasterConfig(master_id="m", unreachable_timeout=30.0))
    h.framework("f1")
    h.framework("f2")
    h.agent("a1", heartbeat=1.0)
    [offer] = h.core.offers_of(F1)
    h.accept("f1", [offer], [h.task("t1"), h.task("t2")], refuse=0)
    ack(h, h.updates(h.status("t1", TaskState.RUNNING))[0])
    [held] = h.core.offers_of(F2)  # the leftover went to f2
    assert h.tick(3.0) == []
    actions = h.tick(0.01)
    unreachable = h.updates(actions, "f1")
    assert {u.task_id for u in unreachable} == {T1, TaskId("t2")}
    assert all(u.state is TaskState.UNREACHABLE and u.reason is Reason.AGENT_UNREACHABLE for u in unreachable)
    assert all(u.source is Source.MASTER and u.uuid for u in unreachable)
    assert h.events(actions, m.Rescind, "f2") == [m.Rescind(held.id)]
    assert h.events(actions, m.Failure, "f1") == []  # a partition is not a death
    assert h.core.agent_known(A1) and h.core.offers_of(F2) == []  # its resources left the pool
    assert "unreachable" in h.notices[-1].message and h.notices[-1].agent_id == A1
    for u in unreachable:
        ack(h, u)
    actions = h.tick(31.0)
    lost = h.updates(actions, "f1")
    assert {u.task_id for u in lost} == {T1, TaskId("t2")}
    assert all(u.state is TaskState.LOST and u.reason is Reason.AGENT_LOST for u in lost)
    assert h.events(actions, m.Failure, "f1") == [m.Failure(A1)]
    assert h.events(actions, m.Failure, "f2") == [m.Failure(A1)]
    assert DropAgent(A1) in actions
    assert not h.core.agent_known(A1)
    with pytest.raises(UnknownAgent):
        h.heartbeat("a1")
    # LOST is delivered reliably.
    assert {u.task_id for u in h.updates(h.tick(2.0), "f1")} == {T1, TaskId("t2")}


def test_unreachable_agent_that_heartbeats_again_gets_its_tasks_back_running(h):
    h.framework("f1")
    h.agent("a1", heartbeat=1.0)
    [offer] = h.core.offers_of(F1)
    h.accept("f1", [offer], [h.task("t1")], refuse=0)
    ack(h, h.updates(h.status("t1", TaskState.RUNNING))[0])
    [u] = h.updates(h.tick(3.5), "f1")
    assert u.state is TaskState.UNREACHABLE
    actions = h.heartbeat("a1", "t1")
    [back] = h.updates(actions, "f1")
    assert back.state is TaskState.RUNNING and back.reason is Reason.AGENT_REREGISTERED and back.uuid
    assert h.kills(actions) == []
    assert h.core.task(T1).state is TaskState.RUNNING
    assert [o.agent_id for o in h.offers(actions)] == [A1]  # its free resources are offered again


def test_heartbeats_keep_an_agent(h):
    h.framework()
    h.agent("a1", heartbeat=1.0)
    for _ in range(10):
        h.advance(1.0)
        h.heartbeat("a1")
        assert h.drops(h.tick()) == []
    assert h.core.agent_known(A1)


def test_lost_agent_coming_back_has_its_stale_tasks_killed(make_harness):
    h = make_harness(MasterConfig(master_id="m", unreachable_timeout=5.0))
    h.framework()
    h.agent("a1", heartbeat=1.0)
    [offer] = h.core.offers_of(F1)
    h.accept("f1", [offer], [h.task("t1")])
    h.status("t1", TaskState.RUNNING, uuid="u-1")
    h.tick(10.0)
    assert h.core.task(T1).state is TaskState.LOST
    running = TaskStatus(T1, A1, TaskState.RUNNING, uuid="u-1")
    actions = h.agent("a1", heartbeat=1.0, tasks=(running,))
    assert h.kills(actions) == [KillTask(A1, T1, 3.0)]
    assert h.core.task(T1).state is TaskState.LOST
    [offer] = h.offers(actions)
    assert offer.resources == Resources.parse("cpus:4;mem:1024")


# -- re-registration --------------------------------------------------------------


def test_reregistration_rescinds_offers_and_reconciles_tasks(h):
    staged(h, "t1", "t2", "t3", "t4")
    h.status("t2", TaskState.RUNNING)
    h.status("t3", TaskState.RUNNING)
    h.status("t4", TaskState.FINISHED)
    held = h.core.offers_of(F1)
    assert held
    reports = (
        TaskStatus(TaskId("t2"), A1, TaskState.FINISHED, uuid="r-2"),
        TaskStatus(TaskId("t4"), A1, TaskState.RUNNING, uuid="r-4"),
        TaskStatus(TaskId("zz"), A1, TaskState.RUNNING, uuid="r-z"),
    )
    actions = h.agent(tasks=reports)
    assert h.events(actions, m.Rescind, "f1") == [m.Rescind(o.id) for o in held]
    updates = {u.task_id: u for u in h.updates(actions)}
    assert updates[TaskId("t2")].state is TaskState.FINISHED
    assert updates[TaskId("t3")].state is TaskState.LOST  # the agent no longer holds it
    assert updates[TaskId("t3")].reason is Reason.AGENT_RESTARTED
    assert T1 not in updates and h.core.task(T1).state is TaskState.STAGING  # its launch may be in flight
    assert set(h.kills(actions)) == {KillTask(A1, TaskId("t4"), 3.0), KillTask(A1, TaskId("zz"), 3.0)}
    [offer] = h.offers(actions)
    assert offer.resources == Resources.parse("cpus:3;mem:896")  # t1 still holds its share


# -- teardown ---------------------------------------------------------------------


def test_teardown_kills_tasks_forgets_the_framework_and_frees_resources_when_tasks_end(h):
    staged(h, "t1", "t2")
    h.status("t1", TaskState.RUNNING)
    h.framework("f2")
    actions = h.do(m.Teardown(F1))
    assert set(h.kills(actions)) == {KillTask(A1, T1, 3.0), KillTask(A1, TaskId("t2"), 3.0)}
    assert not h.core.framework_known(F1)
    assert h.core.offers_of(F1) == []
    assert h.core.task(T1).state is TaskState.KILLING
    [leftover] = h.offers(actions, "f2")
    assert leftover.resources == Resources.parse("cpus:2;mem:768")
    actions = h.status("t1", TaskState.KILLED) + h.status("t2", TaskState.KILLED)
    assert h.updates(actions) == []  # nobody to tell
    assert h.core.task(T1).state is TaskState.KILLED
    assert sum(o.resources.cpus for o in h.core.offers_of(F2)) == 4.0


# -- memory and views -------------------------------------------------------------


def test_ended_tasks_are_forgotten_beyond_the_limit_once_acknowledged(make_harness):
    h = make_harness(MasterConfig(master_id="m", max_completed_tasks=2))
    staged(h, "t1", "t2", "t3", "t4")
    finals = [h.updates(h.status(t, TaskState.FINISHED))[0] for t in ("t1", "t2", "t3", "t4")]
    assert all(h.core.task(TaskId(t)) for t in ("t1", "t2", "t3", "t4"))  # unacknowledged: kept
    for final in finals:
        ack(h, final)
    assert [t for t in ("t1", "t2", "t3", "t4") if h.core.task(TaskId(t))] == ["t3", "t4"]
    [update] = h.updates(h.do(m.Reconcile(F1, ((T1, A1),))))
    assert update.state is TaskState.UNKNOWN


def test_snapshot_is_json_ready_and_complete(h):
    staged(h, "t1")
    h.status("t1", TaskState.RUNNING)
    snap = h.core.snapshot()
    json.dumps(snap)
    assert set(snap) == {"master", "agents", "frameworks", "tasks"}
    [agent] = snap["agents"]
    assert agent["id"] == "a1" and agent["used"] == "cpus:1;mem:128"
    assert agent["attributes"]["executors"] == ["docker", "wasm"]
    [framework] = snap["frameworks"]
    assert framework["id"] == "f1" and framework["active"] is True and len(framework["offers"]) == 1
    assert framework["unacknowledged"][0]["task_id"] == "t1"
    [task] = snap["tasks"]
    assert (task["id"], task["state"], task["agent_id"], task["framework_id"]) == ("t1", "RUNNING", "a1", "f1")


def test_free_of_unknown_agent_is_an_error(h):
    with pytest.raises(UnknownAgent):
        h.core.free(AgentId("nope"))


def test_an_agent_reusing_a_uuid_for_two_tasks_does_not_confuse_delivery(h):
    # Found by tests/property: the outbox once indexed pending updates by uuid alone.
    staged(h, "t1", "t2")
    [u1] = h.updates(h.status("t1", TaskState.RUNNING, uuid="same"))
    [u2] = h.updates(h.status("t2", TaskState.RUNNING, uuid="same"))
    assert (u1.task_id, u2.task_id) == (T1, TaskId("t2"))
    h.do(m.Acknowledge(F1, A1, TaskId("t2"), "same"))
    assert [u.task_id for u in h.updates(h.tick(2.0))] == [T1]
    assert len(h.updates(h.status("t2", TaskState.FINISHED, uuid="other"))) == 1


def test_killing_task_missing_at_reregistration_is_killed(h):
    staged(h, "t1")
    h.status("t1", TaskState.RUNNING)
    h.do(m.Kill(F1, T1))
    [update] = h.updates(h.agent())
    assert (update.task_id, update.state, update.source) == (T1, TaskState.KILLED, Source.MASTER)
    assert update.reason is Reason.KILLED_BY_FRAMEWORK


def test_used_on_follows_the_agents_live_tasks(h):
    staged(h, "t1", "t2", resources="cpus:1;mem:128")
    assert h.core.used_on(A1) == Resources.parse("cpus:2;mem:256")
    h.status("t1", TaskState.RUNNING)
    assert h.core.used_on(A1) == Resources.parse("cpus:2;mem:256")  # still live: the same
    h.status("t1", TaskState.FINISHED)
    assert h.core.used_on(A1) == Resources.parse("cpus:1;mem:128")  # kept sums are dropped when a task ends
    h.status("t2", TaskState.FAILED)
    assert h.core.used_on(A1) == EMPTY


def test_pruning_does_not_look_again_at_ended_tasks_kept_for_their_acknowledgement():
    """Ended tasks beyond the limit whose update waits for an acknowledgement are set aside, not re-walked
    by every prune (every Tick prunes); once acknowledged they are forgotten."""
    table = TaskTable()
    for i in range(500):
        info = task_info(f"t{i}", agent_id="a1")
        table.put(TaskRecord(info, TaskStatus(info.task_id, AgentId("a1"), TaskState.FINISHED)))
    asked: list[TaskId] = []

    def keep(task_id: TaskId) -> bool:
        asked.append(task_id)
        return True

    table.prune(10, keep)
    assert len(asked) == 500 and len(table) == 500  # each asked once; all kept: they wait for acknowledgements
    asked.clear()
    for _ in range(100):
        table.prune(10, keep)
    assert asked == []  # not looked at again
    table.release(TaskId("t0"))
    table.prune(10, lambda _: False)
    assert TaskId("t0") not in table and len(table) == 499
