"""Launch latency: accept -> RUNNING and accept -> FINISHED at the framework, one task at a time.

    python bench/launch_latency.py [--tasks 200] [--transport http|coap] [--docker IMAGE]

A real master and two real agents run as their own processes on 127.0.0.1; this process is the framework. For
each task it holds an offer, stamps the time, sends ACCEPT, and stamps the arrival of RUNNING and FINISHED. The
baseline, measured in this same run and process: the bare wasmtime run of the same module (new Store + WasiConfig
+ instantiate + _start, with Engine and Module reused), or with ``--docker`` a bare ``containers.run(detach=True)``
with the task's limits until the container is running (``docker_bare.bare_run_seconds``), one before each task
launch so drift on the machine hits both alike (the first is a dropped warm-up). Targets: p50 accept -> RUNNING
<= 10 ms (HTTP), <= 20 ms (CoAP); Docker <= 1.2x bare. Results: bench/results/launch_latency[_coap|_docker].json.
Every container made is removed at the end (agents stopped with SIGTERM leave theirs running, by design).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, get_state, save, secure_master, spawn, stop, summary_ms
from _frameworks import OfferHolder

from edgerm.frameworks import FrameworkDriver, docker_task, fits, load_module, run, wasm_task
from edgerm.model import Filters, Offer, TaskInfo, TaskState, TaskStatus

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "examples" / "wasm" / "hello.wat"


class Prober(OfferHolder):
    """Launches one task at a time on a held offer and records latencies."""

    name = "launch-latency-bench"

    def __init__(
        self,
        count: int,
        make_task: Any,
        executor: str,
        need: str,
        before_launch: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__()
        self.count, self.make_task, self.executor, self.need = count, make_task, executor, need
        self.before_launch = before_launch  # awaited before each launch, outside the timed span
        self.accepted_at: dict[str, float] = {}
        self.running: list[float] = []
        self.finished: list[float] = []
        self.failed: list[str] = []
        self.in_flight = False
        self.launched = 0
        self.done = asyncio.Event()

    async def _launch(self, driver: FrameworkDriver) -> None:
        fitting = [oid for oid, o in self.held.items() if fits(o, self.need)]
        if self.in_flight or not fitting or self.launched >= self.count:
            return
        self.in_flight = True
        if self.before_launch is not None:
            await self.before_launch()
            fitting = [oid for oid in fitting if oid in self.held]  # one may have been rescinded meanwhile
            if not fitting:
                self.in_flight = False
                return
        offer = self.held.pop(fitting[-1])
        task: TaskInfo = self.make_task(offer, f"probe-{self.launched}")
        self.launched += 1
        self.accepted_at[task.task_id] = time.perf_counter()
        # refuse_seconds=0: the unused rest of the offer comes straight back (Mesos' default filter is 5 s).
        await driver.accept([offer.id], [task], Filters(refuse_seconds=0))

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        now = time.perf_counter()
        t0 = self.accepted_at.get(status.task_id)
        if t0 is None:
            return
        if status.state is TaskState.RUNNING:
            self.running.append(now - t0)
        elif status.state.terminal:
            if status.state is TaskState.FINISHED:
                self.finished.append(now - t0)
            else:
                self.failed.append(f"{status.state.value}: {status.message}")
            self.in_flight = False
            if self.launched >= self.count:
                self.done.set()
                await driver.stop()
                return
            await self._launch(driver)


def bare_wasm(module: bytes, n: int) -> list[float]:
    import os

    import wasmtime

    engine = wasmtime.Engine()
    compiled = wasmtime.Module(engine, module)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(n):
            t0 = time.perf_counter()
            store = wasmtime.Store(engine)
            wasi = wasmtime.WasiConfig()
            wasi.argv = ["probe"]
            wasi.stdout_file = os.path.join(tmp, "out")
            store.set_wasi(wasi)
            inst = linker.instantiate(store, compiled)
            start = inst.exports(store)["_start"]
            assert isinstance(start, wasmtime.Func)
            try:
                start(store)
            except wasmtime.ExitTrap as e:
                assert e.code == 0
            times.append(time.perf_counter() - t0)
    return times


class BareDocker:
    """The Docker baseline: one bare ``containers.run`` per call, timed, then removed (untimed)."""

    def __init__(self, image: str) -> None:
        import docker

        from edgerm.agent.docker_engine import DockerEngine

        self.image = image
        self.label = f"bench-bare-{uuid.uuid4().hex[:8]}"
        self.client = docker.from_env()
        self.engine = DockerEngine()
        self.times: list[float] = []
        self.warm = False
        self.agent_ids: list[str] = []  # the cluster's agents, once known

    def _settle(self, within: float = 5.0) -> None:
        """Wait until the agents have removed their finished containers, so the timed run runs alone."""
        deadline = time.monotonic() + within
        while self.agent_ids and time.monotonic() < deadline:
            labels = [f"edgerm.agent={a}" for a in self.agent_ids]
            if not any(self.client.api.containers(all=True, filters={"label": label}) for label in labels):
                return
            time.sleep(0.01)

    def run_once(self) -> None:
        from docker_bare import bare_run_seconds

        from edgerm.ids import AgentId

        self._settle()
        took = bare_run_seconds(self.client, self.image, self.label)
        self.engine.remove_labelled(AgentId(self.label))
        if self.warm:
            self.times.append(took)
        self.warm = True  # the first is a warm-up: the first bridge-network container is slower

    async def before_launch(self) -> None:
        await asyncio.to_thread(self.run_once)

    def close(self) -> None:
        from edgerm.ids import AgentId

        self.engine.remove_labelled(AgentId(self.label))
        self.engine.close()
        self.client.close()


def agent_ids(work_dirs: list[Path]) -> list[str]:
    """The ids of the bench's agents, read from their work dirs."""
    from edgerm.agent.resources import AGENT_ID_FILE

    files = [d / AGENT_ID_FILE for d in work_dirs]
    return [f.read_text(encoding="ascii").strip() for f in files if f.exists()]


def remove_agent_containers(work_dirs: list[Path]) -> int:
    """Remove every container of the bench's agents."""
    from edgerm.agent.docker_engine import DockerEngine
    from edgerm.ids import AgentId

    engine = DockerEngine()
    try:
        return sum(engine.remove_labelled(AgentId(a)) for a in agent_ids(work_dirs))
    finally:
        engine.close()


def cluster(transport: str, tmp: Path, master_args: tuple[str, ...] = ()) -> tuple[list[Any], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "edgerm.master.main",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "WARNING",
        "--no-broker",
        *master_args,
    ]
    agent_url = url
    if transport == "coap":
        coap_port = free_port(kind=2)  # SOCK_DGRAM
        cmd += ["--coap-port", str(coap_port)]
        agent_url = f"coap://127.0.0.1:{coap_port}"
    else:
        cmd += ["--no-coap"]
    if "--insecure" not in master_args:
        cmd += secure_master(tmp / "master-state")  # the registry lives there too
    elif "--state-dir" not in master_args:
        cmd += ["--state-dir", ":memory:"]
    procs = [spawn(cmd, ready_url=url + "/api/v1/state")]
    try:
        for i in range(2):
            cfg = tmp / f"agent{i}.yaml"
            cfg.write_text(f"name: bench-{i}\nwork_dir: {tmp / f'a{i}'}\nheartbeat_interval: 1.0\n")
            procs.append(
                spawn(
                    [
                        sys.executable,
                        "-m",
                        "edgerm.agent.main",
                        "--master",
                        agent_url,
                        "--config",
                        str(cfg),
                        "--log-level",
                        "WARNING",
                    ]
                )
            )

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if len(get_state(url)["agents"]) == 2:
                return procs, url
            time.sleep(0.1)
        raise RuntimeError("agents did not register")
    except BaseException:
        for p in procs:
            stop(p)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--transport", choices=["http", "coap"], default="http")
    parser.add_argument("--docker", metavar="IMAGE", help="launch Docker tasks of this image instead of WASM")
    args = parser.parse_args()
    module = load_module(MODULE)
    bare = BareDocker(args.docker) if args.docker else None
    if args.docker:
        executor, baseline_name, need = "docker", "bare_containers_run", "cpus:0.1;mem:32"  # docker_bare's limits

        def make(o: Offer, name: str) -> TaskInfo:
            return docker_task(o, name, args.docker, need, args=("sh", "-c", "sleep 0.2"))

    else:
        executor, baseline_name, need = "wasm", "bare_wasmtime_run", "cpus:0.1;mem:32"

        def make(o: Offer, name: str) -> TaskInfo:
            return wasm_task(o, name, module, need)

    try:
        with tempfile.TemporaryDirectory(prefix="edgerm-bench-") as tmpdir:
            procs, url = cluster(args.transport, Path(tmpdir))
            work_dirs = [Path(tmpdir) / f"a{i}" for i in range(2)]
            if bare is not None:
                bare.agent_ids = agent_ids(work_dirs)
            try:
                prober = Prober(args.tasks, make, executor, need, bare.before_launch if bare else None)
                t0 = time.perf_counter()
                asyncio.run(run(prober, url, max_retries=5))
                wall = time.perf_counter() - t0
            finally:
                for p in reversed(procs):
                    stop(p)
                if args.docker:
                    remove_agent_containers(work_dirs)
    finally:
        if bare is not None:
            bare.close()
    base = bare.times if bare is not None else bare_wasm(module, max(args.tasks, 200))
    res: dict[str, Any] = {
        "params": vars(args),
        "accept_to_running": summary_ms(prober.running),
        "accept_to_finished": summary_ms(prober.finished),
        "failed": prober.failed[:10],
        "wall_s": round(wall, 2),
        baseline_name: summary_ms(base),
    }
    res["ratio_p50_running_vs_baseline"] = round(
        res["accept_to_running"]["p50_ms"] / max(res[baseline_name]["p50_ms"], 1e-6), 2
    )
    suffix = "_docker" if args.docker else ("_coap" if args.transport == "coap" else "")
    print(f"transport {args.transport}, executor {executor}, {len(prober.running)} tasks")
    for key in ("accept_to_running", "accept_to_finished", baseline_name):
        s = res[key]
        print(f"  {key:22s} p50 {s['p50_ms']:8.2f} ms   p99 {s['p99_ms']:8.2f} ms   (n={s['n']})")
    print(f"  ratio p50 running / baseline: {res['ratio_p50_running_vs_baseline']}x")
    if prober.failed:
        print(f"  {len(prober.failed)} tasks did not finish: {prober.failed[:3]}")
    print(f"saved {save('launch_latency' + suffix, res)}")


if __name__ == "__main__":
    main()
