"""Real processes for the chaos tests: ``edgerm-agent`` and ``edgerm-master`` as subprocesses, and a recorder.

Every process is started with its output in a log file under the test's
tmp dir (shown when a test fails), with ``HOME`` and ``XDG_STATE_HOME``
pointing there too so no default state dir outside the test is touched,
and is killed at the end whatever happens (:class:`Procs`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

from edgerm.frameworks import Framework, FrameworkDriver
from edgerm.model import Offer, TaskInfo, TaskState, TaskStatus
from tests.support import init_state_dir

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Proc:
    """One subprocess and its log."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def signal(self, sig: int) -> None:
        if self.alive:
            os.kill(self.proc.pid, sig)

    async def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        await self.proc.wait()

    async def terminate(self, within: float = 15.0) -> int:
        """SIGTERM (SIGCONT first, in case it is stopped), then SIGKILL after ``within`` seconds."""
        if self.alive:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), within)
            except TimeoutError:
                await self.kill9()
        assert self.proc.returncode is not None
        return self.proc.returncode

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


class Procs:
    """Starts subprocesses; :meth:`close` stops every one still alive."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Proc] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EDGERM_")}
        self.env |= {"HOME": str(tmp), "XDG_STATE_HOME": str(tmp / "xdg-state"), "PYTHONPATH": str(ROOT)}

    async def spawn(self, name: str, *args: str) -> Proc:
        log = self.tmp / f"{name}-{len(self.started)}.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *args, cwd=ROOT, env=self.env, stdout=out, stderr=asyncio.subprocess.STDOUT
            )
        p = Proc(name, proc, log)
        self.started.append(p)
        return p

    async def agent(self, master_url: str, work_dir: Path, config: Path) -> Proc:
        return await self.spawn(
            "agent",
            "-m",
            "edgerm.agent.main",
            "--master",
            master_url,
            "--work-dir",
            str(work_dir),
            "--config",
            str(config),
        )

    async def secure(self) -> str:
        """``edgerm-master init`` once (its state dir is this test's): children get the join and admin
        tokens in their environment; returns the admin token, for this process's own clients."""
        state = self.tmp / "master-state"
        if "EDGERM_TOKEN" not in self.env:
            tokens = await init_state_dir(state)
            self.env["EDGERM_TOKEN"] = tokens["admin_token"]
            self.env["EDGERM_JOIN_TOKEN"] = tokens["join_token"]
        return self.env["EDGERM_TOKEN"]

    async def master(self, port: int, *extra: str) -> Proc:
        await self.secure()
        return await self.spawn(
            "master",
            "-m",
            "edgerm.master.main",
            "--state-dir",
            str(self.tmp / "master-state"),
            "--port",
            str(port),
            "--no-coap",
            "--no-broker",
            "--allocation-interval",
            "0.05",
            *extra,
        )

    async def close(self) -> None:
        for p in self.started:
            await p.terminate()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} (pid {p.pid}, exit {p.proc.returncode}) ---\n{p.output()}" for p in self.started
        )


class Recorder(Framework):
    """Launches ``tasks`` (made from the first offer that holds them all), records every status."""

    name = "chaos"

    def __init__(self, make: list[TaskInfo] | None = None) -> None:
        self.make = make
        self.launched = False
        self.statuses: list[TaskStatus] = []

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        if self.launched or not self.make:
            await driver.decline([o.id for o in offers], refuse_seconds=60)
            return
        self.launched = True
        first, *rest = offers
        tasks = [dataclasses.replace(t, agent_id=first.agent_id) for t in self.make]
        await driver.accept([first.id], tasks)
        if rest:
            await driver.decline([o.id for o in rest], refuse_seconds=60)

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        self.statuses.append(status)

    def of(self, task_id: str) -> list[TaskStatus]:
        """The task's updates, each uuid once (delivery is at least once), in arrival order."""
        seen: dict[str, TaskStatus] = {}
        for s in self.statuses:
            if s.task_id == task_id:
                seen.setdefault(s.uuid or f"no-uuid-{len(seen)}", s)
        return list(seen.values())

    def states(self, task_id: str) -> list[TaskState]:
        return [s.state for s in self.of(task_id)]

    def latest(self, task_id: str) -> TaskState | None:
        states = self.states(task_id)
        return states[-1] if states else None

    def all_in(self, task_ids: Iterable[str], state: TaskState) -> bool:
        return all(self.latest(t) is state for t in task_ids)
