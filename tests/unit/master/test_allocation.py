"""Offers: who gets what, exclusivity, filters, revive/suppress, expiry, fairness."""

from __future__ import annotations

import pytest

from edgerm import messages as m
from edgerm.errors import NotSubscribed, OfferExpired
from edgerm.ids import AgentId, FrameworkId, OfferId
from edgerm.master import events as ev
from edgerm.master.actions import SendEvent
from edgerm.master.allocator import DRFSorter, RoundRobinSorter
from edgerm.model import TaskState
from edgerm.resources import EMPTY, Resources

A1, F1, F2 = AgentId("a1"), FrameworkId("f1"), FrameworkId("f2")


def test_registration_offers_the_whole_agent_at_once(h):
    assert h.framework() == []
    actions = h.agent(resources="cpus:4;mem:1024;ports:[8000-8010]")
    assert len(actions) == 1
    [send] = actions
    assert isinstance(send, SendEvent) and send.framework_id == F1
    [offer] = h.offers(actions)
    assert offer.id == OfferId("m-O1")
    assert offer.agent_id == A1 and offer.hostname == "a1.local"
    assert offer.resources == Resources.parse("cpus:4;mem:1024;ports:[8000-8010]")
    assert offer.attributes["executors"] == frozenset({"wasm", "docker"})
    assert offer.expires_at == 10.0
    assert h.core.free(A1) == EMPTY
    assert h.core.offers_of(F1) == [offer]


def test_subscribing_framework_gets_all_free_agents_in_one_event(h):
    h.agent("a1")
    h.agent("a2")
    actions = h.framework()
    assert len(actions) == 1
    assert sorted(o.agent_id for o in h.offers(actions, "f1")) == ["a1", "a2"]


def test_an_agent_is_offered_to_one_framework_at_a_time(h):
    h.framework("f1")
    h.framework("f2")
    actions = h.agent()
    assert len(h.offers(actions)) == 1
    assert h.offers(h.tick(1.0)) == []
    assert h.core.offers_of(F1) != [] and h.core.offers_of(F2) == []


def test_freed_resources_go_only_to_the_framework_holding_the_agent(h):
    h.framework("f1")
    h.framework("f2")
    [offer] = h.offers(h.agent())
    assert offer.framework_id == F1
    actions = h.launch("f1", offer, h.task("t1", "cpus:1;mem:256"))
    # f1 now holds a task, so DRF gives the remainder to f2.
    [rest] = h.offers(actions)
    assert rest.framework_id == F2 and rest.resources == Resources.parse("cpus:3;mem:768")
    actions = h.status("t1", TaskState.FINISHED)
    [more] = h.offers(actions)
    assert more.framework_id == F2 and more.resources == Resources.parse("cpus:1;mem:256")
    assert h.core.offers_of(F1) == []


def test_decline_returns_resources_without_allocating_and_filter_holds_until_it_expires(h):
    h.framework()
    [offer] = h.offers(h.agent())
    assert h.decline("f1", [offer], refuse=5.0) == []
    assert h.core.free(A1) == Resources.parse("cpus:4;mem:1024")
    assert h.offers(h.tick(1.0)) == []
    assert h.offers(h.tick(3.9)) == []  # t = 4.9
    [again] = h.offers(h.tick(0.1))  # t = 5.0: the filter ran out
    assert again.framework_id == F1 and again.id != offer.id


def test_decline_without_filter_is_reoffered_at_the_next_cycle(h):
    h.framework()
    [offer] = h.offers(h.agent())
    h.decline("f1", [offer], refuse=0)
    assert len(h.offers(h.tick(0.5))) == 1


def test_filter_is_per_agent(h):
    h.framework()
    h.agent("a1")
    [offer2] = h.offers(h.agent("a2"))
    [offer1] = h.core.offers_of(F1)[:1]
    h.decline("f1", [offer1], refuse=60)
    h.decline("f1", [offer2], refuse=0)
    assert [o.agent_id for o in h.offers(h.tick(1))] == ["a2"]


def test_revive_clears_filters_and_offers_at_once(h):
    h.framework()
    [offer] = h.offers(h.agent())
    h.decline("f1", [offer], refuse=3600)
    assert h.offers(h.tick(10)) == []
    [again] = h.offers(h.do(m.Revive(F1)))
    assert again.agent_id == A1


def test_suppress_stops_offers_until_revive(h):
    h.framework()
    [offer] = h.offers(h.agent())
    assert h.do(m.Suppress(F1)) == []
    h.decline("f1", [offer], refuse=0)
    assert h.offers(h.tick(1)) == []
    h.agent("a2")
    assert h.core.offers_of(F1) == []
    assert len(h.offers(h.do(m.Revive(F1)))) == 2


def test_suppressed_framework_leaves_offers_to_others(h):
    h.framework("f1")
    h.framework("f2")
    h.do(m.Suppress(F1))
    [offer] = h.offers(h.agent())
    assert offer.framework_id == F2


def test_expired_offer_is_rescinded_and_its_resources_go_to_another_framework(h):
    h.framework("f1")
    h.framework("f2")
    [offer] = h.offers(h.agent())
    assert offer.framework_id == F1
    assert h.tick(9.9) == []
    actions = h.tick(0.1)
    assert h.events(actions, m.Rescind, "f1") == [m.Rescind(offer.id)]
    # An expired offer counts as a decline with the default filter: f2 gets the agent.
    [other] = h.offers(actions)
    assert other.framework_id == F2
    with pytest.raises(OfferExpired):
        h.accept("f1", [offer], [h.task("t1")])


def test_disconnect_drops_offers_silently_and_keeps_the_framework(h):
    h.framework("f1")
    h.framework("f2")
    [offer] = h.offers(h.agent())
    actions = h.do(ev.FrameworkDisconnected(F1))
    assert all(a.framework_id != F1 for a in actions if isinstance(a, SendEvent))
    [moved] = h.offers(actions)
    assert moved.framework_id == F2
    assert h.core.framework_known(F1) and h.core.offers_of(F1) == []
    with pytest.raises(NotSubscribed):
        h.accept("f1", [offer], [h.task("t1")])
    assert h.offers(h.tick(1), "f1") == []


def test_accept_leftover_is_offered_again_at_once_despite_the_accept_filter(h):
    """An ACCEPT that launched tasks sets no filter: the acceptor just showed demand (issue #13)."""
    h.framework("f1")
    [offer] = h.offers(h.agent())
    actions = h.accept("f1", [offer], [h.task("t1")], refuse=5)
    [rest] = h.offers(actions, "f1")
    assert rest.resources == Resources.parse("cpus:3;mem:896")
    assert h.core.snapshot()["frameworks"][0]["filters"] == {}


def test_accept_without_tasks_is_a_decline_and_keeps_its_filter(h):
    h.framework("f1")
    [offer] = h.offers(h.agent())
    assert h.accept("f1", [offer], [], refuse=5) == []
    assert h.offers(h.tick(1)) == []
    [again] = h.offers(h.framework("f2"))
    assert again.framework_id == F2 and again.resources == Resources.parse("cpus:4;mem:1024")


def test_accept_leftover_without_filter_is_offered_again(h):
    h.framework("f1")
    [offer] = h.offers(h.agent())
    actions = h.accept("f1", [offer], [h.task("t1", "cpus:1;mem:100")], refuse=0)
    [rest] = h.offers(actions)
    assert rest.resources == Resources.parse("cpus:3;mem:924")


def test_agent_without_cpus_or_mem_left_is_not_offered(h):
    h.framework()
    [offer] = h.offers(h.agent(resources="cpus:1;mem:128;ports:[9000-9001]"))
    actions = h.accept("f1", [offer], [h.task("t1", "cpus:1;mem:128")], refuse=0)
    assert h.offers(actions) == []
    assert h.core.free(A1) == Resources.parse("ports:[9000-9001]")
    assert h.offers(h.tick(1)) == []


def test_new_offers_for_a_framework_come_in_one_event(h):
    h.agent("a1")
    h.agent("a2")
    h.agent("a3")
    actions = h.framework("f1")
    offer_events = h.events(actions, m.Offers)
    assert len(offer_events) == 1 and len(offer_events[0].offers) == 3


@pytest.mark.parametrize("sorter", [DRFSorter, RoundRobinSorter], ids=lambda s: s.__name__)
def test_twenty_declining_frameworks_are_all_offered_within_a_few_cycles(make_harness, sorter):
    """MESOS-6111: frameworks that decline with a filter must not starve the others."""
    h = make_harness(sorter=sorter())
    names = [f"f{i:02d}" for i in range(20)]
    for name in names:
        h.framework(name)
    offered: dict[str, int] = {}
    pending = h.agent("a1") + h.agent("a2")
    for cycle in range(1, 13):
        for offer in h.offers(pending):
            offered.setdefault(offer.framework_id, cycle)
            h.decline(offer.framework_id, [offer], refuse=5)
        if len(offered) == len(names):
            break
        pending = h.tick(1.0)
    assert sorted(offered) == names, f"never offered: {sorted(set(names) - set(offered))}"
    assert max(offered.values()) <= 12


def test_a_decline_filter_holds_only_while_nothing_more_is_free_on_the_agent(h):
    """Filters are on the refused resources (as Mesos' refused-resources filters): a task ending on
    the agent frees more than was declined, and the framework is offered the agent again at once."""
    h.framework()
    [offer] = h.offers(h.agent())
    h.accept("f1", [offer], [h.task("t1", "cpus:3;mem:512")])
    [small] = h.core.offers_of(F1)  # the leftovers, re-offered at once
    h.decline("f1", [small], refuse=3600)  # too small for what f1 runs
    assert h.offers(h.tick(5)) == []
    h.status("t1", TaskState.RUNNING)
    [again] = h.offers(h.status("t1", TaskState.FINISHED))
    assert again.resources == Resources.parse("cpus:4;mem:1024")
