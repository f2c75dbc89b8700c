"""``edgerm-dataflow serve``'s ``GET /metrics``: each DAG's figures in Prometheus text.

Role: renders what every :class:`~edgerm.frameworks.dataflow.runner.DataflowRun`
already keeps (the framework's instances and moves, the stream watch's
rates, drops and end-to-end latency) as one exposition, labelled by ``dag``.

Rules: a scrape reads the runs' views, nothing more (the watch keeps its
figures as reports arrive); cumulative figures (records, drops, errors,
moves) are counters, rates and latency quantiles are gauges.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import edgerm
from edgerm.promtext import Writer, process_figures

if TYPE_CHECKING:
    from edgerm.frameworks.dataflow.runner import DataflowRun

Sample = tuple[tuple[str, ...], float]


def render_dataflow_metrics(runs: Mapping[str, DataflowRun]) -> str:
    """The exposition of every run a server holds (``runs``: by run id)."""
    phase: list[Sample] = []
    instances: list[Sample] = []
    moves: list[Sample] = []
    switches: list[Sample] = []
    rate: list[Sample] = []
    dropped: list[Sample] = []
    errors: list[Sample] = []
    sink_records: list[Sample] = []
    sink_rate: list[Sample] = []
    lost: list[Sample] = []
    latency: list[Sample] = []
    for run_id, run in sorted(runs.items()):
        fw, watch, _ = run.views()
        dag = fw.dag
        phase.append(((dag, run_id, fw.phase.value), 1.0))
        states: dict[str, int] = {}
        for inst in fw.instances:
            states[inst.state] = states.get(inst.state, 0) + 1
        instances.extend(((dag, state), float(n)) for state, n in sorted(states.items()))
        moves.append(((dag,), float(len(fw.moves))))
        switches.append(((dag,), float(fw.switches)))
        if watch is None:
            continue
        for op in watch.operators:
            rate.append(((dag, op.operator, "in"), op.in_rate))
            rate.append(((dag, op.operator, "out"), op.out_rate))
            dropped.append(((dag, op.operator), float(op.dropped)))
            errors.append(((dag, op.operator), float(op.errors)))
        sink_records.append(((dag,), float(watch.sink_records)))
        sink_rate.append(((dag,), watch.sink_rate))
        lost.append(((dag,), float(watch.lost_in_moves)))
        for q, v in (("0.5", watch.latency_p50), ("0.99", watch.latency_p99)):
            if v is not None:
                latency.append(((dag, q), v))
    w = Writer()
    w.gauge("edgerm_dataflow_phase", "Each DAG run's phase (always 1).", phase, ("dag", "run", "phase"))
    w.gauge("edgerm_dataflow_instances", "Operator instances by task state.", instances, ("dag", "state"))
    w.counter_samples("edgerm_dataflow_moves_total", "Instances re-placed (moved or switched).", moves, ("dag",))
    w.counter_samples("edgerm_dataflow_switches_total", "Instances switched to another variant.", switches, ("dag",))
    w.gauge(
        "edgerm_dataflow_operator_records_per_second",
        "Records per second into and out of each operator (summed over its instances).",
        rate,
        ("dag", "operator", "direction"),
    )
    w.counter_samples(
        "edgerm_dataflow_operator_dropped_total",
        "Records an operator dropped (its queue overflowed), as its instances report.",
        dropped,
        ("dag", "operator"),
    )
    w.counter_samples(
        "edgerm_dataflow_operator_errors_total", "Failed batches of each operator.", errors, ("dag", "operator")
    )
    w.counter_samples("edgerm_dataflow_sink_records_total", "Records that reached the sinks.", sink_records, ("dag",))
    w.gauge("edgerm_dataflow_sink_records_per_second", "Records per second reaching the sinks.", sink_rate, ("dag",))
    w.counter_samples(
        "edgerm_dataflow_lost_in_moves_total", "Records missing across moves of instances.", lost, ("dag",)
    )
    w.gauge(
        "edgerm_dataflow_end_to_end_latency_seconds",
        "Latency from a record's reading time to the sink, by quantile over the recent records.",
        latency,
        ("dag", "quantile"),
    )
    process_figures(w, "edgerm_dataflow", edgerm.__version__)
    return w.text()
