"""DataflowFramework decisions, driven through a RecordingDriver: holding offers, launching with
the env contract, declining, deadline failures, migration, fallback and switching back."""

from __future__ import annotations

from edgerm import messages as m
from edgerm.errors import UnknownOffer
from edgerm.frameworks import RecordingDriver
from edgerm.frameworks.dataflow.framework import DataflowFramework, MoveKind, MoveListener, Phase
from edgerm.ids import AgentId
from edgerm.model import Reason, TaskState, WasmSpec
from edgerm.scheduler import Instance
from tests.unit.dataflow.helpers import FALLBACK, SHA, Clock, dag, offer, sensor, status, tasks_by_name


class Recorder(MoveListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def instance_gone(self, instance: Instance) -> None:
        self.events.append(("gone", str(instance)))

    def instance_resumed(self, instance: Instance) -> None:
        self.events.append(("resumed", str(instance)))


async def started(text: str | None = None, **kw: object) -> tuple[DataflowFramework, RecordingDriver, Clock]:
    clock = Clock()
    fw = DataflowFramework(dag() if text is None else dag(text), clock=clock, **kw)  # type: ignore[arg-type]
    driver = RecordingDriver()
    await fw.registered(driver, driver.framework_id or "", "master")  # type: ignore[arg-type]
    return fw, driver, clock


async def run_all(fw: DataflowFramework, driver: RecordingDriver) -> None:
    """Report RUNNING for every live task."""
    for t in list(fw.live.values()):
        if t.state is not TaskState.RUNNING:
            await fw.status_update(driver, status(t.task_id, t.placement.agent_id, TaskState.RUNNING))
    assert all(t.state is TaskState.RUNNING for t in fw.live.values())


async def test_holds_offers_until_the_dag_fits_then_launches_with_the_env_contract() -> None:
    fw, driver, _ = await started()
    await fw.resource_offers(driver, [sensor("pi")])
    assert driver.calls == [] and fw.phase is Phase.WAITING  # no cloud agent yet: hold, decline nothing
    assert any("store#0" in u for u in fw.view().unplaced)
    await fw.resource_offers(driver, [offer("srv", domain="cloud")])
    assert fw.phase is Phase.RUNNING
    accepts = driver.of_type(m.Accept)
    assert sorted(a.offer_ids[0] for a in accepts) == sorted(o for o in {a.offer_ids[0] for a in accepts})
    by_name = {t.name: t for a in accepts for t in a.tasks}
    assert set(by_name) == {"temps.read.0", "temps.scale.0", "temps.store.0"}
    read, scale, store = by_name["temps.read.0"], by_name["temps.scale.0"], by_name["temps.store.0"]
    assert read.agent_id == scale.agent_id == AgentId("pi") and store.agent_id == AgentId("srv")
    assert "temperature" in read.resources.devices
    assert isinstance(read.container, WasmSpec) and read.container.module_sha256 == SHA
    assert read.env == {
        "EDGERM_DF_PERIOD": "0.05",
        "EDGERM_DF_DAG": "temps",
        "EDGERM_DF_OPERATOR": "read",
        "EDGERM_DF_ROLE": "source",
        "EDGERM_DF_OUT": "edgerm/temps/read/out",
        "EDGERM_DF_REPLICA": "0/1",
        "EDGERM_DF_DEVICE": "temperature",
    }
    assert scale.env["EDGERM_DF_IN"] == "edgerm/temps/read/out" and scale.env["EDGERM_DF_ROLE"] == "operator"
    assert scale.args == ("--scale", "1.8", "--offset", "32")
    assert store.env["EDGERM_DF_IN"] == "edgerm/temps/scale/out" and store.env["EDGERM_DF_ROLE"] == "sink"
    assert "EDGERM_DF_DEVICE" not in store.env and "EDGERM_BROKER" not in store.env
    # everything placed and running main variants: leftovers get the long filter
    assert all(a.filters.refuse_seconds == 30.0 for a in accepts)


async def test_declines_what_it_does_not_need_once_running() -> None:
    fw, driver, _ = await started()
    await fw.resource_offers(driver, [sensor("pi"), offer("srv", domain="cloud"), offer("spare", domain="cloud")])
    (decline,) = driver.of_type(m.Decline)
    assert len(decline.offer_ids) == 1 and decline.filters.refuse_seconds == 30.0
    await fw.resource_offers(driver, [offer("late", domain="edge")])
    assert driver.of_type(m.Decline)[-1].filters.refuse_seconds == 30.0
    assert len(tasks_by_name(driver)) == 3


async def test_deadline_reports_the_schedulers_reasons_and_tears_down() -> None:
    fw, driver, clock = await started(deadline=5.0)
    await fw.resource_offers(driver, [offer("srv", domain="cloud")])
    clock.now += 4.9
    await fw.tick(driver)
    assert fw.phase is Phase.WAITING
    clock.now += 0.2
    await fw.tick(driver)
    assert fw.phase is Phase.FAILED and fw.done.is_set()
    assert "could not be placed within 5s" in fw.failure
    assert "read#0 could not be placed" in fw.failure and "missing device temperature" in fw.failure
    assert "scale#0" in fw.failure and "constraint domain == edge" in fw.failure
    assert isinstance(driver.calls[-1], m.Teardown)
    assert driver.of_type(m.Decline) and not driver.of_type(m.Accept)


async def test_an_agent_lost_moves_its_instances_with_the_same_topics() -> None:
    rec = Recorder()
    fw, driver, _ = await started(listener=rec)
    await fw.resource_offers(driver, [sensor("pi"), offer("srv", domain="cloud"), offer("edge2", domain="edge")])
    await run_all(fw, driver)
    old_scale = fw.live[Instance("scale")]
    assert old_scale.placement.agent_id == AgentId("pi")
    first_env = {t.name: t.env for a in driver.of_type(m.Accept) for t in a.tasks}["temps.scale.0"]

    # a failure on pi (not the agent): the scale task fails; it is re-placed and counted
    await fw.status_update(
        driver, status(old_scale.task_id, "pi", TaskState.FAILED, Reason.TRAP, "wasm trap: unreachable")
    )
    assert Instance("scale") not in fw.live and driver.of_type(m.Revive)
    assert ("gone", "scale#0") in rec.events
    await fw.resource_offers(driver, [offer("edge2", domain="edge")])
    new_scale = fw.live[Instance("scale")]
    assert new_scale.placement.agent_id == AgentId("edge2")
    assert {t.name: t.env for t in driver.of_type(m.Accept)[-1].tasks}["temps.scale.0"] == first_env
    (move,) = fw.moves
    assert move.kind is MoveKind.MOVED and move.from_agent == "pi" and move.to_agent == "edge2"
    assert "trap" in move.why
    await fw.status_update(driver, status(new_scale.task_id, "edge2", TaskState.RUNNING))
    assert rec.events[-1] == ("resumed", "scale#0")

    # duplicates and stale updates change nothing
    await fw.status_update(driver, status(old_scale.task_id, "pi", TaskState.FAILED))
    assert fw.live[Instance("scale")].task_id == new_scale.task_id and len(fw.moves) == 1


async def test_lost_agent_is_excluded_and_its_source_waits_for_a_device() -> None:
    fw, driver, _ = await started()
    await fw.resource_offers(driver, [sensor("pi"), offer("srv", domain="cloud"), offer("edge2", domain="edge")])
    await run_all(fw, driver)
    read, scale = fw.live[Instance("read")], fw.live[Instance("scale")]
    await fw.agent_lost(driver, AgentId("pi"))
    for t in (read, scale):
        await fw.status_update(driver, status(t.task_id, "pi", TaskState.LOST, Reason.AGENT_LOST))
    assert fw.failures == {}  # an agent loss is not the operator's fault
    await fw.resource_offers(driver, [offer("edge2", domain="edge")])
    assert fw.live[Instance("scale")].placement.agent_id == AgentId("edge2")
    assert Instance("read") not in fw.live
    assert any("missing device temperature" in u for u in fw.view().unplaced)
    assert driver.of_type(m.Accept)[-1].filters.refuse_seconds == 2.0  # something is missing: ask again soon
    # the sensor agent comes back: the source returns to it
    await fw.resource_offers(driver, [sensor("pi")])
    assert fw.live[Instance("read")].placement.agent_id == AgentId("pi")
    assert [str(mv.instance) for mv in fw.moves] == ["scale#0", "read#0"]
    assert all("lost" in mv.why for mv in fw.moves)


async def test_runs_the_fallback_then_switches_back_when_main_fits() -> None:
    rec = Recorder()
    fw, driver, _ = await started(FALLBACK, listener=rec)
    await fw.resource_offers(driver, [sensor("pi")])
    assert fw.phase is Phase.RUNNING
    assert fw.live[Instance("smooth")].placement.variant == "lite"
    lite = fw.live[Instance("smooth")]
    lite_task = {t.name: t for t in driver.of_type(m.Accept)[0].tasks}["fb.smooth.0"]
    assert lite_task.args == ("--window", "3")
    await run_all(fw, driver)
    await fw.resource_offers(driver, [offer("srv", "cpus:4;mem:4096", domain="cloud")])
    main = fw.live[Instance("smooth")]
    assert main.placement.variant == "main" and main.placement.agent_id == AgentId("srv")
    # make-before-break: the main one was launched, then the fallback killed
    assert driver.calls[-1] == m.Kill(driver.framework_id or "", lite.task_id, AgentId("pi"))  # type: ignore[arg-type]
    assert lite.task_id in fw.retiring
    (move,) = fw.moves
    assert move.kind is MoveKind.SWITCHED and move.to_variant == "main" and "main fits again" in move.why
    await fw.status_update(driver, status(lite.task_id, "pi", TaskState.KILLED))
    assert lite.task_id not in fw.retiring
    # the cloud agent goes: back to the fallback
    await fw.agent_lost(driver, AgentId("srv"))
    await fw.status_update(driver, status(main.task_id, "srv", TaskState.LOST, Reason.AGENT_LOST))
    await fw.resource_offers(driver, [offer("pi", "cpus:0.5;mem:256", domain="edge")])
    assert fw.live[Instance("smooth")].placement.variant == "lite"
    assert [mv.kind for mv in fw.moves] == [MoveKind.SWITCHED, MoveKind.SWITCHED]


async def test_an_operator_that_keeps_failing_fails_the_dag() -> None:
    fw, driver, _ = await started(max_failures=3)
    await fw.resource_offers(driver, [sensor("pi"), offer("srv", domain="cloud")])
    for _ in range(3):
        t = fw.live[Instance("store")]
        await fw.status_update(driver, status(t.task_id, "srv", TaskState.FAILED, Reason.TRAP, "boom"))
        if fw.phase is Phase.RUNNING:
            await fw.resource_offers(driver, [offer("srv", domain="cloud")])
    assert fw.phase is Phase.FAILED and "store#0 failed 3 times" in fw.failure and "boom" in fw.failure
    assert isinstance(driver.calls[-1], m.Teardown)
    killed = {k.task_id for k in driver.of_type(m.Kill)}
    assert {fw.retiring[tid].instance for tid in killed if tid in fw.retiring} == {Instance("read"), Instance("scale")}


async def test_a_vanished_offer_leaves_instances_pending_and_they_are_placed_later() -> None:
    fw, driver, _ = await started()
    driver.fail_next(UnknownOffer("gone"))
    await fw.resource_offers(driver, [sensor("pi"), offer("srv", domain="cloud")])
    assert fw.phase is Phase.RUNNING and len(fw.live) in (1, 2)
    missing = set(fw.view().pending)
    assert missing
    await fw.tick(driver)
    assert driver.of_type(m.Revive)
    again = [sensor("pi")] if "read#0" in missing else [offer("srv", domain="cloud")]
    await fw.resource_offers(driver, again)
    assert len(fw.live) == 3 and not fw.moves  # a first placement is not a move


async def test_shutdown_kills_everything_and_stops_once_all_ended() -> None:
    fw, driver, _ = await started()
    await fw.resource_offers(driver, [sensor("pi"), offer("srv", domain="cloud")])
    await run_all(fw, driver)
    await fw.shutdown(driver)
    assert fw.phase is Phase.STOPPING and len(driver.of_type(m.Kill)) == 3
    for k in driver.of_type(m.Kill):
        assert not fw.done.is_set()
        await fw.status_update(driver, status(k.task_id, k.agent_id, TaskState.KILLED))
    assert fw.phase is Phase.STOPPED and fw.done.is_set() and fw.all_ended
    late = offer("srv", domain="cloud")
    await fw.resource_offers(driver, [late])
    assert driver.of_type(m.Decline)[-1].offer_ids == (late.id,)
