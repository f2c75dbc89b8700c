"""A small real cluster for the agent-transport contract: a recording framework and polling helpers.

``Recorder`` is a real framework (run by the real ``HttpDriver``) that keeps
the offers it is given until a test uses or declines them, and records every
status, rescind and agent loss, so tests wait for facts instead of sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from edgerm.agent.config import AgentConfig, ResourceCaps
from edgerm.frameworks import Framework, FrameworkDriver, HttpDriver
from edgerm.ids import AgentId, FrameworkId, OfferId
from edgerm.master.main import RunningMaster
from edgerm.model import Offer, TaskState, TaskStatus

WAIT = 15.0  # generous bound on loopback; tests wait for conditions, never for fixed times
WASM = Path(__file__).resolve().parents[2] / "examples" / "wasm"
TRANSPORTS = ["http", "coap"]
#: A fast agent: heartbeats every 0.2 s (lost after 0.6 s of silence), wasm only.
FAST = AgentConfig(heartbeat_interval=0.2, executors=frozenset({"wasm"}), resources=ResourceCaps(cpus=2, mem=1024))


def agent_url(master: RunningMaster, transport: str) -> str:
    """The URL an agent of this transport is given."""
    if transport == "http":
        return master.url
    assert master.coap_url is not None, "the master was started without CoAP"
    return master.coap_url


class Recorder(Framework):
    """Holds offers, records what happens; tests act through ``driver``."""

    name = "contract"

    def __init__(self) -> None:
        self.driver: FrameworkDriver | None = None
        self.offers: dict[OfferId, Offer] = {}
        self.offered: list[Offer] = []  # every offer ever received, in order
        self.statuses: list[TaskStatus] = []
        self.rescinded: list[OfferId] = []
        self.lost: list[AgentId] = []
        self.errors: list[tuple[str, str]] = []
        self._changed = asyncio.Event()

    def _poke(self, driver: FrameworkDriver) -> None:
        self.driver = driver
        self._changed.set()

    async def registered(self, driver: FrameworkDriver, framework_id: str, master_id: str) -> None:
        self._poke(driver)

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        for offer in offers:
            self.offers[offer.id] = offer
            self.offered.append(offer)
        self._poke(driver)

    async def offer_rescinded(self, driver: FrameworkDriver, offer_id: OfferId) -> None:
        self.offers.pop(offer_id, None)
        self.rescinded.append(offer_id)
        self._poke(driver)

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        self.statuses.append(status)
        self._poke(driver)

    async def agent_lost(self, driver: FrameworkDriver, agent_id: AgentId) -> None:
        self.lost.append(agent_id)
        self._poke(driver)

    async def error(self, driver: FrameworkDriver, code: str, message: str) -> None:
        self.errors.append((code, message))
        self._poke(driver)

    # -- waiting ---------------------------------------------------------------------

    async def until(self, check: Callable[[], Any], within: float = WAIT) -> Any:
        """Wait until ``check()`` returns something true, and return it."""
        async with asyncio.timeout(within):
            while True:
                self._changed.clear()
                result = check()
                if result:
                    return result
                await self._changed.wait()

    async def take_offer(self, agent_id: AgentId) -> Offer:
        """Wait for an offer of this agent's resources and take it out of the held ones."""

        def find() -> Offer | None:
            return next((o for o in self.offers.values() if o.agent_id == agent_id), None)

        offer: Offer = await self.until(find)
        del self.offers[offer.id]
        return offer

    async def wait_state(self, task_id: str, state: TaskState) -> TaskStatus:
        def find() -> TaskStatus | None:
            return next((s for s in self.statuses if s.task_id == task_id and s.state is state), None)

        status: TaskStatus = await self.until(find)
        return status

    def states(self, task_id: str) -> list[TaskState]:
        return [s.state for s in self.statuses if s.task_id == task_id]

    def act(self) -> FrameworkDriver:
        assert self.driver is not None, "not subscribed yet"
        return self.driver


@asynccontextmanager
async def running(
    framework: Recorder, master: RunningMaster, *, teardown: bool = True, framework_id: FrameworkId | None = None
) -> AsyncIterator[HttpDriver]:
    """Run ``framework`` against ``master`` for the block (as ``framework_id`` when given);
    stop it after, with teardown unless told otherwise."""
    driver = HttpDriver(framework, master.url, framework_id=framework_id)
    task = asyncio.create_task(driver.run())
    try:
        await framework.until(lambda: framework.driver is not None)
        yield driver
    finally:
        await driver.stop(teardown=teardown)
        await asyncio.gather(task, return_exceptions=True)
