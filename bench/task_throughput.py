"""Task throughput end to end: one master, 4 real agents, one framework on the real HTTP driver (issue #13 part 6).

    python bench/task_throughput.py [--seconds 10] [--agents 4] [--mode secure,insecure] [--in-flight 64]

A real master (``edgerm.master.main``, secured by default: credentials from ``edgerm-master init``, the registry
on disk; ``insecure``: ``--insecure`` and an in-memory registry) and ``--agents`` real agents
(``edgerm.agent.main``, HTTP, the real WasmRuntime / wasmtime) run as their own processes on 127.0.0.1; this
process is the framework, on :class:`edgerm.frameworks.HttpDriver`. It launches ``examples/wasm/hello.wat`` (prints
a line, exits 0) as fast as offers allow: every offer is accepted at once with as many tasks as fit it
(``cpus:0.05;mem:16`` each; each agent advertises ``cpus:1``, so at most 20 per agent run at once) while fewer than
``--in-flight`` tasks are unfinished. It launches once per batch of events the driver read together, with every
offer it holds on the agent in one ACCEPT (``--launch per-status``: after every terminal update, one offer per
ACCEPT, as before 2026-12-03). ``--in-flight`` is 32: at saturation accept -> RUNNING is in-flight / throughput
(Little's law), and 64 gave no more tasks/s. After a warm-up second it counts, for ``--seconds``:

- tasks/s: FINISHED updates received by the framework in the window, per second;
- accept -> RUNNING and accept -> FINISHED (p50/p99) of the tasks accepted in the window (the time from just before
  the ACCEPT is posted to the update's arrival at the framework);
- CPU % of one core for the master, the agents (sum) and this framework process (from /proc, over the window);
- the load average of the machine (it is shared).

Baseline, measured in the same run: the master core alone (``bench/allocation.py``'s ``throughput``: the same
4 agents and task size, ACCEPT / RUNNING / FINISHED / ACKNOWLEDGE fed to ``MasterCore.handle``, no sockets), so
the end-to-end figure is a fraction of what the core can do. Target: >= 1,000 tasks/s with p99 accept -> RUNNING
<= 20 ms. Results: bench/results/task_throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, get_state, save, secure_master, spawn, stop, summary_ms
from _frameworks import OfferHolder

from edgerm.errors import WireError
from edgerm.frameworks import FrameworkDriver, load_module, run, wasm_task
from edgerm.ids import OfferId
from edgerm.model import TaskInfo, TaskState, TaskStatus
from edgerm.resources import Resources, total

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "examples" / "wasm" / "hello.wat"
NEED = Resources.parse("cpus:0.05;mem:16")
BEFORE = "39c4a76"  # main before the fourth pass (GIL-keeping wasmtime calls); 2ed4ca1, c3d20d9: the 2nd, 1st
LOG_LEVEL = os.environ.get("TPUT_LOG_LEVEL", "WARNING")
PROFILE_DIR = os.environ.get("TPUT_PROFILE_DIR", "")  # set: each agent runs under cProfile, saved there
LOG_DIR = Path(os.environ["TPUT_LOG_DIR"]) if os.environ.get("TPUT_LOG_DIR") else None  # per-process logs
TICKS = os.sysconf("SC_CLK_TCK")


def call_counts(url: str) -> dict[str, float]:
    """``edgerm_calls_total`` from the master's /metrics, by ``api/type``."""
    token = os.environ.get("EDGERM_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url + "/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for found in re.finditer(r'^edgerm_calls_total\{api="(\w+)",type="(\w+)"\} ([0-9.e+]+)$', text, re.M):
        out[f"{found.group(1)}/{found.group(2)}"] = float(found.group(3))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Launcher(OfferHolder):
    """Accepts every offer with as many tasks as fit, while fewer than ``in_flight`` are unfinished."""

    name = "task-throughput-bench"

    def __init__(self, module: bytes, in_flight: int, pipelined: bool, batched: bool = True) -> None:
        super().__init__()
        self.module, self.in_flight, self.pipelined, self.batched = module, in_flight, pipelined, batched
        self.launch_due = False
        self.accepts: set[asyncio.Task[None]] = set()
        self.accepted_at: dict[str, float] = {}
        self.unfinished = 0
        self.launched = 0
        self.window: tuple[float, float] = (float("inf"), float("inf"))
        self.running: list[float] = []
        self.finished: list[float] = []
        self.finished_in_window = 0
        self.failed: list[str] = []
        self.refused = 0
        self.accept_rtt: list[float] = []
        self.tasks_per_accept: list[int] = []
        self.stopping = False

    async def _launch(self, driver: FrameworkDriver) -> None:
        while self.held and not self.stopping and self.unfinished < self.in_flight:
            oid, offer = self.held.popitem()
            taken = {oid: offer}
            if self.batched:  # every offer held on that agent goes into the one ACCEPT
                for other in [i for i, o in self.held.items() if o.agent_id == offer.agent_id]:
                    taken[other] = self.held.pop(other)
            tasks: list[TaskInfo] = []
            free = total(o.resources for o in taken.values())
            while free >= NEED and self.unfinished + len(tasks) < self.in_flight:
                tasks.append(wasm_task(offer, f"t{self.launched + len(tasks)}", self.module, NEED))
                free = free - NEED
            if not tasks:
                self.held.update(taken)
                return
            t0 = time.perf_counter()
            for t in tasks:
                self.accepted_at[t.task_id] = t0
            self.launched += len(tasks)
            self.unfinished += len(tasks)
            if self.pipelined:  # the ACCEPT goes out now; events keep being dispatched while it is answered
                self._spawn(self._accept(driver, list(taken), tasks, t0))
            else:
                await self._accept(driver, list(taken), tasks, t0)

    async def _accept(self, driver: FrameworkDriver, oids: list[str], tasks: list[TaskInfo], t0: float) -> None:
        try:
            await driver.accept([OfferId(o) for o in oids], tasks)
            self.accept_rtt.append(time.perf_counter() - t0)
            self.tasks_per_accept.append(len(tasks))
        except WireError as e:  # the offer went away meanwhile: the tasks were never launched
            self.refused += 1
            self.unfinished -= len(tasks)
            for t in tasks:
                self.accepted_at.pop(t.task_id, None)
            if len(self.failed) < 10:
                self.failed.append(f"accept: {e}")

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        now = time.perf_counter()
        t0 = self.accepted_at.get(status.task_id)
        if t0 is None:
            return
        start, end = self.window
        in_window = start <= t0 < end
        if status.state is TaskState.RUNNING:
            if in_window:
                self.running.append(now - t0)
            return
        if not status.state.terminal:
            return
        del self.accepted_at[status.task_id]
        self.unfinished -= 1
        if status.state is TaskState.FINISHED:
            if in_window:
                self.finished.append(now - t0)
            if start <= now < end:
                self.finished_in_window += 1
        elif len(self.failed) < 10:
            self.failed.append(f"{status.state.value}: {status.message}")
        if not self.batched:
            await self._launch(driver)
        elif not self.launch_due:  # once the driver has dispatched all the events it read together
            self.launch_due = True
            asyncio.get_running_loop().call_soon(self._launch_soon, driver)

    def _launch_soon(self, driver: FrameworkDriver) -> None:
        self.launch_due = False
        self._spawn(self._launch(driver))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task, kept referenced until it ends."""
        job = asyncio.create_task(work)
        self.accepts.add(job)
        job.add_done_callback(self.accepts.discard)


def cluster(tmp: Path, agents: int, secure: bool) -> tuple[list[Any], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    prof = ["-m", "cProfile", "-o", f"{PROFILE_DIR}/master.prof"] if PROFILE_DIR else []
    cmd = [sys.executable, *prof, "-m", "edgerm.master.main", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--log-level", LOG_LEVEL, "--no-broker", "--no-coap"]
    if secure:
        cmd += secure_master(tmp / "master-state")
    else:
        os.environ.pop("EDGERM_TOKEN", None)
        os.environ.pop("EDGERM_JOIN_TOKEN", None)
        cmd += ["--insecure", "--state-dir", ":memory:"]
    procs = [spawn(cmd, ready_url=url + "/api/v1/state", log=LOG_DIR / "master.log" if LOG_DIR else None)]
    try:
        for i in range(agents):
            cfg = tmp / f"agent{i}.yaml"
            cfg.write_text(
                f"name: tput-{i}\nwork_dir: {tmp / f'a{i}'}\nheartbeat_interval: 1.0\n"
                "executors: [wasm]\nresources:\n  cpus: 1\n"
            )
            prof = ["-m", "cProfile", "-o", f"{PROFILE_DIR}/agent{i}.prof"] if PROFILE_DIR else []
            agent = [sys.executable, *prof, "-m", "edgerm.agent.main", "--master", url, "--config", str(cfg)]
            procs.append(spawn([*agent, "--log-level", LOG_LEVEL], log=LOG_DIR / f"agent{i}.log" if LOG_DIR else None))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if len(get_state(url)["agents"]) == agents:
                return procs, url
            time.sleep(0.1)
        raise RuntimeError("agents did not register")
    except BaseException:
        for p in procs:
            stop(p)
        raise


async def measure(launcher: Launcher, url: str, procs: list[Any], warmup: float, seconds: float) -> dict[str, Any]:
    driver_run = asyncio.create_task(run(launcher, url, max_retries=5))
    await asyncio.sleep(warmup)
    pids = {"master": procs[0].pid, "agents": [p.pid for p in procs[1:]], "framework": os.getpid()}
    before = {k: sum(cpu_seconds(p) for p in (v if isinstance(v, list) else [v])) for k, v in pids.items()}
    load_before = os.getloadavg()
    calls_before = await asyncio.to_thread(call_counts, url)
    start = time.perf_counter()
    launcher.window = (start, start + seconds)
    await asyncio.sleep(seconds)
    wall = time.perf_counter() - start
    after = {k: sum(cpu_seconds(p) for p in (v if isinstance(v, list) else [v])) for k, v in pids.items()}
    calls_after = await asyncio.to_thread(call_counts, url)
    done = max(1, launcher.finished_in_window)
    calls = {k: round((v - calls_before.get(k, 0.0)) / done, 2) for k, v in calls_after.items()}
    launcher.stopping = True
    await asyncio.sleep(0.5)  # let the window's last tasks report
    driver_run.cancel()
    await asyncio.gather(driver_run, return_exceptions=True)
    return {
        "tasks_per_s": round(launcher.finished_in_window / wall, 1),
        "finished_in_window": launcher.finished_in_window,
        "accept_to_running": summary_ms(launcher.running),
        "accept_to_finished": summary_ms(launcher.finished),
        "cpu_percent_of_one_core": {k: round(100 * (after[k] - before[k]) / wall, 1) for k in pids},
        "cpu_ms_per_task": {
            k: round(1000 * (after[k] - before[k]) / max(1, launcher.finished_in_window), 2) for k in pids
        },
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "failed": launcher.failed,
        "refused_accepts": launcher.refused,
        "accept_call": summary_ms(launcher.accept_rtt),
        "tasks_per_accept_mean": round(sum(launcher.tasks_per_accept) / max(1, len(launcher.tasks_per_accept)), 2),
        "calls_per_task": {k: v for k, v in calls.items() if v},
        "window_s": round(wall, 2),
    }


def run_before(args: argparse.Namespace, seconds: float) -> dict[str, Any] | str:
    """The insecure scenario with the edgerm of commit ``args.before`` (this script, that package), in a subprocess."""
    with tempfile.TemporaryDirectory(prefix="edgerm-tput-before-") as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.before, "edgerm"], capture_output=True)
        if archive.returncode != 0:
            return f"git archive {args.before} failed: {archive.stderr.decode().strip()}"
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        cmd = [sys.executable, __file__, "--mode", "insecure", "--no-baseline", "--emit", "--before", ""]
        cmd += ["--seconds", str(seconds), "--warmup", str(args.warmup), "--agents", str(args.agents)]
        cmd += ["--in-flight", str(args.in_flight), "--launch", args.launch]
        cmd += ["--serial-accepts"] if args.serial_accepts else []
        env = {**os.environ, "PYTHONPATH": tmp}  # its edgerm first, for this process and the servers it starts
        # cwd too: ``python -m`` (the servers) puts the working directory first on sys.path, ahead of PYTHONPATH,
        # so run from a checkout they would run this tree's edgerm (they did until this was fixed).
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp)
        lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if out.returncode != 0 or not lines:
            return f"the run on {args.before} failed: {out.stderr.strip()[-500:]}"
        result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
        return result


def one_run(mode: str, args: argparse.Namespace, module: bytes, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgerm-tput-") as tmpdir:
        procs, url = cluster(Path(tmpdir), args.agents, mode == "secure")
        try:
            launcher = Launcher(module, args.in_flight, not args.serial_accepts, args.launch == "batched")
            return asyncio.run(measure(launcher, url, procs, args.warmup, seconds))
        finally:
            for p in reversed(procs):
                stop(p)


def pairs(args: argparse.Namespace, module: bytes) -> dict[str, Any]:
    """Insecure runs of the edgerm of ``args.before`` and of this tree, alternated; medians and their ratio."""
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "now": []}
    for i in range(args.pairs):
        before = run_before(args, args.pair_seconds)
        if isinstance(before, str):
            return {"commit": args.before, "error": before}
        runs["before"].append(before)
        runs["now"].append(one_run("insecure", args, module, args.pair_seconds))
        b, n = runs["before"][-1], runs["now"][-1]
        print(
            f"pair {i + 1}: before {b['tasks_per_s']} tasks/s, now {n['tasks_per_s']} tasks/s "
            f"(load {n['loadavg_before']})"
        )

    def med(which: str, key: str, sub: str | None = None) -> float:
        values = [r[key][sub] if sub else r[key] for r in runs[which]]
        return float(statistics.median(values))

    out: dict[str, Any] = {"commit": args.before, "window_s": args.pair_seconds, "runs": runs}
    for which in runs:
        out[f"{which}_median"] = {
            "tasks_per_s": med(which, "tasks_per_s"),
            "accept_to_running_p99_ms": med(which, "accept_to_running", "p99_ms"),
            "cpu_ms_per_task": {k: med(which, "cpu_ms_per_task", k) for k in ("master", "agents", "framework")},
        }
    b, n = out["before_median"], out["now_median"]
    out["ratio_tasks_per_s"] = round(n["tasks_per_s"] / max(b["tasks_per_s"], 1e-9), 2)
    cpu_b, cpu_n = sum(b["cpu_ms_per_task"].values()), sum(n["cpu_ms_per_task"].values())
    out["ratio_cpu_ms_per_task"] = round(cpu_n / max(cpu_b, 1e-9), 2)
    print(
        f"medians: before {b['tasks_per_s']} tasks/s, {cpu_b:.2f} CPU ms/task; now {n['tasks_per_s']} tasks/s, "
        f"{cpu_n:.2f} CPU ms/task: x{out['ratio_tasks_per_s']} tasks/s, x{out['ratio_cpu_ms_per_task']} CPU per task"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--in-flight", type=int, default=32, help="unfinished tasks the framework allows at once")
    parser.add_argument("--mode", default="secure,insecure", help="comma-separated: secure, insecure")
    parser.add_argument("--name", default="task_throughput", help="results file name")
    parser.add_argument(
        "--serial-accepts", action="store_true", help="await each ACCEPT in the callback (no pipelining)"
    )
    parser.add_argument(
        "--launch",
        choices=("batched", "per-status"),
        default="batched",
        help="batched: launch once per batch of events read, over all offers held on an agent; "
        "per-status: after every terminal update, one offer per ACCEPT",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the core-alone baseline (profiling runs)")
    parser.add_argument(
        "--before",
        metavar="REV",
        default=BEFORE,
        help="also run the insecure scenario on this commit's edgerm ('': not)",
    )
    parser.add_argument(
        "--pairs", type=int, default=3, help="before/now insecure runs, alternated (the machine drifts)"
    )
    parser.add_argument("--pair-seconds", type=float, default=6.0, help="the window of each paired run")
    parser.add_argument("--emit", action="store_true", help=argparse.SUPPRESS)  # a --before run: print, do not save
    args = parser.parse_args()
    import allocation

    core = {"core_tasks_per_s": float("nan")} if args.no_baseline else allocation.throughput(False, 3000)
    print(f"baseline, master core alone: {core['core_tasks_per_s']} tasks/s")
    module = load_module(MODULE)
    res: dict[str, Any] = {"params": vars(args), "baseline_core_alone": core, "runs": {}}
    for mode in args.mode.split(","):
        r = one_run(mode, args, module, args.seconds)
        r["ratio_to_core_alone"] = round(r["tasks_per_s"] / core["core_tasks_per_s"], 3)
        res["runs"][mode] = r
        run_, fin, cpu = r["accept_to_running"], r["accept_to_finished"], r["cpu_percent_of_one_core"]
        print(
            f"{mode:8s} {r['tasks_per_s']:7.1f} tasks/s ({r['ratio_to_core_alone']}x the core alone)  "
            f"accept->RUNNING p50 {run_['p50_ms']:.1f} p99 {run_['p99_ms']:.1f} ms  "
            f"accept->FINISHED p50 {fin['p50_ms']:.1f} p99 {fin['p99_ms']:.1f} ms"
        )
        print(f"         CPU % of a core: {cpu}; load {r['loadavg_before']}; failed {r['failed'][:3]}")
        print(f"         ACCEPT call {r['accept_call']}, {r['tasks_per_accept_mean']} tasks per ACCEPT")
        print(f"         CPU ms per task: {r['cpu_ms_per_task']}; calls per task: {r['calls_per_task']}")
    if args.emit:
        print("RESULT " + json.dumps(res["runs"]["insecure"]))
        return
    if args.before and args.pairs > 0:
        res["before_and_now"] = pairs(args, module)
    res["targets"] = {"tasks_per_s": 1000, "accept_to_running_p99_ms": 20.0}
    print(f"saved {save(args.name, res)}")


if __name__ == "__main__":
    main()
