"""StreamWatch: rates from cumulative stats, totals across moved tasks, gaps, loss attribution."""

from __future__ import annotations

import json

from edgerm.frameworks.dataflow.watch import StreamWatch
from edgerm.scheduler import Instance
from tests.unit.dataflow.helpers import PIPELINE, dag


def stats(task: str, t: float, received: int, emitted: int, dropped: int = 0, errors: int = 0) -> bytes:
    body = {"agent": "a1", "task": task, "in": received, "out": emitted, "dropped": dropped}
    return json.dumps({**body, "batches": received, "errors": errors, "t": t}).encode()


def batch(src: str, *seqs: int, t0: float = 100.0) -> bytes:
    return "".join(f"{src} {s} {t0 + s * 0.1:.3f} {20 + s}\n" for s in seqs).encode()


def test_rates_come_from_consecutive_reports_and_totals_survive_a_move() -> None:
    w = StreamWatch(dag())
    w.stats("scale", 0, stats("t1", 10.0, 100, 100, dropped=3))
    w.stats("scale", 0, stats("t1", 12.0, 140, 130, dropped=5, errors=1))
    (scale,) = [o for o in w.view(0).operators if o.operator == "scale"]
    assert (scale.in_rate, scale.out_rate, scale.dropped, scale.errors) == (20.0, 15.0, 5, 1)
    w.stats("scale", 0, stats("t2", 20.0, 10, 10, dropped=1))  # the moved instance starts from zero
    (scale,) = [o for o in w.view(0).operators if o.operator == "scale"]
    assert scale.dropped == 6 and scale.errors == 1 and scale.instances == 1
    assert w.stats("scale", 0, b"not json") is None and w.view(0).malformed == 1


def test_sink_records_rate_and_latency() -> None:
    w = StreamWatch(dag())
    w.batch("store", batch("read.0", 0, 1, 2, 3, 4), now=100.5)
    v = w.view(101.0)
    assert v.sink_records == 5 and v.sink_rate == 1.0  # 5 records over the 5 s window
    assert v.latency_p50 is not None and abs(v.latency_p50 - 0.3) < 1e-6
    assert w.view(200.0).sink_rate == 0.0


def test_gaps_inside_a_move_window_are_lost_others_are_skipped() -> None:
    w = StreamWatch(dag())
    w.batch("store", batch("read.0", 0, 1, 2), now=0)
    w.batch("store", batch("read.0", 5, 6), now=0)  # 3, 4 missing: no move around -> skipped
    assert (w.view(0).lost_in_moves, w.view(0).skipped) == (0, 2)
    w.move_started(Instance("scale"), now=100.75)
    w.move_ended(Instance("scale"), now=101.0)  # window [100.75, 103.0]
    w.batch("store", batch("read.0", 7, 20, 21), now=0)  # 8..19 missing around t=100.7..102.0
    v = w.view(0)
    assert (v.lost_in_moves, v.skipped) == (12, 2)
    assert [(g.missing, g.in_move) for g in v.gaps] == [(2, False), (12, True)]


def test_a_move_window_opens_at_the_last_report_of_the_instance() -> None:
    w = StreamWatch(dag())
    w.stats("scale", 0, stats("t1", 100.2, 1, 1))
    w.move_started(Instance("scale"), now=105.0)  # noticed late: the instance was last heard of at 100.2
    w.batch("store", batch("read.0", 0, 1, 2, 10), now=0)  # missing 3..9 (t 100.2..100.9)
    assert w.view(0).lost_in_moves == 7


def test_each_source_is_counted_once_on_its_most_downstream_topic() -> None:
    w = StreamWatch(dag())
    w.move_started(Instance("scale"), now=0.0)
    w.batch("read", batch("read.0", 0, 1, 2, 3, 4, 5), now=0)
    w.batch("scale", batch("read.0", 0, 1, 4, 5), now=0)
    w.batch("store", batch("read.0", 0, 1, 4, 5), now=0)
    assert w.view(0).lost_in_moves == 2  # not 4: scale's gap is the same loss as store's


def test_duplicates_and_restarts_are_told_apart() -> None:
    w = StreamWatch(dag())
    w.batch("store", batch("read.0", 0, 1, 2), now=0)
    w.batch("store", batch("read.0", 2), now=0)  # the same record again
    w.batch("store", batch("read.0", 0, t0=200.0), now=0)  # a new source instance: seq restarts, newer t
    w.batch("store", batch("read.0", 1, t0=200.0), now=0)
    v = w.view(0)
    assert (v.duplicates, v.restarts, v.skipped, v.lost_in_moves) == (1, 1, 0, 0)
    w.batch("store", b"garbage line\n", now=0)
    assert w.view(0).malformed == 1


def test_a_sink_that_publishes_nothing_is_counted_from_its_stats() -> None:
    store = "    resources: {cpus: 0.1, mem: 32}\n    constraints: [domain == cloud]"
    assert PIPELINE.count(store) == 1
    w = StreamWatch(dag(PIPELINE.replace(store, store + '\n    env: {EDGERM_DF_SINK: "file:/tmp/out"}')))
    w.stats("store", 0, stats("t1", 10.0, 40, 40))
    w.stats("store", 0, stats("t1", 12.0, 60, 60))
    v = w.view(12.0)
    assert (v.sink_records, v.sink_rate, w.sink_total, v.latency_p50) == (60, 10.0, 60, None)
    w.stats("store", 0, stats("t2", 20.0, 5, 5))  # a moved sink's counter starts again; both tasks count
    assert w.sink_total == 65
    console = StreamWatch(dag())  # a console sink is counted on its topic, not from its stats
    console.stats("store", 0, stats("t1", 10.0, 40, 40))
    console.batch("store", batch("read.0", 0, 1), now=21.0)
    assert console.sink_total == 2
