"""The chaos tests' framework: :class:`Recorder` launches the tasks it is given and records every status.

(The processes themselves are started and reaped by the cluster harness, tests/harness.py.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from edgerm.frameworks import Framework, FrameworkDriver
from edgerm.model import Offer, TaskInfo, TaskState, TaskStatus


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
