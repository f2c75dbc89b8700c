"""The registry: what the core persists, how it restores, settle periods, failover, limits.

The core's ``Persist`` actions are written to a real SQLite store in a temp
dir and loaded back, so a restored core is built from exactly what a
restarted master would read.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edgerm import messages as m
from edgerm.errors import ConfigError, Conflict, LimitExceeded, UnknownAgent
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master import events as ev
from edgerm.master.registry import Changes, ModuleStripper, strip_module
from edgerm.master.state import AgentState, MasterConfig
from edgerm.master.store import SqliteStore
from edgerm.model import AgentInfo, FrameworkInfo, Reason, TaskInfo, TaskState, TaskStatus, WasmSpec
from edgerm.resources import Resources

A1, F1, T1 = AgentId("a1"), FrameworkId("f1"), TaskId("t1")


def _persist(store: SqliteStore, batches: list[Changes]) -> None:
    store.apply(batches)
    batches.clear()


def _running_cluster(h, n: int = 3) -> list[TaskStatus]:
    """f1 runs n tasks on a1, every update acknowledged."""
    h.framework("f1")
    h.agent("a1", heartbeat=1.0)
    [offer] = h.core.offers_of(F1)
    h.accept("f1", [offer], [h.task(f"t{i}", "cpus:0.5;mem:64") for i in range(1, n + 1)], refuse=0)
    statuses = []
    for i in range(1, n + 1):
        [u] = h.updates(h.status(f"t{i}", TaskState.RUNNING, uuid=f"r-{i}"))
        h.do(m.Acknowledge(F1, A1, u.task_id, u.uuid))
        statuses.append(TaskStatus(u.task_id, A1, TaskState.RUNNING, uuid=f"r-{i}"))
    return statuses


def test_sqlite_store_round_trips_what_the_core_persists(make_harness, tmp_path: Path) -> None:
    h = make_harness()
    _running_cluster(h)
    module = b"\0asm\1\0\0\0"
    [offer] = h.core.offers_of(F1)
    h.accept("f1", [offer], [replace(h.task("w", "cpus:0.1;mem:8"), container=WasmSpec(module=module))])
    store = SqliteStore(tmp_path)
    _persist(store, h.persisted)
    registry = store.load()
    assert [f.info.id for f in registry.frameworks] == [F1]
    assert [a.info.id for a in registry.agents] == [A1]
    tasks = {t.info.task_id: t for t in registry.tasks}
    assert {TaskId("t1"), TaskId("t2"), TaskId("t3"), TaskId("w")} == set(tasks)
    assert tasks[T1].status.state is TaskState.RUNNING and tasks[T1].acknowledged
    w = tasks[TaskId("w")].info.container
    assert isinstance(w, WasmSpec) and not w.module and w.module_sha256  # bytes kept on disk, by hash
    assert store.module(w.module_sha256) == module
    store.close()


def test_a_second_master_on_one_state_dir_is_refused_naming_the_pid(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    try:
        with pytest.raises(ConfigError, match=r"in use by another master \(pid \d+\)"):
            SqliteStore(tmp_path)
    finally:
        store.close()
    SqliteStore(tmp_path).close()  # free again once the first closed


def _restarted(make_harness, h, tmp_path: Path, incarnation: str = "two", **config):
    store = SqliteStore(tmp_path)
    _persist(store, h.persisted)
    registry = store.load()
    store.close()
    h2 = make_harness(MasterConfig(master_id="m", incarnation=incarnation, **config))
    h2.now = h.now + 5.0
    h2.notices += h2.core.restore(registry, h2.now)
    return h2


def test_restarted_master_keeps_running_tasks_running_with_no_kill_and_no_duplicate(make_harness, tmp_path):
    h = make_harness()
    statuses = _running_cluster(h)
    h2 = _restarted(make_harness, h, tmp_path)
    assert "registry restored" in h2.notices[-1].message
    assert h2.core.task(T1).state is TaskState.RUNNING
    with pytest.raises(UnknownAgent):  # it must re-register, bringing its task statuses
        h2.heartbeat("a1", "t1", "t2", "t3")
    # The framework re-subscribes with its id; nothing was unacknowledged, so nothing is re-sent.
    assert h2.updates(h2.framework("f1")) == []
    actions = h2.agent("a1", heartbeat=1.0, tasks=tuple(statuses))
    assert h2.kills(actions) == [] and h2.updates(actions) == []
    assert all(h2.core.task(s.task_id).state is TaskState.RUNNING for s in statuses)
    # Offers resume, for what the tasks do not hold.
    [offer] = h2.offers(actions)
    assert offer.resources == Resources.parse("cpus:2.5;mem:832")
    assert ".two-O" in offer.id  # ids of this incarnation never repeat the last one's
    assert h2.drops(h2.tick(20.0)) == [] and h2.kills(h2.tick(1.0)) == []


def _unacknowledged_running_task(h) -> TaskStatus:
    """f1 runs t1 on a1; the RUNNING update was never acknowledged."""
    h.framework("f1")
    h.agent("a1", heartbeat=1.0)
    [offer] = h.core.offers_of(F1)
    h.accept("f1", [offer], [h.task("t1")], refuse=0)
    [u] = h.updates(h.status("t1", TaskState.RUNNING, uuid="r-1"))
    return u


def test_unacknowledged_updates_survive_a_restart_and_are_resent_on_resubscribe(make_harness, tmp_path):
    h = make_harness()
    u = _unacknowledged_running_task(h)
    h2 = _restarted(make_harness, h, tmp_path)
    [resent] = h2.updates(h2.framework("f1"))
    assert resent.uuid == u.uuid and resent.state is TaskState.RUNNING


def test_a_kill_pending_at_a_restart_is_resent_under_the_same_uuid_after_every_restart(make_harness, tmp_path):
    # KILLING is a status the master makes without a uuid; when the framework had not acknowledged the update
    # before it, a restored master re-sends KILLING reliably, under a uuid that each later restart repeats
    # (an acknowledgement of it, sent to the previous incarnation, is not refused as unknown by the next).
    h = make_harness()
    _unacknowledged_running_task(h)
    h.do(m.Kill(F1, T1))
    assert h.core.task(T1).state is TaskState.KILLING
    h2 = _restarted(make_harness, h, tmp_path)
    [first] = h2.updates(h2.framework("f1"))
    assert first.state is TaskState.KILLING and first.uuid
    h3 = _restarted(make_harness, h2, tmp_path, incarnation="three")
    [again] = h3.updates(h3.framework("f1"))
    assert again.state is TaskState.KILLING and again.uuid == first.uuid
    h3.do(m.Acknowledge(F1, A1, T1, first.uuid))
    assert [u for u in h3.updates(h3.tick(60.0)) if u.uuid == first.uuid] == []  # acknowledged: not re-sent


def test_unknown_tasks_are_killed_only_after_the_settle_period(make_harness, tmp_path):
    h = make_harness()
    statuses = _running_cluster(h, 1)
    h2 = _restarted(make_harness, h, tmp_path, reregister_grace=5.0)
    stranger = TaskStatus(TaskId("stranger"), A1, TaskState.RUNNING, uuid="x")
    actions = h2.agent("a1", heartbeat=1.0, tasks=(*statuses, stranger))
    assert h2.kills(actions) == []
    h2.heartbeat("a1", "t1", "stranger")
    assert h2.kills(h2.tick(2.0)) == []
    kills = h2.kills(h2.tick(3.5))
    assert [k.task_id for k in kills] == [TaskId("stranger")]
    assert "does not know" in kills[0].reason


def test_an_agent_that_does_not_come_back_goes_unreachable_after_the_settle_period_then_lost(make_harness, tmp_path):
    h = make_harness()
    _running_cluster(h, 1)
    h2 = _restarted(make_harness, h, tmp_path, reregister_grace=4.0, unreachable_timeout=10.0)
    h2.framework("f1")
    assert h2.updates(h2.tick(3.5)) == []
    [u] = h2.updates(h2.tick(1.0))
    assert u.state is TaskState.UNREACHABLE and u.reason is Reason.AGENT_UNREACHABLE
    lost = h2.updates(h2.tick(11.0))
    assert [(x.task_id, x.state) for x in lost if x.state is TaskState.LOST] == [(T1, TaskState.LOST)]


def test_an_agent_unreachable_before_a_restart_is_lost_on_its_first_timeout_not_a_new_one(make_harness, tmp_path):
    """The soak's agent_churn then master_kill9: an agent leaves for good, the master restarts while it is
    UNREACHABLE; its tasks are LOST when the unreachable timeout counted from its first miss ends, not later."""
    h = make_harness(MasterConfig(master_id="m", unreachable_timeout=20.0))
    _running_cluster(h, 1)
    [u] = h.updates(h.tick(3.5))
    assert u.state is TaskState.UNREACHABLE
    unreachable_at = h.now
    h2 = _restarted(make_harness, h, tmp_path, reregister_grace=3.0, unreachable_timeout=20.0)
    h2.framework("f1")
    assert [x.state for x in h2.updates(h2.tick(3.5))] == [TaskState.UNREACHABLE]  # re-sent: it was never acked
    assert [x for x in h2.updates(h2.tick(unreachable_at + 19.5 - h2.now)) if x.state is TaskState.LOST] == []
    lost = [x for x in h2.updates(h2.tick(1.0)) if x.state is TaskState.LOST]
    assert [(x.task_id, x.reason) for x in lost] == [(T1, Reason.AGENT_LOST)]


def test_an_agent_frozen_across_a_restart_gets_its_tasks_back_running(make_harness, tmp_path):
    """An agent UNREACHABLE (frozen) when the master restarts, back before the timeout: nothing is lost."""
    h = make_harness(MasterConfig(master_id="m", unreachable_timeout=20.0))
    statuses = _running_cluster(h, 2)
    h.tick(3.5)
    assert h.core.task(T1).state is TaskState.UNREACHABLE
    h2 = _restarted(make_harness, h, tmp_path, reregister_grace=3.0, unreachable_timeout=20.0)
    h2.framework("f1")
    h2.tick(8.0)  # settled; the agent is still frozen
    actions = h2.agent("a1", heartbeat=1.0, tasks=tuple(statuses))
    assert h2.kills(actions) == []
    back = h2.updates(actions)  # the framework is told (with the agent's own RUNNING: a restored record keeps one uuid)
    assert sorted(x.task_id for x in back) == [T1, TaskId("t2")] and all(x.state is TaskState.RUNNING for x in back)
    for _ in range(30):
        h2.advance(1.0)
        h2.heartbeat("a1", "t1", "t2")
        assert [x for x in h2.updates(h2.tick()) if x.state is TaskState.LOST] == []
    assert all(h2.core.task(s.task_id).state is TaskState.RUNNING for s in statuses)


def test_a_stalled_master_starts_a_settle_period_instead_of_declaring_agents_unreachable(make_harness):
    h = make_harness()
    _running_cluster(h, 1)
    h.now += 30.0  # the whole host was suspended: no Tick, no heartbeat for 30 s
    actions = h.do(ev.Tick())
    assert h.updates(actions) == [] and "stalled" in h.notices[-1].message
    h.advance(0.5)
    h.heartbeat("a1", "t1")
    assert h.updates(h.tick(2.0)) == []
    assert h.core.task(T1).state is TaskState.RUNNING


def test_a_framework_away_past_its_failover_timeout_loses_its_tasks_and_is_forgotten(make_harness):
    h = make_harness()
    h.do(ev.FrameworkSubscribed(FrameworkInfo(F1, "f1", failover_timeout=5.0)))
    h.agent("a1", heartbeat=1.0)
    [offer] = h.core.offers_of(F1)
    h.accept("f1", [offer], [h.task("t1")], refuse=0)
    h.do(ev.FrameworkDisconnected(F1))
    for _ in range(20):  # the agent keeps heartbeating; only the framework is away
        h.advance(0.25)
        h.heartbeat("a1", "t1")
        assert h.kills(h.do(ev.Tick())) == []
    h.advance(0.25)
    h.heartbeat("a1", "t1")
    kills = h.kills(h.do(ev.Tick()))
    assert kills and kills[0].task_id == T1
    assert not h.core.framework_known(F1)
    record = h.core.task(T1)
    assert record.state is TaskState.KILLING and record.status.reason is Reason.FRAMEWORK_FAILOVER_TIMEOUT


def test_a_second_agent_with_a_live_id_is_refused_until_the_first_is_silent(make_harness):
    h = make_harness()
    info = AgentInfo(A1, "a1.test", Resources.parse("cpus:4;mem:1024"), {"executors": frozenset({"wasm"})}, 1.0)
    h.do(ev.AgentRegistered(info, (), "first"))
    h.do(ev.AgentRegistered(info, (), "first"))  # the same instance may re-register (a retried REGISTER)
    h.advance(0.5)
    with pytest.raises(Conflict, match="live with another instance"):
        h.do(ev.AgentRegistered(info, (), "second"))
    h.advance(1.0)  # the first has been silent for a heartbeat interval
    h.do(ev.AgentRegistered(info, (), "second"))
    assert h.core.agent_info(A1) == info


def test_tasks_per_agent_are_limited_with_a_typed_error(make_harness):
    h = make_harness(MasterConfig(master_id="m", max_tasks_per_agent=2))
    h.framework("f1")
    h.agent("a1", heartbeat=1.0)
    [offer] = h.core.offers_of(F1)
    with pytest.raises(LimitExceeded, match="more than 2 tasks"):
        h.accept("f1", [offer], [h.task(f"t{i}", "cpus:0.1;mem:8") for i in range(3)])
    assert h.core.task(TaskId("t0")) is None and h.core.offers_of(F1) == [offer]  # nothing changed


def test_restored_agent_state_is_recovering_until_it_registers(make_harness, tmp_path):
    h = make_harness()
    _running_cluster(h, 1)
    h2 = _restarted(make_harness, h, tmp_path)
    state = h2.core.snapshot()
    [agent] = state["agents"]  # type: ignore[misc]
    assert agent["state"] == AgentState.RECOVERING.value


def test_the_module_stripper_strips_each_task_info_once_and_stays_bounded() -> None:
    strip = ModuleStripper(size=2)
    info = TaskInfo(TaskId("a"), "a", AgentId("ag"), Resources.parse("cpus:1"), WasmSpec(module=b"\0asm-bytes"))
    first = strip(info)
    assert first == strip_module(info) and first.container == WasmSpec(module_sha256=info.container.sha256)
    assert strip(info) is first  # the same info: the same stripped copy
    changed = replace(info, name="renamed")
    assert strip(changed) is not first and strip(changed).name == "renamed"
    plain = replace(info, task_id=TaskId("b"), container=WasmSpec(module_sha256="ab" * 32))
    assert strip(plain) is plain
    for n in range(5):
        strip(replace(info, task_id=TaskId(f"t{n}")))
    assert len(strip._done) <= 2


def test_a_heartbeat_refreshes_only_last_seen_in_the_registry_once_per_interval(make_harness, tmp_path: Path) -> None:
    h = make_harness(MasterConfig(master_id="m", last_seen_persist_interval=60.0))
    h.agent("a1", heartbeat=10.0)
    store = SqliteStore(tmp_path)
    _persist(store, h.persisted)
    [first] = store.load().agents
    for _ in range(5):  # 50 s: within the interval, nothing to write
        h.advance(10.0)
        h.heartbeat("a1")
    assert not any(h.persisted)
    h.advance(15.0)
    h.heartbeat("a1")  # 65 s after the registration: the column is due, and the row is not rewritten
    [changes] = h.persisted
    assert changes.seen == ((A1, h.now),) and changes.agents == ()
    _persist(store, h.persisted)
    [row] = store.load().agents
    assert row.last_seen == h.now and row.info == first.info and row.unreachable_since == first.unreachable_since
    h.advance(10.0)
    h.heartbeat("a1")
    assert not any(h.persisted)  # the next one is due 60 s later again
    store.close()


def test_a_group_of_batches_leaves_what_they_leave_one_by_one_writing_each_task_once(
    make_harness, tmp_path: Path
) -> None:
    # A whole life per task (accepted, RUNNING, acknowledged, FINISHED, acknowledged, forgotten) and tasks that
    # stay: the writer commits whatever queued in one transaction, and writes only each task's last row.
    h = make_harness(MasterConfig(master_id="m", max_completed_tasks=1))  # ended tasks are soon forgotten
    _running_cluster(h, n=3)
    for i in (1, 2):
        for u in h.updates(h.status(f"t{i}", TaskState.FINISHED, uuid=f"f-{i}")):
            h.do(m.Acknowledge(F1, A1, u.task_id, u.uuid))
    offers = h.core.offers_of(F1)
    h.accept("f1", offers[:1], [h.task("late", "cpus:0.1;mem:8")])
    batches = list(h.persisted)
    assert sum(len(b.tasks) for b in batches) > 4  # several rows per task went by
    assert any(b.tasks_gone for b in batches)  # and some went
    one_by_one, grouped = SqliteStore(tmp_path / "one"), SqliteStore(tmp_path / "group")
    for b in batches:
        one_by_one.apply([b])
    grouped.apply(batches)
    a, b = one_by_one.load(), grouped.load()
    assert [(t.info, t.status, t.acknowledged) for t in a.tasks] == [
        (t.info, t.status, t.acknowledged) for t in b.tasks
    ]
    assert a.agents == b.agents and a.frameworks == b.frameworks
    assert [t.info.task_id for t in b.tasks]  # something is left to compare
    from edgerm.master.store import _last_task_writes

    rows, gone = _last_task_writes(batches)
    assert len({t.info.task_id for t in rows}) == len(rows) and not set(gone) & {t.info.task_id for t in rows}
    one_by_one.close()
    grouped.close()
