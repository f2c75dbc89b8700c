"""Chaos, agent side: ``kill -9`` of a real ``edgerm-agent`` process, and a master frozen with SIGSTOP.

The master runs in the test's process (or as an ``edgerm-master`` process
when it must be frozen), the framework is a real ``HttpDriver``, tasks are
real WebAssembly modules (and real containers when Docker is there). Each
test is bounded in time; every process is killed at the end.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from edgerm.agent.config import AgentConfig, ResourceCaps
from edgerm.agent.docker_spec import LABEL_AGENT
from edgerm.agent.journal import JOURNAL_FILE
from edgerm.ids import AgentId, TaskId
from edgerm.master.main import RunningMaster
from edgerm.model import DockerSpec, Reason, RestartPolicy, TaskInfo, TaskState, WasmSpec
from edgerm.resources import Resources
from tests.chaos.procs import Recorder
from tests.chaos_support import sleep_module
from tests.harness import Cluster, free_port
from tests.support import TEST_IMAGE, docker_unavailable, eventually, require_docker

pytestmark = pytest.mark.slow

BOUND = 30.0  # seconds any one wait may take, even on a loaded machine
# The master declares an agent lost after 3 missed heartbeats: 3 x 3 s leaves a restarted process time to start.
AGENT_YAML = "heartbeat_interval: 3.0\nexecutors: [{executors}]\nresources: {{cpus: 4, mem: 1024}}\n"


def wasm(task_id: str, module: bytes, policy: RestartPolicy = RestartPolicy.NEVER) -> TaskInfo:
    return TaskInfo(
        TaskId(task_id),
        task_id,
        AgentId(""),
        Resources.parse("cpus:0.1;mem:32"),
        WasmSpec(module=module),
        restart_policy=policy,
    )


def container(task_id: str) -> TaskInfo:
    return TaskInfo(
        TaskId(task_id),
        task_id,
        AgentId(""),
        Resources.parse("cpus:0.1;mem:32"),
        DockerSpec(image=TEST_IMAGE),
        args=("sh", "-c", 'trap "exit 143" TERM; while true; do sleep 0.1; done'),
        kill_grace=1.0,
    )


@pytest.fixture
async def master(cluster: Cluster) -> RunningMaster:
    return await cluster.master()


@pytest.mark.parametrize("with_docker", [False, True], ids=["wasm", "wasm+docker"])
async def test_kill_9_of_the_agent_process_then_restart(
    master: RunningMaster, cluster: Cluster, tmp_path: Path, with_docker: bool
) -> None:
    if with_docker:
        require_docker(docker_unavailable())
    executors = "wasm, docker" if with_docker else "wasm"
    config = tmp_path / "agent.yaml"
    config.write_text(AGENT_YAML.format(executors=executors))
    work = tmp_path / "agent"
    long = sleep_module(120.0)
    tasks = [wasm("never", long), wasm("again", long, RestartPolicy.ON_AGENT_RESTART)]
    if with_docker:
        tasks.append(container("box"))
    names = [t.task_id for t in tasks]
    fw = Recorder(tasks)
    assert master.tokens is not None
    cluster.env["EDGERM_JOIN_TOKEN"] = master.tokens.join  # the agent process joins the in-process master
    driver = cluster.framework(fw, master.url, master.tokens.admin, backoff_max=1.0)
    agent_id = ""
    try:
        first = await cluster.agent_process(master.url, work, config)
        await eventually(lambda: fw.all_in(names, TaskState.RUNNING), BOUND, "every task RUNNING")
        agent_id = (work / "agent_id").read_text().strip()
        await first.kill9()  # no clean-up of any kind: the WebAssembly tasks die with it
        second = await cluster.agent_process(master.url, work, config)
        await eventually(lambda: fw.latest("never") is TaskState.FAILED, BOUND, "'never' reported FAILED")
        # While the restarted agent waits out the master's one-live-instance rule, the master may see
        # it silent long enough to report its tasks UNREACHABLE first: a partition, not a death.
        await eventually(lambda: _seen(fw, "again")[1:] == [TaskState.RUNNING], BOUND, "'again' RUNNING again")
        failed = fw.of("never")[-1]
        assert failed.reason is Reason.AGENT_RESTARTED
        relaunched = [s for s in fw.of("again") if s.state is TaskState.RUNNING][-1]
        assert (relaunched.state, relaunched.reason) == (TaskState.RUNNING, Reason.AGENT_RESTARTED)
        # Kill what still runs through the framework; each ends once.
        live = ["again", *(["box"] if with_docker else [])]
        for name in live:
            await driver.kill(TaskId(name), AgentId(agent_id))
        await eventually(lambda: fw.all_in(live, TaskState.KILLED), BOUND, "the live tasks KILLED")
        assert _seen(fw, "never") == [TaskState.RUNNING, TaskState.FAILED]
        assert _seen(fw, "again") == [TaskState.RUNNING, TaskState.RUNNING, TaskState.KILLED]
        if with_docker:
            # Re-attached, not restarted: no second RUNNING.
            assert _seen(fw, "box") == [TaskState.RUNNING, TaskState.KILLED]
        terminal = [s for s in fw.statuses if s.state.terminal]
        assert len({(s.task_id, s.uuid) for s in terminal}) == len(names)  # one end per task
        assert await second.terminate() == 0
    finally:
        if with_docker and agent_id:
            await asyncio.to_thread(_remove_containers, agent_id)


def _seen(fw: Recorder, task_id: str) -> list[TaskState]:
    """The task's states at the framework, without UNREACHABLE (see the test)."""
    return [s for s in fw.states(task_id) if s is not TaskState.UNREACHABLE]


def _remove_containers(agent_id: str) -> None:
    import docker

    client = docker.from_env(timeout=30)
    try:
        for c in client.containers.list(all=True, filters={"label": f"{LABEL_AGENT}={agent_id}"}):
            c.remove(force=True)
    finally:
        client.close()


async def test_updates_made_while_the_master_process_is_frozen_arrive_in_order(
    cluster: Cluster, tmp_path: Path
) -> None:
    port = free_port()
    master = await cluster.master_process(port, "--framework-heartbeat", "0.5")
    url = f"http://127.0.0.1:{port}"
    names = [f"t{n}" for n in range(4)]
    fw = Recorder([wasm(name, sleep_module(1.5 + 0.25 * n)) for n, name in enumerate(names)])
    cluster.framework(fw, url, backoff_max=1.0)
    config = AgentConfig(
        heartbeat_interval=3.0, executors=frozenset({"wasm"}), resources=ResourceCaps(cpus=4, mem=1024)
    )
    agent = await cluster.agent(url, config, tmp_path / "agent", register_timeout=BOUND)
    await eventually(lambda: fw.all_in(names, TaskState.RUNNING), BOUND, "every task RUNNING")
    master.signal(signal.SIGSTOP)
    core = agent.service.core
    try:
        await eventually(
            lambda: all(core.status_of(TaskId(n)).state is TaskState.FINISHED for n in names),  # type: ignore[union-attr]
            BOUND,
            "every task finished on the agent",
        )
        assert core.unacknowledged() == len(names)
        journal = (tmp_path / "agent" / JOURNAL_FILE).read_text()
        assert all(f'"task": "{n}"' in journal for n in names)
        assert all(TaskState.FINISHED not in fw.states(n) for n in names)
    finally:
        master.signal(signal.SIGCONT)
    await eventually(lambda: fw.all_in(names, TaskState.FINISHED), BOUND, "every FINISHED delivered")
    await eventually(lambda: core.task_ids() == (), BOUND, "every update acknowledged")
    await cluster.stop_agent(agent)
    for name in names:
        assert fw.states(name) == [TaskState.RUNNING, TaskState.FINISHED], fw.of(name)
    assert await master.terminate() == 0
