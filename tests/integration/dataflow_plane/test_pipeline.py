"""Records flow source -> map (2 replicas) -> filter -> console sink over a real broker.

Parametrized over the embedded amqtt broker and mosquitto. Two sources feed
the map: ``a`` reads ``sim:sine``, ``b`` a command printing 0, 100, 0, 100,
... so the filter (``--above 40`` in Fahrenheit) keeps every ``a`` record and
every other ``b`` record. ``a.0`` and ``b.0`` hash to different map replicas.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from edgerm.agent.dataflow.records import replica_of
from edgerm.agent.dataflow.runtime import DataflowRuntime
from edgerm.ids import TaskId
from edgerm.model import TaskState
from tests.integration.dataflow_plane.brokers import Watcher
from tests.integration.dataflow_plane.conftest import Reports, df_task, stats_topic, topic, watch

ALTERNATING = "cmd:i=0; while true; do echo $((i % 2 * 100)); i=$((i + 1)); sleep 0.02; done"
STATS_KEYS = {"agent", "task", "in", "out", "dropped", "batches", "errors", "t"}


def by_source(records: list[list[str]]) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for src, seq, _t, value in records:
        out[src].append((int(seq), float(value)))
    return out


async def test_records_are_transformed_filtered_and_in_order_per_source(
    broker_url: str, runtime: DataflowRuntime, reports: Reports, watcher_factory: list[Watcher], tmp_path: Path
) -> None:
    assert replica_of("a.0", 2) != replica_of("b.0", 2)  # the two sources go to different replicas
    base = tmp_path
    w = await watch(
        watcher_factory,
        broker_url,
        topic("a"),
        topic("b"),
        topic("show"),
        stats_topic("f2c", 0),
        stats_topic("f2c", 1),
        stats_topic("show"),
    )
    downstream = [
        df_task("show-0", "show", "sink", "sink", broker_url, inputs=(topic("hot"),)),
        df_task("hot-0", "hot", "operator", "filter", broker_url, "--above", "40", inputs=(topic("f2c"),)),
    ] + [
        df_task(
            f"f2c-{i}",
            "f2c",
            "operator",
            "map",
            broker_url,
            "--scale",
            "1.8",
            "--offset",
            "32",
            inputs=(topic("a"), topic("b")),
            EDGERM_DF_REPLICA=f"{i}/2",
        )
        for i in range(2)
    ]
    for task in downstream:
        await runtime.launch(task, base / task.task_id, reports)
    # Sources start once every downstream instance holds its subscriptions: nothing is lost at start.
    await w.wait(lambda: all((h := runtime.host(t.task_id)) is not None and h.connected for t in downstream))
    sources = [
        df_task("a-0", "a", "source", "sensor", broker_url, EDGERM_DF_DEVICE="sim:sine", EDGERM_DF_PERIOD="0.02"),
        df_task("b-0", "b", "source", "sensor", broker_url, EDGERM_DF_DEVICE=ALTERNATING, EDGERM_DF_PERIOD="0.02"),
    ]
    for task in sources:
        await runtime.launch(task, base / task.task_id, reports)

    def enough() -> bool:
        seen = by_source(w.records(topic("show")))
        stats = [stats_topic("f2c", 0), stats_topic("f2c", 1), stats_topic("show")]
        return len(seen["a.0"]) >= 20 and len(seen["b.0"]) >= 10 and all(w.on(t) for t in stats)

    await w.wait(enough, within=15)
    for task in [*sources, *downstream]:
        await runtime.kill(task.task_id, 2.0)
        assert (end := reports.ended(task.task_id)) is not None and end.state is TaskState.KILLED

    raw = {
        (src, seq): value
        for src, pairs in by_source(w.records(topic("a")) + w.records(topic("b"))).items()
        for seq, value in pairs
    }
    shown = by_source(w.records(topic("show")))
    for src, pairs in shown.items():
        seqs = [seq for seq, _ in pairs]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"{src} out of order: {seqs}"
        for seq, value in pairs:
            assert math.isclose(value, raw[(src, seq)] * 1.8 + 32, rel_tol=1e-9, abs_tol=1e-6)
            assert value > 40
    a_seqs = [seq for seq, _ in shown["a.0"]]
    assert a_seqs == list(range(a_seqs[0], a_seqs[0] + len(a_seqs)))  # nothing of a.0 lost on the way
    b_first, b_last = shown["b.0"][0][0], shown["b.0"][-1][0]
    expected_b = [
        seq for (src, seq), v in sorted(raw.items()) if src == "b.0" and b_first <= seq <= b_last and v == 100
    ]
    assert [seq for seq, _ in shown["b.0"]] == expected_b  # exactly the 100s, none of the 0s

    # Each map replica took its share; the stats say so, with the contract's keys.
    for i in range(2):
        stats = w.stats(stats_topic("f2c", i))
        assert stats, f"no stats from f2c.{i}"
        assert set(stats[-1]) >= STATS_KEYS
        assert stats[-1]["in"] > 0 and stats[-1]["agent"] == "agent-1" and stats[-1]["task"] == f"f2c-{i}"
    sink_stats = w.stats(stats_topic("show"))[-1]
    assert sink_stats["out"] <= sink_stats["in"] and sink_stats["errors"] == 0


async def test_stats_are_published_every_second(
    amqtt_url: str, runtime: DataflowRuntime, reports: Reports, watcher_factory: list[Watcher], tmp_path: Path
) -> None:
    w = await watch(watcher_factory, amqtt_url, stats_topic("src"))
    task = df_task("src-0", "src", "source", "sensor", amqtt_url, EDGERM_DF_DEVICE="sim:random")
    await runtime.launch(task, tmp_path / "src", reports)
    await w.wait(lambda: len(w.on(stats_topic("src"))) >= 2, within=5)
    await runtime.kill(TaskId("src-0"), 1.0)
    first, second = w.stats(stats_topic("src"))[:2]
    assert 0.5 < second["t"] - first["t"] < 2.0
    assert second["in"] >= first["in"] > 0 and second["out"] >= first["out"]
    assert second["batches"] >= 1 and second["errors"] == 0 and second["dropped"] == 0
