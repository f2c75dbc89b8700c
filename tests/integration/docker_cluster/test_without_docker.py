"""An agent without Docker does not advertise ``docker``, and the master refuses Docker tasks on it.

Two ways to lack Docker: the agent was built with a WebAssembly runtime only,
or its Docker engine does not answer (``DOCKER_HOST`` names a socket that is
not there) so ``build_runtimes`` leaves the docker runtime out. Either way
its offers carry ``executors: {wasm}``, ``supports(offer, "docker")`` is
false, and a Docker task accepted on such an offer is refused with
INVALID_TASK before anything changes; the same offer can still be used.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgerm.agent.wasm import WasmRuntime
from edgerm.errors import InvalidTask
from edgerm.frameworks import docker_task, supports, wasm_task
from edgerm.model import TaskState
from tests.integration.docker_cluster.conftest import IMAGE, Cluster, Scheduler, containers

pytestmark = pytest.mark.docker

HELLO_WAT = Path(__file__).resolve().parents[3] / "examples" / "wasm" / "hello.wat"


@pytest.mark.parametrize("lacks", ["wasm-runtime-only", "engine-unreachable"])
async def test_no_docker_executor_is_advertised_and_docker_tasks_are_refused(
    cluster: Cluster, scheduler: Scheduler, lacks: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if lacks == "wasm-runtime-only":
        agent = await cluster.start_agent("w", runtimes={"wasm": WasmRuntime(tmp_path / "wasm")})
    else:
        monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
        agent = await cluster.start_agent("w", executors=None)  # every runtime that works here
        monkeypatch.undo()  # the agent has found no engine; the checks below talk to the real one

    offer = await scheduler.offer(agent.agent_id)
    assert offer.attributes["executors"] == frozenset({"wasm"})
    assert supports(offer, "wasm") and not supports(offer, "docker")

    with pytest.raises(InvalidTask, match="executor 'docker'"):
        await scheduler.launch(offer, docker_task(offer, "nope", IMAGE, "cpus:0.1;mem:32"))
    # Refused before any state change: the offer is still good for a task the agent can run.
    task = await scheduler.launch(offer, wasm_task(offer, "yes", HELLO_WAT))
    assert (await scheduler.final(task.task_id)).state is TaskState.FINISHED
    assert await containers(agent.agent_id) == {}
