"""What the master's OSCORE contexts cost on disk: made ready at a join, and written when the master stops.

    python bench/oscore_contexts.py [--contexts 2000] [--rounds 3] [--out oscore_contexts]

A master's ``AgentContexts`` (``edgerm.auth.oscore_contexts``) in a temp dir on the state dir's file system
(``TMPDIR``), ``--contexts`` agents joined: each context written, opened and made ready
(``write_ready``, what a join's worker thread does) and installed, then one protected request each
unprotected (so every replay window holds something to persist). Then the master stops:

- **close** (now): ``AgentContexts.close``, every context written by ``CLOSE_THREADS`` threads without an
  fsync, then one ``syncfs``;
- **baseline** (before 2026-12-03, measured in the same run on a second set made the same way): each
  context closed with aiocoap's own ``_destroy`` (write, fsync, rename), one after the other, as
  ``AgentContexts.close`` did.

Reported per context (ms): make ready, close, baseline close, and the ratio baseline / close, for each of
``--rounds`` rounds (the disk's speed drifts) and their median. Results: bench/results/oscore_contexts.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiocoap
from aiocoap.message import Direction

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save
from scale import _AgentOscore

from edgerm.auth.credentials import CredentialStore
from edgerm.auth.oscore_contexts import AgentContexts, close_context
from edgerm.ids import AgentId


def _used_fleet(root: Path, n: int) -> tuple[AgentContexts, float]:
    """``n`` joined agents' contexts, ready and each used once; and the seconds making them ready took."""
    store = CredentialStore()
    contexts = AgentContexts(root)
    made = 0.0
    for i in range(n):
        _, credential = store.join(AgentId(f"bench-{i}"))
        t0 = time.perf_counter()
        material, entry, opened = contexts.write_ready(credential)
        made += time.perf_counter() - t0
        contexts.install(entry, opened)
        assert opened is not None
        # The agent's half in memory (aiocoap's mixins, as bench/scale.py's agents), one request protected.
        agent = _AgentOscore(material)
        inner = aiocoap.Message(code=aiocoap.POST, uri_path=("agent",), payload=b"x")
        outer, _ = agent.protect(inner)
        outer.mtype, outer.mid, outer.token = aiocoap.CON, 1, b"t"
        received = aiocoap.Message.decode(outer.encode())
        received.direction = Direction.INCOMING
        opened.unprotect(received)
    return contexts, made


def _baseline_close(contexts: AgentContexts) -> None:
    """How ``AgentContexts.close`` persisted before: aiocoap's ``_destroy`` (fsynced) per context, in turn."""
    for context in list(contexts._open.values()):
        close_context(context)
    contexts._open.clear()
    contexts.close()  # nothing left open: releases the tree's lock


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--contexts", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="oscore_contexts")
    args = p.parse_args()
    rounds = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="edgerm-bench-oscore-") as tmp:
            now, made = _used_fleet(Path(tmp) / "now", args.contexts)
            before, _ = _used_fleet(Path(tmp) / "before", args.contexts)
            t0 = time.perf_counter()
            now.close()
            closed = time.perf_counter() - t0
            t0 = time.perf_counter()
            _baseline_close(before)
            baseline = time.perf_counter() - t0
        n = args.contexts
        row = {
            "make_ready_ms": round(1000 * made / n, 3),
            "close_ms": round(1000 * closed / n, 3),
            "baseline_close_ms": round(1000 * baseline / n, 3),
            "ratio": round(baseline / closed, 2),
            "close_10000_agents_s": round(10_000 * closed / n, 1),
        }
        print(f"round {r + 1}: {row}", flush=True)
        rounds.append(row)
    median = {k: statistics.median(x[k] for x in rounds) for k in rounds[0]}
    print(f"median: {median}")
    save(args.out, {"benchmark": "oscore_contexts", "params": vars(args), "rounds": rounds, "median": median})


if __name__ == "__main__":
    main()
