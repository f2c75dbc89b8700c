"""A small framework run as its own process by the framework chaos test.

::

    python tests/chaos/framework_proc.py MASTER_URL ID_FILE OUT launch N   # launch N long tasks, run until killed
    python tests/chaos/framework_proc.py MASTER_URL ID_FILE OUT reclaim    # reclaim them, kill them, exit 0

It runs through ``edgerm.frameworks.run`` with ``framework_id_file``, so the
second process subscribes as the first one. Every event it gets is written
to OUT as one JSON line (flushed), for the test to read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import IO

from edgerm.frameworks import Framework, FrameworkDriver, run, supports, wasm_task
from edgerm.ids import FrameworkId, TaskId
from edgerm.model import Offer, TaskState, TaskStatus
from tests.chaos_support import sleep_module


class Chaos(Framework):
    name = "chaos-framework"

    def __init__(self, out: IO[str], mode: str, count: int) -> None:
        self.out = out
        self.mode = mode
        self.count = count
        self.launched = mode != "launch"
        self.killing: set[TaskId] = set()
        self.killed: set[TaskId] = set()
        self.module = sleep_module(120.0) if mode == "launch" else b""

    def note(self, **record: object) -> None:
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    async def registered(self, driver: FrameworkDriver, framework_id: FrameworkId, master_id: str) -> None:
        self.note(registered=framework_id)
        if self.mode == "reclaim":
            await driver.reconcile()  # implicit: every task of this framework

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        if self.launched or not supports(offers[0], "wasm"):
            await driver.decline([o.id for o in offers], refuse_seconds=60)
            return
        self.launched = True
        offer = offers[0]
        tasks = [wasm_task(offer, f"reclaim-{n}", self.module) for n in range(self.count)]
        await driver.accept([offer.id], tasks)

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        self.note(task=status.task_id, state=status.state.value, reason=status.reason.value, uuid=status.uuid)
        if self.mode != "reclaim":
            return
        if status.state is TaskState.RUNNING and status.task_id not in self.killing:
            self.killing.add(status.task_id)
            await driver.kill(status.task_id, status.agent_id)
        elif status.state.terminal:
            self.killed.add(status.task_id)
            if self.killing and self.killed >= self.killing:
                await driver.stop()


def main() -> int:
    url, id_file, out_path, mode, *rest = sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with open(out_path, "a", encoding="utf-8") as out:
        fw = Chaos(out, mode, int(rest[0]) if rest else 0)
        asyncio.run(run(fw, url, framework_id_file=id_file, failover_timeout=300.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
