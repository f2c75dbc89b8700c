"""Fair under abuse (issue #13): 100 frameworks on 1,000 agents, on the pure core.

25 mute frameworks never answer an offer, 25 greedy ones accept everything
(each task holds a whole offer for two rounds), 25 decline everything with a
5 s filter and 25 polite ones keep 4 small tasks running (launching what they
need, declining the rest with a 1 s filter). They subscribe in the worst order
for the polite ones: mute, greedy, declining, polite, after the agents. The
well-behaved frameworks (declining and polite) must get offers within a few
allocation rounds, and keep being served.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from edgerm import messages as m
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master import events as ev
from edgerm.master.actions import MasterAction, SendEvent
from edgerm.master.state import MasterConfig, MasterCore
from edgerm.model import AgentInfo, Filters, FrameworkInfo, Offer, TaskInfo, TaskState, TaskStatus, WasmSpec
from edgerm.resources import Resources

ROUND = 0.25  # the service's allocation interval
ROUNDS = 24
TIMEOUT = 4.0  # offer timeout: the mute frameworks' offers come back within the run
LIMIT = 20  # outstanding offers per framework: 25 mute frameworks hold at most half the cluster
SMALL = Resources.parse("cpus:1;mem:256")
MODULE = WasmSpec(module_sha256="ab" * 32)


@dataclass
class Sim:
    core: MasterCore
    now: float = 0.0
    round: int = 0
    tasks: int = 0
    ends: dict[int, list[tuple[TaskId, AgentId]]] = field(default_factory=lambda: defaultdict(list))
    live: dict[FrameworkId, int] = field(default_factory=lambda: defaultdict(int))
    first_offer: dict[FrameworkId, int] = field(default_factory=dict)
    offers_seen: dict[FrameworkId, int] = field(default_factory=lambda: defaultdict(int))
    launched: dict[FrameworkId, int] = field(default_factory=lambda: defaultdict(int))
    most_held: dict[FrameworkId, int] = field(default_factory=lambda: defaultdict(int))
    inbox: list[tuple[FrameworkId, Offer]] = field(default_factory=list)
    acks: list[m.Acknowledge] = field(default_factory=list)

    def do(self, event: object) -> None:
        self.take(self.core.handle(event, self.now))  # type: ignore[arg-type]

    def take(self, actions: list[MasterAction]) -> None:
        for a in actions:
            if isinstance(a, SendEvent) and isinstance(a.event, m.Update) and a.event.status.uuid:
                s = a.event.status  # every framework's driver acknowledges its updates
                self.acks.append(m.Acknowledge(a.framework_id, s.agent_id, s.task_id, s.uuid))
            if isinstance(a, SendEvent) and isinstance(a.event, m.Offers):
                fid = a.framework_id
                self.first_offer.setdefault(fid, self.round)
                self.offers_seen[fid] += len(a.event.offers)
                self.inbox += [(fid, o) for o in a.event.offers]
                self.most_held[fid] = max(self.most_held[fid], len(self.core.offers_of(fid)))

    def task(self, fid: FrameworkId, resources: Resources, rounds: int, agent: AgentId) -> TaskInfo:
        self.tasks += 1
        task_id = TaskId(f"{fid}-t{self.tasks}")
        self.ends[self.round + rounds].append((task_id, agent))
        self.live[fid] += 1
        self.launched[fid] += 1
        return TaskInfo(task_id, str(task_id), AgentId(""), resources, MODULE)

    def answer(self, fid: FrameworkId, offer: Offer) -> None:
        kind = fid[0]
        if kind == "m":
            return  # mute: sits on it
        if kind == "g":
            self.do(m.Accept(fid, (offer.id,), (self.task(fid, offer.resources, 2, offer.agent_id),), Filters(5)))
        elif kind == "d":
            self.do(m.Decline(fid, (offer.id,), Filters(5)))
        else:  # polite: keeps 4 small tasks running, 3 rounds each
            tasks: list[TaskInfo] = []
            free = offer.resources
            while self.live[fid] < 4 and free >= SMALL:
                tasks.append(self.task(fid, SMALL, 3, offer.agent_id))
                free = free - SMALL
            if tasks:
                self.do(m.Accept(fid, (offer.id,), tuple(tasks), Filters(5)))
            else:
                self.do(m.Decline(fid, (offer.id,), Filters(1)))

    def settle(self) -> None:
        """Frameworks acknowledge their updates and answer what they were offered (answers may bring more)."""
        acks, self.acks = self.acks, []
        for ack in acks:
            self.do(ack)
        while self.inbox:
            batch, self.inbox = self.inbox, []
            for fid, offer in batch:
                if any(o.id == offer.id for o in self.core.offers_of(fid)):  # else rescinded meanwhile
                    self.answer(fid, offer)

    def next_round(self) -> None:
        self.round += 1
        self.now += ROUND
        for task_id, agent_id in self.ends.pop(self.round, []):
            fid = FrameworkId(task_id.split("-t")[0])
            self.live[fid] -= 1
            status = TaskStatus(task_id, agent_id, TaskState.FINISHED, uuid=f"u-{task_id}")
            self.do(ev.StatusReceived(agent_id, status))
        self.do(ev.Tick())
        self.settle()


def jain(values: list[float]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values)) if any(values) else 0.0


@pytest.mark.timeout(120)  # about 5 s on a quiet machine
def test_well_behaved_frameworks_are_served_within_a_few_rounds_among_mute_and_greedy_ones():
    sim = Sim(MasterCore(MasterConfig(master_id="m", max_outstanding_offers=LIMIT, offer_timeout=TIMEOUT)))
    for i in range(1000):
        resources = Resources.parse("cpus:4;mem:4096")
        info = AgentInfo(AgentId(f"a{i:04d}"), f"a{i}", resources, {"executors": frozenset({"wasm"})}, 3600.0)
        sim.do(ev.AgentRegistered(info))
    groups = {kind: [FrameworkId(f"{kind}{i:02d}") for i in range(25)] for kind in "mgdp"}
    for kind in "mgdp":
        for fid in groups[kind]:
            sim.do(ev.FrameworkSubscribed(FrameworkInfo(fid, fid)))
    sim.settle()
    polite_served: dict[FrameworkId, list[int]] = defaultdict(list)
    for _ in range(ROUNDS):
        before = dict(sim.launched)
        sim.next_round()
        for fid in groups["p"]:
            if sim.launched[fid] > before.get(fid, 0):
                polite_served[fid].append(sim.round)
    well_behaved = groups["d"] + groups["p"]
    assert sorted(sim.first_offer) == sorted(f for g in groups.values() for f in g), "someone was never offered"
    late = {f: sim.first_offer[f] for f in well_behaved if sim.first_offer[f] > 3}
    assert not late, f"well-behaved frameworks first offered after round 3: {late}"
    assert max(sim.most_held.values()) <= LIMIT
    # The polite ones keep being served: a launch at least every 4 rounds (their tasks last 3), and evenly.
    for fid in groups["p"]:
        rounds = [0, *polite_served[fid], ROUNDS]
        assert max(b - a for a, b in itertools.pairwise(rounds)) <= 6, (fid, polite_served[fid])
    assert jain([float(sim.launched[f]) for f in groups["p"]]) > 0.95
    # Greedy ones get a lot but not everything; the mute ones were rescinded at the timeout and offered again.
    assert all(sim.launched[f] > 0 for f in groups["g"])
    assert all(sim.offers_seen[f] > LIMIT for f in groups["m"])
