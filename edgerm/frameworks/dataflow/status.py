"""Live status of a running DAG as text (the CLI) and JSON (the HTTP API).

:func:`render` joins the framework's view (where each instance runs, moves)
with the stream watch's (rates, drops, losses, latency) into a table::

    == temperature: running 12.4s | sink 10.0 rec/s, 118 records, p50 14 ms | moves 1 (0 switches) | lost 3
    instance     variant  agent     host      state    in/s  out/s  dropped  errors
    read#0       main     1a2b3c4d  sensor-1  RUNNING     -   10.0        0       0
    ...
    moved scale#0: 1a2b3c4d[main] -> 9f8e7d6c[main] (agent 1a2b3c4d lost)

Rules: pure; the caller passes the elapsed time.
"""

from __future__ import annotations

from edgerm.frameworks.dataflow.framework import FrameworkView
from edgerm.frameworks.dataflow.watch import InstanceStats, WatchView

MAX_MOVES_SHOWN = 5


def render(fw: FrameworkView, watch: WatchView | None, elapsed: float) -> str:
    """The status block for one refresh."""
    head = f"== {fw.dag}: {fw.phase.value} {elapsed:.1f}s"
    if watch is not None:
        p50 = "-" if watch.latency_p50 is None else f"{watch.latency_p50 * 1000:.0f} ms"
        head += f" | sink {watch.sink_rate:.1f} rec/s, {watch.sink_records} records, p50 {p50}"
    head += f" | moves {len(fw.moves)} ({fw.switches} switches)"
    if watch is not None:
        dropped = sum(o.dropped for o in watch.operators)
        head += f" | dropped {dropped} | lost in moves {watch.lost_in_moves}"
    lines = [head]
    stats: dict[tuple[str, int], InstanceStats] = {}
    if watch is not None:
        stats = {(s.operator, s.index): s for s in watch.instances}
    rows: list[tuple[str, ...]] = [
        ("instance", "variant", "agent", "host", "state", "in/s", "out/s", "dropped", "errors")
    ]
    for i in fw.instances:
        s = stats.get((i.instance.operator, i.instance.replica))
        fresh = s is not None and s.task == i.task_id
        rows.append(
            (
                str(i.instance),
                i.variant,
                i.agent_id[:8],
                i.hostname[:16],
                i.state,
                f"{s.in_rate:.1f}" if fresh and s is not None else "-",
                f"{s.out_rate:.1f}" if fresh and s is not None else "-",
                str(s.dropped) if fresh and s is not None else "-",
                str(s.errors) if fresh and s is not None else "-",
            )
        )
    for name in fw.pending:
        rows.append((name, "-", "-", "-", "PENDING", "-", "-", "-", "-"))
    if len(rows) > 1:
        lines += _table(rows)
    lines += [f"  {m}" for m in fw.moves[-MAX_MOVES_SHOWN:]]
    lines += [f"  quality: {s}" for s in fw.switches_by_quality[-MAX_MOVES_SHOWN:]]
    lines += [f"  hold: {h}" for h in fw.holds]
    lines += ["  " + line for u in fw.unplaced for line in u.splitlines()]
    if fw.error:
        lines.append(f"error: {fw.error}")
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [v.ljust(w) if c < 5 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths, strict=True))]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def status_json(fw: FrameworkView, watch: WatchView | None, elapsed: float) -> dict[str, object]:
    """The same status as JSON."""
    return {**fw.to_json(), "elapsed": round(elapsed, 3), "stream": None if watch is None else watch.to_json()}
