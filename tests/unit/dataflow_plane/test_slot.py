"""A slot's claim (edgerm/agent/dataflow/slot.py) without a broker: what it holds, whose run it is, and
which of two instances is the later one."""

from __future__ import annotations

from edgerm.agent.dataflow.slot import claim, later, parse_claim


def test_a_claim_names_its_task_start_and_run_and_another_runs_claim_is_ignored() -> None:
    data = claim("task-b", 1700000000.5, "run-1")
    assert parse_claim(data, "run-1") == ("task-b", 1700000000.5)
    assert parse_claim(data, "run-2") is None
    assert parse_claim(b"not json", "run-1") is None and parse_claim(b'{"run": "run-1"}', "run-1") is None


def test_only_a_later_instance_takes_the_slot() -> None:
    assert later(("task-b", 20.0), "task-a", 10.0)  # started later: the slot is its
    assert not later(("task-a", 10.0), "task-b", 20.0)  # an earlier claim does not make a later instance yield
    assert not later(("task-a", 10.0), "task-a", 10.0)  # its own claim
    assert not later(None, "task-a", 10.0)
    assert later(("task-b", 10.0), "task-a", 10.0) and not later(("task-a", 10.0), "task-b", 10.0)  # a tie: by id
