"""Benchmark: compile time of ``compile_dag`` for 10/100/1,000 operators onto 100/1,000/10,000 agents.

Run from the repository root::

    python bench/compile_dag.py            # full grid, 3 policies (about a minute)
    python bench/compile_dag.py --quick    # 10/100 operators, 100/1,000 agents

Prints a table and writes ``bench/results/compile_dag.json``. Each cell is
the best of a few runs of ``compile_dag`` alone (the snapshot is built once
beforehand and timed separately). Figures are also given as ratios against
baselines measured in the same run:

- ``x ops``: time / time with 10x fewer operators, same agents (linear: 10);
- ``x agents``: time / time with 10x fewer agents, same operators;
- ``us/inst/cand``: microseconds per instance per candidate-limit slot, the
  unit the design promises to keep flat;
- an *exhaustive* stack (candidate limit = every agent) on the mid sizes,
  to show what the limit saves.

Workload: pipelines of five operators (a source reading a ``temperature``
device, three operators, a sink); operators ask for docker on Linux with a
WebAssembly fallback. Agents: 20 per domain, half own a sensor, a fifth run
only wasm, a tenth are not Linux. Deterministic (fixed seed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import time
from typing import Any

from edgerm.ids import AgentId
from edgerm.resources import Device, Resources
from edgerm.scheduler import (
    DEFAULT_CHECKS,
    POLICIES,
    CandidateLimit,
    Constraint,
    Dag,
    DockerExecutor,
    Edge,
    Operator,
    OperatorKind,
    Policy,
    Snapshot,
    Variant,
    WasmExecutor,
    compile_dag,
)
from edgerm.scheduler.snapshot import AgentView

OPS = (10, 100, 1000)
AGENTS = (100, 1000, 10000)
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "compile_dag.json")


def make_dag(n_ops: int) -> Dag:
    linux = Constraint.parse("os == linux")
    ops: list[Operator] = []
    edges: list[Edge] = []
    for i in range(n_ops):
        stage = i % 5
        name = f"op{i}"
        if stage == 0:
            main = Variant(
                "main", WasmExecutor(module="read.wasm"), Resources.parse("cpus:0.1;mem:32"), devices=("temperature",)
            )
            ops.append(Operator(name, OperatorKind.SOURCE, (main,)))
        else:
            kind = OperatorKind.SINK if stage == 4 or i == n_ops - 1 else OperatorKind.OPERATOR
            main = Variant(
                "main",
                DockerExecutor(f"edgerm/stage{stage}:1"),
                Resources.parse("cpus:0.25;mem:256"),
                constraints=(linux,),
            )
            lite = Variant("lite", WasmExecutor(module=f"stage{stage}.wasm"), Resources.parse("cpus:0.1;mem:64"))
            ops.append(Operator(name, kind, (main, lite), replicas=1 + (i % 7 == 3)))
            edges.append(Edge(f"op{i - 1}", name))
    return Dag(f"bench{n_ops}", tuple(ops), tuple(edges))


def make_snapshot(n_agents: int, rng: random.Random) -> Snapshot:
    views = []
    for i in range(n_agents):
        attrs: dict[str, str | frozenset[str]] = {
            "domain": f"d{i // 20}",
            "os": "linux" if rng.random() > 0.1 else "none",
            "arch": rng.choice(("arm64", "amd64")),
            "executors": frozenset({"wasm"}) if rng.random() < 0.2 else frozenset({"wasm", "docker"}),
        }
        res = Resources.parse(f"cpus:{rng.choice((1, 2, 4, 8))};mem:{rng.choice((512, 1024, 4096, 8192))}")
        if rng.random() < 0.5:
            res = res + Resources(devices={"temperature": Device(f"i2c-{i}")})
        views.append(AgentView(AgentId(f"agent-{i:05d}"), f"host-{i:05d}", attrs, res))
    return Snapshot(tuple(views))


def best_of(runs: int, fn: Any) -> tuple[float, Any]:
    best, out = math.inf, None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes only")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    ops_sizes = OPS[:2] if args.quick else OPS
    agent_sizes = AGENTS[:2] if args.quick else AGENTS
    rng = random.Random(7)
    dags = {n: make_dag(n) for n in ops_sizes}
    snaps: dict[int, Snapshot] = {}
    snap_times: dict[int, float] = {}
    for m in agent_sizes:
        t, snaps[m] = best_of(1, lambda m=m: make_snapshot(m, rng))
        t, _ = best_of(3, lambda m=m: Snapshot(snaps[m].agents))
        snap_times[m] = t

    rows: list[dict[str, Any]] = []
    policies = [POLICIES[name] for name in ("packed", "spread", "locality")]
    for policy in policies:
        for n in ops_sizes:
            for m in agent_sizes:
                runs = 5 if n * m <= 100_000 else (3 if n * m <= 1_000_000 else 2)
                secs, plan = best_of(runs, lambda n=n, m=m, p=policy: compile_dag(dags[n], snaps[m], p))
                instances = len(dags[n].instances())
                limit = policy.limit.size(m)
                rows.append(
                    {
                        "policy": policy.name,
                        "operators": n,
                        "instances": instances,
                        "agents": m,
                        "candidate_limit": limit,
                        "seconds": round(secs, 6),
                        "placed": len(plan.placements),
                        "unplaced": len(plan.unplaced),
                        "fallbacks": sum(1 for p in plan.placements if p.variant != "main"),
                        "cross_domain_pairs": plan.cross_domain_pairs((e.source, e.target) for e in dags[n].edges),
                        "us_per_instance_per_candidate": round(secs * 1e6 / (instances * limit), 2),
                    }
                )
    index = {(r["policy"], r["operators"], r["agents"]): r for r in rows}
    for r in rows:
        fewer_ops = index.get((r["policy"], r["operators"] // 10, r["agents"]))
        fewer_agents = index.get((r["policy"], r["operators"], r["agents"] // 10))
        r["x_ops"] = round(r["seconds"] / fewer_ops["seconds"], 2) if fewer_ops else None
        r["x_agents"] = round(r["seconds"] / fewer_agents["seconds"], 2) if fewer_agents else None

    exhaustive = []
    for base in (POLICIES["packed"], POLICIES["locality"]):
        for n, m in ((100, 1000), (10, 10000)):
            if n not in dags or m not in snaps:
                continue
            full = Policy(f"{base.name}-exhaustive", DEFAULT_CHECKS, base.rankers, CandidateLimit(count=m))
            secs, plan = best_of(1, lambda n=n, m=m, p=full: compile_dag(dags[n], snaps[m], p))
            limited = index[(base.name, n, m)]
            exhaustive.append(
                {
                    "policy": full.name,
                    "operators": n,
                    "agents": m,
                    "seconds": round(secs, 6),
                    "limited_seconds": limited["seconds"],
                    "speedup_from_limit": round(secs / limited["seconds"], 1),
                    "cross_domain_pairs": plan.cross_domain_pairs((e.source, e.target) for e in dags[n].edges),
                    "limited_cross_domain_pairs": limited["cross_domain_pairs"],
                }
            )

    print(f"compile_dag on {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cpus")
    print("snapshot build (s): " + ", ".join(f"{m} agents {t:.4f}" for m, t in snap_times.items()))
    head = (
        f"{'policy':<9}{'ops':>6}{'inst':>6}{'agents':>8}{'limit':>6}{'seconds':>10}{'x ops':>7}"
        f"{'x agents':>9}{'us/inst/cand':>13}{'placed':>8}{'unplaced':>9}{'fallback':>9}{'x-domain':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['policy']:<9}{r['operators']:>6}{r['instances']:>6}{r['agents']:>8}{r['candidate_limit']:>6}"
            f"{r['seconds']:>10.4f}{_ratio(r['x_ops']):>7}{_ratio(r['x_agents']):>9}"
            f"{r['us_per_instance_per_candidate']:>13.1f}{r['placed']:>8}{r['unplaced']:>9}{r['fallbacks']:>9}"
            f"{r['cross_domain_pairs']:>9}"
        )
    if exhaustive:
        print("\nwithout the candidate limit (every agent examined):")
        for e in exhaustive:
            print(
                f"  {e['policy']:<20}{e['operators']:>5} ops {e['agents']:>6} agents: {e['seconds']:.3f}s "
                f"(limited {e['limited_seconds']:.3f}s, {e['speedup_from_limit']}x faster; cross-domain pairs "
                f"{e['cross_domain_pairs']} vs {e['limited_cross_domain_pairs']})"
            )
    target = index.get(("locality", 1000, 10000))
    if target:
        worst = max(index[(p.name, 1000, 10000)]["seconds"] for p in policies)
        print(f"\ntarget 1,000 operators onto 10,000 agents <= 1 s: worst policy {worst:.3f}s")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(
            {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "snapshot_build_seconds": snap_times,
                "rows": rows,
                "exhaustive": exhaustive,
            },
            f,
            indent=2,
        )
    print(f"saved {args.out}")
    return 0


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


if __name__ == "__main__":
    sys.exit(main())
