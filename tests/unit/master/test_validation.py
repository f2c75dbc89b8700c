"""Every call the master cannot honour raises its typed error and changes nothing."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from edgerm import messages as m
from edgerm.errors import (
    Conflict,
    InsufficientResources,
    InvalidTask,
    MalformedMessage,
    NotSubscribed,
    OfferExpired,
    OfferNotYours,
    UnknownAgent,
    UnknownOffer,
    UnknownTask,
    WireError,
)
from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId
from edgerm.master import events as ev
from edgerm.master.validation import executors_of
from edgerm.model import DockerSpec, Offer, TaskState, TaskStatus, WasmSpec

F1, F2, A1, A2 = FrameworkId("f1"), FrameworkId("f2"), AgentId("a1"), AgentId("a2")


@dataclass
class World:
    h: Any
    o1: Offer  # f1's offer on a1 (wasm only, ports 8000-8001)
    o2: Offer  # f2's offer on a2 (wasm and docker)


@pytest.fixture
def world(h) -> World:
    h.framework("f1")
    h.framework("f2")
    h.framework("f3")
    h.do(ev.FrameworkDisconnected(FrameworkId("f3")))
    [first] = h.offers(h.agent("a1", "cpus:4;mem:1024;ports:[8000-8001]", executors=("wasm",)))
    h.agent("a2", "cpus:4;mem:1024")
    h.accept("f1", [first], [h.task("t0", "cpus:1;mem:128")], refuse=0)
    h.status("t0", TaskState.RUNNING)
    [o1] = h.core.offers_of(F1)
    [o2] = h.core.offers_of(F2)
    assert o1.agent_id == A1 and o2.agent_id == A2
    return World(h, o1, o2)


def accept(fid: str, offers: list[Offer | str], *tasks: Any) -> m.Accept:
    ids = tuple(OfferId(o if isinstance(o, str) else o.id) for o in offers)
    return m.Accept(FrameworkId(fid), ids, tuple(tasks))


CASES: list[tuple[str, Callable[[World], Any], type[WireError]]] = [
    ("accept from unknown framework", lambda w: accept("fx", [w.o1], w.h.task("t1")), NotSubscribed),
    ("accept from disconnected framework", lambda w: accept("f3", [w.o1], w.h.task("t1")), NotSubscribed),
    ("accept naming no offer", lambda w: accept("f1", [], w.h.task("t1")), MalformedMessage),
    ("accept unknown offer", lambda w: accept("f1", ["m-O999"], w.h.task("t1")), UnknownOffer),
    ("accept someone else's offer", lambda w: accept("f1", [w.o2], w.h.task("t1")), OfferNotYours),
    ("accept mixed ownership", lambda w: accept("f1", [w.o1, w.o2], w.h.task("t1")), OfferNotYours),
    (
        "task names another agent",
        lambda w: accept("f1", [w.o1], w.h.task("t1", agent_id="a2")),
        InvalidTask,
    ),
    ("task without cpus or mem", lambda w: accept("f1", [w.o1], w.h.task("t1", "disk:10")), InvalidTask),
    ("executor absent on the agent", lambda w: accept("f1", [w.o1], w.h.docker_task("t1")), InvalidTask),
    (
        "wasm without module or hash",
        lambda w: accept("f1", [w.o1], w.h.task("t1", container=WasmSpec())),
        InvalidTask,
    ),
    (
        "docker without image",
        lambda w: accept("f2", [w.o2], w.h.task("t1", container=DockerSpec(image=""))),
        InvalidTask,
    ),
    ("negative kill grace", lambda w: accept("f1", [w.o1], w.h.task("t1", kill_grace=-1.0)), InvalidTask),
    ("empty task id", lambda w: accept("f1", [w.o1], w.h.task("")), InvalidTask),
    ("task id twice in a call", lambda w: accept("f1", [w.o1], w.h.task("t1"), w.h.task("t1")), Conflict),
    ("task id already used", lambda w: accept("f1", [w.o1], w.h.task("t0")), Conflict),
    ("task id used by another framework", lambda w: accept("f2", [w.o2], w.h.task("t0")), Conflict),
    ("too many cpus", lambda w: accept("f1", [w.o1], w.h.task("t1", "cpus:3.5;mem:10")), InsufficientResources),
    (
        "together too much mem",
        lambda w: accept("f1", [w.o1], w.h.task("t1", "cpus:1;mem:500"), w.h.task("t2", "cpus:1;mem:500")),
        InsufficientResources,
    ),
    (
        "two tasks, one port",
        lambda w: accept(
            "f1", [w.o1], w.h.task("t1", "cpus:1;ports:[8000-8000]"), w.h.task("t2", "cpus:1;ports:[8000-8000]")
        ),
        InsufficientResources,
    ),
    (
        "port not offered",
        lambda w: accept("f1", [w.o1], w.h.task("t1", "cpus:1;ports:[9000-9000]")),
        InsufficientResources,
    ),
    ("decline from unknown framework", lambda w: m.Decline(FrameworkId("fx"), (w.o1.id,)), NotSubscribed),
    ("decline unknown offer", lambda w: m.Decline(F1, (OfferId("nope"),)), UnknownOffer),
    ("decline someone else's offer", lambda w: m.Decline(F1, (w.o2.id,)), OfferNotYours),
    ("decline good and bad offer", lambda w: m.Decline(F1, (w.o1.id, OfferId("nope"))), UnknownOffer),
    ("kill unknown task", lambda w: m.Kill(F1, TaskId("zz")), UnknownTask),
    ("kill another framework's task", lambda w: m.Kill(F2, TaskId("t0")), UnknownTask),
    ("kill from unknown framework", lambda w: m.Kill(FrameworkId("fx"), TaskId("t0")), NotSubscribed),
    ("revive from unknown framework", lambda w: m.Revive(FrameworkId("fx")), NotSubscribed),
    ("suppress from disconnected framework", lambda w: m.Suppress(FrameworkId("f3")), NotSubscribed),
    (
        "acknowledge from unknown framework",
        lambda w: m.Acknowledge(FrameworkId("fx"), A1, TaskId("t0"), "u"),
        NotSubscribed,
    ),
    ("reconcile from unknown framework", lambda w: m.Reconcile(FrameworkId("fx")), NotSubscribed),
    ("teardown of unknown framework", lambda w: m.Teardown(FrameworkId("fx")), NotSubscribed),
    ("heartbeat from unknown agent", lambda w: ev.HeartbeatReceived(AgentId("ax"), (TaskId("t0"),)), UnknownAgent),
    (
        "status from unknown agent",
        lambda w: ev.StatusReceived(AgentId("ax"), TaskStatus(TaskId("t0"), AgentId("ax"), TaskState.FAILED)),
        UnknownAgent,
    ),
]


@pytest.mark.parametrize(("call", "error"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_refused_call_raises_its_error_and_changes_nothing(world, call, error):
    h = world.h
    before = copy.deepcopy(h.core.snapshot())
    with pytest.raises(error) as caught:
        h.do(call(world))
    assert caught.value.message
    assert h.core.snapshot() == before
    # The offers are still good afterwards.
    actions = h.accept("f1", [world.o1], [h.task("t9")])
    assert [a.task.task_id for a in h.launches(actions)] == ["t9"]


def test_insufficient_resources_names_the_resource(world):
    with pytest.raises(InsufficientResources, match="mem"):
        world.h.do(accept("f1", [world.o1], world.h.task("t1", "cpus:1;mem:5000")))


def test_offer_past_its_time_is_expired_even_before_the_tick_sweeps_it(world):
    h = world.h
    h.advance(10.0)
    before = copy.deepcopy(h.core.snapshot())
    with pytest.raises(OfferExpired):
        h.do(accept("f1", [world.o1], h.task("t1")))
    with pytest.raises(OfferExpired):
        h.do(m.Decline(F1, (world.o1.id,)))
    assert h.core.snapshot() == before


def test_expired_offer_is_told_apart_from_an_unknown_one_after_the_sweep(world):
    h = world.h
    h.tick(10.0)
    with pytest.raises(OfferExpired):
        h.do(accept("f1", [world.o1], h.task("t1")))
    with pytest.raises(UnknownOffer):
        h.do(accept("f1", ["m-O12345"], h.task("t1")))


def test_used_or_declined_offer_is_unknown(world):
    h = world.h
    h.decline("f2", [world.o2])
    with pytest.raises(UnknownOffer):
        h.decline("f2", [world.o2])
    h.accept("f1", [world.o1], [h.task("t1")])
    with pytest.raises(UnknownOffer):
        h.accept("f1", [world.o1], [h.task("t2")])


def test_accepting_offers_on_two_agents_is_invalid(h):
    h.framework("f1")
    h.agent("a1")
    h.agent("a2")
    offers = h.core.offers_of(F1)
    assert len(offers) == 2
    with pytest.raises(InvalidTask, match="several agents"):
        h.accept("f1", offers, [h.task("t1")])


def test_accept_fills_in_agent_and_framework_and_stages_the_task(world):
    h = world.h
    actions = h.accept("f1", [world.o1], [h.task("t1", "cpus:1;mem:64;ports:[8001-8001]")])
    [launch] = h.launches(actions)
    assert launch.agent_id == A1
    assert launch.task.agent_id == A1 and launch.task.framework_id == F1
    record = h.core.task(TaskId("t1"))
    assert record is not None and record.state is TaskState.STAGING
    assert record.framework_id == F1 and record.agent_id == A1
    # 4 - t0 - t1 = 2 cpus left, re-offered at once (no accept filter): f1 holds 2 of 8 cpus, f2 4 (its
    # offer on a2), so DRF gives them to f1.
    [rest] = [o for o in h.offers(actions) if o.agent_id == A1]
    assert rest.framework_id == F1 and rest.resources.cpus == 2.0


def test_executors_attribute_as_text_or_set():
    assert executors_of({"executors": "wasm, docker"}) == frozenset({"wasm", "docker"})
    assert executors_of({"executors": frozenset({"wasm"})}) == frozenset({"wasm"})
    assert executors_of({}) == frozenset()
