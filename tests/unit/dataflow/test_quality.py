"""Quality-driven variants: declaring conditions (with file:line:col errors), judging them over the
stream watch's figures, and the core's switch to the next fallback and back (with the probe)."""

from __future__ import annotations

import pytest

from edgerm import messages as m
from edgerm.frameworks import RecordingDriver
from edgerm.frameworks.dataflow.framework import DataflowFramework, MoveKind
from edgerm.frameworks.dataflow.quality import QualityWatch
from edgerm.frameworks.dataflow.validate import DagError
from edgerm.frameworks.dataflow.watch import StreamWatch
from edgerm.model import TaskState
from edgerm.scheduler import Instance
from edgerm.scheduler.quality import Figure, Quality, parse_quality
from tests.unit.dataflow.helpers import FALLBACK, Clock, dag, offer, sensor, status

QUALITY = FALLBACK.replace("edges:\n", "quality:\n  - p99_latency above 250ms for 5s\nedges:\n").replace(
    "    constraints: [domain == cloud]\n    fallbacks:",
    "    constraints: [domain == cloud]\n"
    "    quality: [sink_rate below 5 for 2s, error_rate above 0.5 for 3s]\n"
    "    fallbacks:",
)


def test_conditions_are_read_for_the_dag_and_for_operators() -> None:
    d = dag(QUALITY)
    assert d.quality == (
        Quality(Figure.P99_LATENCY, 0.25, 5.0, None),
        Quality(Figure.SINK_RATE, 5.0, 2.0, "smooth"),
        Quality(Figure.ERROR_RATE, 0.5, 3.0, "smooth"),
    )
    assert str(d.quality[1]) == "sink_rate below 5 for 2s"
    assert parse_quality("p99_latency above 1.5s for 1m").period == 60


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("sink_rate above 5 for 2s", "sink_rate is a floor: use `below`"),
        ("p99_latency below 5ms for 2s", "p99_latency is a ceiling: use `above`"),
        ("p99_latency above 250 for 2s", "needs a unit: ms, s or m"),
        ("cpu above 5 for 2s", "unknown figure 'cpu'"),
        ("sink_rate below 5 for 2h", "the period '2h' is not a number"),
        ("sink_rate below 5 for 0.1s", "must be between 0.5s and 3600s"),
        ("sink_rate below -1 for 2s", "is not a number"),
        ("sink_rate below 5", "expected `<figure> below|above <value> for <period>`"),
    ],
)
def test_a_bad_condition_is_reported_where_it_is(condition: str, message: str) -> None:
    text = QUALITY.replace("sink_rate below 5 for 2s", condition)
    with pytest.raises(DagError) as e:
        dag(text)
    (problem,) = e.value.problems
    line = next(i for i, t in enumerate(text.splitlines(), 1) if condition in t)
    assert message in problem.message and problem.line == line and problem.column > 1, problem
    assert problem.path == "operators.smooth.quality[0]" and str(problem).startswith(f"test.yaml:{line}:")


def test_a_condition_needs_a_fallback_to_switch_to() -> None:
    sink = "  out:\n    kind: sink\n"
    text = QUALITY.replace(sink, sink + "    quality: [error_rate above 1 for 2s]\n")
    with pytest.raises(DagError) as e:
        dag(text)
    (problem,) = e.value.problems
    assert "operator 'out' has no fallback to switch to" in problem.message and problem.line > 0


def batch(src: str, seqs: range, t0: float) -> bytes:
    return "".join(f"{src} {s} {t0:.3f} 20\n" for s in seqs).encode()


def test_the_watch_judges_each_condition_over_its_period_once_armed() -> None:
    d = dag(QUALITY)
    w, q = StreamWatch(d), QualityWatch(d)
    q.rearm(100.0)
    seq = 0
    broken: list[str] = []
    for step in range(40):  # 10 s at 4 checks/s; 10 rec/s for 5 s, then nothing
        now = 100.0 + step * 0.25
        if now < 105.0:
            w.batch("out", batch("read.0", range(seq, seq + 3), now - 0.01), now)
            seq += 3
        broken += [f"{now:.2f} {b.operator} {b.figure}" for b in q.check(w, now)]
    # sink rate: 12 rec/s while flowing; below 5 over 2 s from about 106.0 on, then re-armed for 2 s
    assert [b.split()[0] for b in broken if "sink rate" in b] == ["106.00", "108.00"]
    assert all(b.split()[1] == "smooth" for b in broken)
    assert not any("latency" in b for b in broken)  # 10 ms latency, and none measured without records


def test_latency_and_error_rate_breaches_name_their_figure() -> None:
    d = dag(QUALITY)
    w, q = StreamWatch(d), QualityWatch(d)
    q.rearm(0.0)
    breaches = []
    for step in range(30):
        now = step * 0.25
        w.batch("out", batch("read.0", range(step * 10, step * 10 + 10), now - 0.4), now)
        w.stats("smooth", 0, f'{{"task": "t", "in": 1, "out": 1, "errors": {step}, "t": {now}}}'.encode())
        breaches += q.check(w, now)
    figures = {b.quality.figure: b.figure for b in breaches}
    assert figures[Figure.P99_LATENCY] == "p99 latency 400 ms above 250 ms over 5s"
    assert figures[Figure.ERROR_RATE].startswith("error rate 4.00 errors/s above 0.5 over 3s")
    assert Figure.SINK_RATE not in figures


async def test_a_breach_switches_to_the_fallback_and_the_hold_ends_with_a_probe_of_main() -> None:
    clock = Clock()
    fw = DataflowFramework(dag(QUALITY), clock=clock, hold_seconds=10.0)
    driver = RecordingDriver()
    await fw.registered(driver, "framework-1", "master")  # type: ignore[arg-type]
    await fw.resource_offers(driver, [sensor("pi"), offer("srv", "cpus:4;mem:4096", domain="cloud")])
    main = fw.live[Instance("smooth")]
    assert main.placement.variant == "main"
    for t in list(fw.live.values()):
        await fw.status_update(driver, status(t.task_id, t.placement.agent_id, TaskState.RUNNING))

    await fw.quality_broken(driver, "smooth", "sink rate 0.00 rec/s below 5 over 2s")
    assert fw.holds["smooth"].floor == 1 and driver.of_type(m.Revive)
    assert "held off main" in fw.view().holds[0]
    await fw.resource_offers(driver, [offer("edge2", domain="edge")])
    lite = fw.live[Instance("smooth")]
    assert lite.placement.variant == "lite" and lite.placement.agent_id == "edge2"
    assert driver.calls[-1] == m.Kill("framework-1", main.task_id, main.placement.agent_id)  # type: ignore[arg-type]
    (move,) = fw.moves
    assert move.kind is MoveKind.SWITCHED and move.why == "quality: sink rate 0.00 rec/s below 5 over 2s"
    (switch,) = fw.switches
    assert (switch.from_variant, switch.to_variant, switch.figure) == ("main", "lite", move.why[len("quality: ") :])
    await fw.status_update(driver, status(main.task_id, "srv", TaskState.KILLED))
    await fw.status_update(driver, status(lite.task_id, "edge2", TaskState.RUNNING))

    # main fits on srv, but it is held: no switch back yet
    await fw.resource_offers(driver, [offer("srv", "cpus:4;mem:4096", domain="cloud")])
    assert fw.live[Instance("smooth")].task_id == lite.task_id
    clock.now += 10.0
    await fw.tick(driver)
    assert fw.holds["smooth"].floor == 0 and not fw.view().holds
    await fw.resource_offers(driver, [offer("srv", "cpus:4;mem:4096", domain="cloud")])
    probe = fw.live[Instance("smooth")]
    assert probe.placement.variant == "main" and probe.replaces == lite.task_id
    kills = len(driver.of_type(m.Kill))
    assert lite.task_id in fw.retiring  # the fallback runs on until main proves it starts
    await fw.status_update(driver, status(probe.task_id, "srv", TaskState.RUNNING))
    assert len(driver.of_type(m.Kill)) == kills + 1 and driver.of_type(m.Kill)[-1].task_id == lite.task_id
    assert [s.to_variant for s in fw.switches] == ["lite", "main"]


async def test_a_probe_that_fails_keeps_the_fallback_and_holds_main_longer() -> None:
    clock = Clock()
    fw = DataflowFramework(dag(QUALITY), clock=clock, hold_seconds=10.0)
    driver = RecordingDriver()
    await fw.registered(driver, "framework-1", "master")  # type: ignore[arg-type]
    await fw.resource_offers(driver, [sensor("pi"), offer("srv", "cpus:4;mem:4096", domain="cloud")])
    main = fw.live[Instance("smooth")]
    await fw.quality_broken(driver, "smooth", "error rate 2.00 errors/s above 0.5 over 3s")
    await fw.resource_offers(driver, [offer("edge2", domain="edge")])
    lite = fw.live[Instance("smooth")]
    await fw.resource_offers(driver, [offer("srv", "cpus:4;mem:4096", domain="cloud")])
    assert fw.live[Instance("smooth")] == lite  # the old main has not ended yet: one replacement at a time
    await fw.status_update(driver, status(main.task_id, "srv", TaskState.KILLED))
    clock.now += 10.0
    await fw.tick(driver)
    await fw.resource_offers(driver, [offer("srv", "cpus:4;mem:4096", domain="cloud")])
    probe = fw.live[Instance("smooth")]
    assert probe.replaces == lite.task_id
    await fw.status_update(driver, status(probe.task_id, "srv", TaskState.FAILED, message="image missing"))
    assert fw.live[Instance("smooth")].task_id == lite.task_id  # the fallback stays
    hold = fw.holds["smooth"]
    assert hold.floor == 1 and hold.strikes == 2 and hold.until == pytest.approx(clock.now + 20.0)
    assert lite.task_id not in {k.task_id for k in driver.of_type(m.Kill)}


async def test_a_breach_on_the_last_variant_changes_nothing() -> None:
    fw = DataflowFramework(dag(QUALITY), clock=Clock())
    driver = RecordingDriver()
    await fw.registered(driver, "framework-1", "master")  # type: ignore[arg-type]
    await fw.resource_offers(driver, [sensor("pi")])  # no cloud agent: smooth runs lite already
    calls = len(driver.calls)
    await fw.quality_broken(driver, None, "p99 latency 900 ms above 250 ms over 5s")
    assert len(driver.calls) == calls and not fw.holds and not fw.switches


async def test_with_probe_needs_report_main_must_also_publish_stats_before_the_fallback_goes() -> None:
    clock = Clock()
    fw = DataflowFramework(dag(QUALITY), clock=clock, hold_seconds=5.0, probe_needs_report=True)
    driver = RecordingDriver()
    await fw.registered(driver, "framework-1", "master")  # type: ignore[arg-type]
    await fw.resource_offers(driver, [sensor("pi"), offer("srv", "cpus:4;mem:4096", domain="cloud")])
    main = fw.live[Instance("smooth")]
    await fw.quality_broken(driver, "smooth", "p99 latency 900 ms above 250 ms over 5s")
    await fw.resource_offers(driver, [offer("edge2", domain="edge")])
    lite = fw.live[Instance("smooth")]
    await fw.status_update(driver, status(main.task_id, "srv", TaskState.KILLED))
    clock.now += 5.0
    await fw.tick(driver)
    await fw.resource_offers(driver, [offer("srv", "cpus:4;mem:4096", domain="cloud")])
    probe = fw.live[Instance("smooth")]
    await fw.status_update(driver, status(probe.task_id, "srv", TaskState.RUNNING))
    assert lite.task_id not in {k.task_id for k in driver.of_type(m.Kill)}  # running is not enough
    await fw.instances_reported(driver, [lite.task_id])  # another task's report changes nothing
    assert lite.task_id not in {k.task_id for k in driver.of_type(m.Kill)}
    await fw.instances_reported(driver, [probe.task_id])
    assert driver.of_type(m.Kill)[-1].task_id == lite.task_id
    assert fw.switches[-1].figure == "probe passed: it runs again after the hold"
