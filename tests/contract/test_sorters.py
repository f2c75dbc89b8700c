"""The Sorter contract, run against every sorter (edgerm.master.allocator)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerm.ids import AgentId, FrameworkId
from edgerm.master.allocator import DRFSorter, Grant, RoundRobinSorter, Sorter, allocate
from edgerm.resources import EMPTY, Resources

SORTERS: list[Callable[[], Sorter]] = [DRFSorter, RoundRobinSorter]
TOTAL = Resources.parse("cpus:8;mem:4096")
A, B, C = FrameworkId("a"), FrameworkId("b"), FrameworkId("c")


@pytest.fixture(params=SORTERS, ids=lambda s: s.__name__)
def make(request: pytest.FixtureRequest) -> Callable[[], Sorter]:
    return request.param  # type: ignore[no-any-return]


def test_sort_lists_every_added_client_once(make):
    s = make()
    for c in (A, B, C, A):
        s.add(c)
    assert sorted(s.sort(TOTAL)) == [A, B, C]


def test_removed_clients_disappear_and_removing_twice_is_harmless(make):
    s = make()
    s.add(A)
    s.add(B)
    s.remove(A)
    s.remove(A)
    s.remove(FrameworkId("never"))
    assert s.sort(TOTAL) == [B]
    assert s.allocation(A) == EMPTY


def test_allocation_bookkeeping(make):
    s = make()
    s.add(A)
    s.allocated(A, Resources.parse("cpus:1;mem:100"))
    s.allocated(A, Resources.parse("cpus:0.5;ports:[80-80]"))
    assert s.allocation(A) == Resources.parse("cpus:1.5;mem:100;ports:[80-80]")
    s.unallocated(A, Resources.parse("cpus:1.5;mem:100;ports:[80-80]"))
    assert s.allocation(A) == EMPTY
    s.unallocated(A, Resources.parse("cpus:3"))
    assert s.allocation(A) == EMPTY  # never below empty


def test_absent_clients_are_ignored(make):
    s = make()
    s.allocated(A, Resources.parse("cpus:1"))
    s.unallocated(A, Resources.parse("cpus:1"))
    s.offered(A)
    assert s.sort(TOTAL) == [] and s.allocation(A) == EMPTY


def test_readding_starts_from_nothing(make):
    s = make()
    s.add(A)
    s.allocated(A, Resources.parse("cpus:4"))
    s.remove(A)
    s.add(A)
    assert s.allocation(A) == EMPTY


def test_equal_clients_take_turns(make):
    s = make()
    clients = [FrameworkId(f"f{i}") for i in range(7)]
    for c in clients:
        s.add(c)
    picked = []
    for _ in range(21):
        first = s.sort(TOTAL)[0]
        s.offered(first)
        picked.append(first)
    for i in range(0, 21, 7):
        assert sorted(picked[i : i + 7]) == sorted(clients)


def test_just_offered_client_goes_behind_its_equals(make):
    s = make()
    for c in (A, B, C):
        s.add(c)
    s.offered(A)
    assert s.sort(TOTAL)[-1] == A
    s.offered(B)
    assert s.sort(TOTAL) == [C, A, B]


OPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "allocated", "unallocated", "offered"]),
        st.sampled_from([A, B, C]),
        st.integers(0, 4),
    ),
    max_size=40,
)


@pytest.mark.parametrize("make_sorter", SORTERS, ids=lambda s: s.__name__)
@settings(max_examples=60, deadline=None)
@given(ops=OPS)
def test_sort_is_a_deterministic_permutation_of_the_clients(make_sorter, ops):
    def run() -> tuple[Sorter, set[FrameworkId]]:
        s, present = make_sorter(), set()
        for op, client, n in ops:
            if op == "add":
                s.add(client)
                present.add(client)
            elif op == "remove":
                s.remove(client)
                present.discard(client)
            elif op == "offered":
                s.offered(client)
            else:
                getattr(s, op)(client, Resources.scalar(cpus=n, mem=100 * n))
        return s, present

    s1, present = run()
    s2, _ = run()
    order = s1.sort(TOTAL)
    assert sorted(order) == sorted(present)
    assert order == s2.sort(TOTAL)
    assert all(s1.allocation(c) <= Resources.scalar(cpus=200, mem=20000) for c in present)


# -- allocate() over every sorter ---------------------------------------------------


def _agents(n: int) -> list[tuple[AgentId, Resources]]:
    return [(AgentId(f"a{i}"), Resources.parse("cpus:2;mem:512")) for i in range(n)]


def test_allocate_gives_each_agent_to_one_framework_and_records_it(make):
    s = make()
    for c in (A, B):
        s.add(c)
    grants = allocate(_agents(4), TOTAL, s, lambda a: None, lambda f, a: True)
    assert [g.agent_id for g in grants] == ["a0", "a1", "a2", "a3"]
    assert {g.framework_id for g in grants} == {A, B}  # turns, not one taking all
    for client in (A, B):
        held = [g.resources for g in grants if g.framework_id == client]
        assert s.allocation(client) == sum(held[1:], held[0])


def test_allocate_respects_holders_eligibility_and_empty_agents(make):
    s = make()
    for c in (A, B):
        s.add(c)
    free = [
        (AgentId("held"), Resources.parse("cpus:1")),
        (AgentId("only-b"), Resources.parse("mem:64")),
        (AgentId("nothing"), Resources.parse("disk:100;ports:[1-2]")),
        (AgentId("held-by-ineligible"), Resources.parse("cpus:1")),
    ]
    holders = {AgentId("held"): A, AgentId("held-by-ineligible"): C}
    grants = allocate(free, TOTAL, s, holders.get, lambda f, a: not (a == "only-b" and f == A) and f != C)
    assert grants == [
        Grant(AgentId("held"), A, Resources.parse("cpus:1")),
        Grant(AgentId("only-b"), B, Resources.parse("mem:64")),
    ]


def test_allocate_with_no_eligible_framework_grants_nothing(make):
    s = make()
    s.add(A)
    assert allocate(_agents(2), TOTAL, s, lambda a: None, lambda f, a: False) == []
    assert s.allocation(A) == EMPTY
