"""Batched calls on the core (issue #13 part 6): an agent UPDATE carrying several statuses is taken as the
single UPDATEs would be, with one allocation at the end, so the resources of every task it ended come back
in one offer; an ACKNOWLEDGE carrying several acknowledgements takes each."""

from __future__ import annotations

from edgerm import messages as m
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master import events as ev
from edgerm.model import TaskState, TaskStatus
from edgerm.resources import Resources

F1, A1 = FrameworkId("f1"), AgentId("a1")


def launched(h, n: int) -> None:
    """Agent a1 (4 cpus), framework f1 with n RUNNING tasks of 1 cpu, all updates acknowledged."""
    h.agent()
    h.framework()
    [offer] = h.core.offers_of(F1)
    h.accept("f1", [offer], [h.task(f"t{i}", "cpus:1;mem:128") for i in range(n)], refuse=0)
    for i in range(n):
        [update] = h.updates(h.status(f"t{i}", TaskState.RUNNING))
        h.do(m.Acknowledge(F1, A1, TaskId(f"t{i}"), update.uuid))
    for offer in h.core.offers_of(F1):
        h.decline("f1", [offer], refuse=3600)


def finished(task_id: str, uuid: str) -> TaskStatus:
    return TaskStatus(TaskId(task_id), A1, TaskState.FINISHED, uuid=uuid)


def test_a_batch_of_statuses_is_forwarded_in_order_and_offers_what_they_freed_at_once(h):
    launched(h, 3)
    actions = h.do(ev.StatusReceived(A1, finished("t0", "u0"), (finished("t1", "u1"), finished("t2", "u2"))))
    assert [(s.task_id, s.state) for s in h.updates(actions)] == [(f"t{i}", TaskState.FINISHED) for i in range(3)]
    [offer] = h.offers(actions)  # one offer, after the whole batch: all three tasks' resources
    assert Resources.parse("cpus:3") <= offer.resources
    assert all(h.core.task(TaskId(f"t{i}")).state is TaskState.FINISHED for i in range(3))


def test_a_status_repeated_in_a_batch_is_taken_once(h):
    launched(h, 1)
    actions = h.do(ev.StatusReceived(A1, finished("t0", "u0"), (finished("t0", "u0"),)))
    assert len(h.updates(actions)) == 1


def test_a_batched_acknowledge_takes_every_update(h):
    launched(h, 3)
    actions = h.do(ev.StatusReceived(A1, finished("t0", "u0"), (finished("t1", "u1"), finished("t2", "u2"))))
    ups = h.updates(actions)
    more = tuple((A1, u.task_id, u.uuid) for u in ups[1:])
    h.do(m.Acknowledge(F1, A1, ups[0].task_id, ups[0].uuid, more))
    assert h.updates(h.tick(60)) == []  # nothing is re-sent: all three were acknowledged
    assert m.Acknowledge(F1, A1, TaskId("t"), "u", ((A1, TaskId("x"), "y"),)).each() == (
        m.Acknowledge(F1, A1, TaskId("t"), "u"),
        m.Acknowledge(F1, A1, TaskId("x"), "y"),
    )


def test_an_unacknowledged_part_of_a_batch_is_re_sent(h):
    launched(h, 2)
    actions = h.do(ev.StatusReceived(A1, finished("t0", "u0"), (finished("t1", "u1"),)))
    first, second = h.updates(actions)
    h.do(m.Acknowledge(F1, A1, first.task_id, first.uuid))  # an older driver: the first only
    assert {u.uuid for u in h.updates(h.tick(60))} == {second.uuid}
