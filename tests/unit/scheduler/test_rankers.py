"""Ranking stages through the harness: each stage alone, then the shipped stacks."""

from __future__ import annotations

from collections import Counter

from edgerm.scheduler import (
    DEFAULT_CHECKS,
    LOCALITY,
    PACKED,
    SPREAD,
    BinPack,
    CandidateLimit,
    LeastLoaded,
    Locality,
    Policy,
    Ranker,
    SchedulerHarness,
    Spread,
)


def only(*rankers: Ranker, limit: int = 0) -> Policy:
    return Policy("test", DEFAULT_CHECKS, tuple((r, 1.0) for r in rankers), CandidateLimit(count=limit))


def ops(n: int, resources: str = "{cpus: 1, mem: 64}", replicas: int = 1) -> str:
    lines = ["operators:"]
    lines.append(f"  s: {{kind: source, wasm: s.wasm, resources: {resources}, replicas: {replicas}}}")
    for i in range(1, n):
        lines.append(f"  o{i}: {{kind: operator, wasm: o.wasm, resources: {resources}}}")
    lines.append("edges:")
    prev = "s"
    for i in range(1, n):
        lines.append(f"  - {prev} -> o{i}")
        prev = f"o{i}"
    return "\n".join(lines) + "\n"


def test_binpack_fills_the_fuller_agent() -> None:
    h = SchedulerHarness("big cpus:8;mem:4096", "small cpus:2;mem:256")
    plan = h.compile(ops(1), only(BinPack()))
    assert plan.placements[0].agent_id == "small"  # fills it up to half; big would stay near empty


def test_binpack_keeps_using_open_bins() -> None:
    agents = [f"a{i:02d} cpus:4;mem:1024" for i in range(30)]
    plan = SchedulerHarness(*agents).compile(ops(1, replicas=12), only(BinPack(), limit=3))
    assert sorted(Counter(p.agent_id for p in plan.placements).values()) == [4, 4, 4]


def test_least_loaded_picks_the_emptiest_agent() -> None:
    h = SchedulerHarness("big cpus:8;mem:4096", "small cpus:2;mem:256")
    plan = h.compile(ops(1, replicas=3), only(LeastLoaded()))
    assert [p.agent_id for p in plan.placements] == ["big", "big", "big"]


def test_spread_evens_replicas_over_domains() -> None:
    agents = [f"x{i} cpus:8;mem:4096 domain=x" for i in range(4)] + ["y0 cpus:8;mem:4096 domain=y"]
    agents += ["z0 cpus:8;mem:4096 domain=z"]
    plan = SchedulerHarness(*agents).compile(ops(1, replicas=6), only(Spread("domain"), limit=6))
    domains = Counter(str(p.attributes["domain"]) for p in plan.placements)
    assert domains == {"x": 2, "y": 2, "z": 2}


def test_spread_over_agents() -> None:
    agents = [f"a{i} cpus:8;mem:4096" for i in range(3)]
    plan = SchedulerHarness(*agents).compile(ops(1, replicas=6), only(Spread("@id"), limit=3))
    assert sorted(Counter(p.agent_id for p in plan.placements).values()) == [2, 2, 2]


def test_locality_follows_the_upstream_agent_then_its_domain() -> None:
    agents = [
        "edge1 cpus:2;mem:256 domain=edge devices=temperature",
        "edge2 cpus:4;mem:1024 domain=edge",
        "cloud1 cpus:64;mem:65536 domain=cloud",
        "cloud2 cpus:64;mem:65536 domain=cloud",
    ]
    dag = """
operators:
  read: {kind: source, wasm: r.wasm, resources: {cpus: 1, mem: 64}, devices: [temperature]}
  clean: {kind: operator, wasm: c.wasm, resources: {cpus: 1, mem: 64}}
  model: {kind: operator, docker: m:1, resources: {cpus: 2, mem: 512}}
  store: {kind: sink, docker: s:1, resources: {cpus: 1, mem: 128}}
edges: [read -> clean -> model -> store]
"""
    h = SchedulerHarness(*agents)
    plan = h.compile(dag, only(Locality("domain"), limit=2))
    assert [h.agent_of(n) for n in ("read", "clean", "model", "store")] == ["edge1", "edge1", "edge2", "edge2"]
    assert plan.cross_domain_pairs([("read", "clean"), ("clean", "model"), ("model", "store")]) == 0


def test_locality_beats_the_candidate_limit_on_a_big_cluster() -> None:
    agents = [f"c{i:04d} cpus:8;mem:8192 domain=d{i // 10}" for i in range(1000)]
    agents.append("sensor cpus:1;mem:128 domain=d57 devices=temperature")
    dag = """
operators:
  read: {kind: source, wasm: r.wasm, resources: {cpus: 0.5, mem: 64}, devices: [temperature]}
  clean: {kind: operator, wasm: c.wasm, resources: {cpus: 1, mem: 512}}
edges: [read -> clean]
"""
    h = SchedulerHarness(*agents)
    h.compile(dag, LOCALITY)
    assert h.agent_of("read") == "sensor"  # the device's owner, without a scan
    clean = h.placement("clean")
    assert clean is not None and clean.attributes["domain"] == "d57"  # does not fit on the sensor; same domain


def test_shipped_stacks_differ_by_stages_not_flags() -> None:
    assert [type(r).__name__ for r, _ in PACKED.rankers] == ["BinPack", "Locality"]
    assert [type(r).__name__ for r, _ in SPREAD.rankers] == ["Spread", "LeastLoaded"]
    assert [type(r).__name__ for r, _ in LOCALITY.rankers] == ["Locality", "BinPack"]
    agents = [f"{d}{i} cpus:4;mem:1024 domain={d}" for d in "xyz" for i in range(2)]
    packed = SchedulerHarness(*agents).compile(ops(1, replicas=3), PACKED)
    spread = SchedulerHarness(*agents).compile(ops(1, replicas=3), SPREAD)
    assert len({p.agent_id for p in packed.placements}) == 1
    assert len({p.attributes["domain"] for p in spread.placements}) == 3


def test_candidate_limit_sizes() -> None:
    assert CandidateLimit().size(1) == 2
    assert CandidateLimit().size(1000) == 10
    assert CandidateLimit().size(10000) == 14
    assert CandidateLimit(count=5).size(10000) == 5
    assert CandidateLimit(minimum=8).size(16) == 8
