"""DRF-specific ordering (the shared contract is in tests/contract/test_sorters.py)."""

from __future__ import annotations

from edgerm.ids import FrameworkId
from edgerm.master.allocator import DRFSorter, RoundRobinSorter
from edgerm.resources import Resources

A, B, C = FrameworkId("a"), FrameworkId("b"), FrameworkId("c")


def test_dominant_share_is_the_largest_fraction_of_any_scalar():
    # The example of the DRF paper: 9 cpus, 18 GB; A runs <1 cpu, 4 GB>, B <3 cpus, 1 GB>.
    total = Resources.parse("cpus:9;mem:18")
    s = DRFSorter()
    s.add(A)
    s.add(B)
    s.allocated(A, Resources.parse("cpus:1;mem:4"))
    s.allocated(B, Resources.parse("cpus:3;mem:1"))
    assert round(s.share(A, total), 3) == round(4 / 18, 3)
    assert round(s.share(B, total), 3) == round(3 / 9, 3)
    assert s.sort(total) == [A, B]
    s.allocated(A, Resources.parse("cpus:1;mem:4"))  # A now holds 8/18 of mem
    assert s.sort(total) == [B, A]


def test_share_ignores_what_the_cluster_does_not_have():
    s = DRFSorter()
    s.add(A)
    s.allocated(A, Resources.parse("gpus:1;ports:[80-90];cpus:1"))
    assert s.share(A, Resources.parse("cpus:4;mem:100")) == 0.25
    assert s.share(A, Resources()) == 0.0


def test_least_served_first_regardless_of_offer_recency():
    total = Resources.parse("cpus:10;mem:1000")
    s = DRFSorter()
    for c in (A, B, C):
        s.add(c)
    s.allocated(A, Resources.parse("cpus:5"))
    s.allocated(B, Resources.parse("mem:100"))
    s.offered(C)
    assert s.sort(total) == [C, B, A]


def test_ties_go_to_the_least_recently_offered():
    total = Resources.parse("cpus:10")
    s = DRFSorter()
    for c in (A, B, C):
        s.add(c)
        s.allocated(c, Resources.parse("cpus:1"))
    s.offered(B)
    s.offered(A)
    assert s.sort(total) == [C, B, A]


def test_round_robin_ignores_allocations():
    total = Resources.parse("cpus:10")
    s = RoundRobinSorter()
    s.add(A)
    s.add(B)
    s.allocated(A, Resources.parse("cpus:9"))
    assert s.sort(total) == [A, B]
    s.offered(A)
    assert s.sort(total) == [B, A]


def test_allocate_among_some_frameworks_keeps_the_sorter_order_and_exclusivity():
    from edgerm.ids import AgentId
    from edgerm.master.allocator import allocate

    total = Resources.parse("cpus:30;mem:300")
    s = DRFSorter()
    for c in (A, B, C):
        s.add(c)
    s.allocated(A, Resources.parse("cpus:10"))  # A is served most: B and C come first
    one = Resources.parse("cpus:1;mem:1")
    free = [(AgentId("x1"), one), (AgentId("x2"), one), (AgentId("held"), one)]
    holder = {AgentId("held"): B}.get
    grants = allocate(free, total, s, holder, lambda f, a: True, among={A, C})
    # Only A and C take part, C (least served) first: after x1 it holds 1/30 of the cpus, still less than
    # A's 10/30, so x2 is C's too; B holds an offer on "held", so it goes to neither.
    assert [(g.agent_id, g.framework_id) for g in grants] == [(AgentId("x1"), C), (AgentId("x2"), C)]
    only = allocate([(AgentId("x3"), one)], total, s, holder, lambda f, a: True, among={B})
    assert [(g.agent_id, g.framework_id) for g in only] == [(AgentId("x3"), B)]
