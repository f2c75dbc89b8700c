"""``plan_against``: compile a DAG against the offers a master makes, launching nothing.

A :class:`PlanProbe` framework subscribes, holds the offers it receives for
up to ``wait`` seconds (less once they place the whole DAG), compiles the
DAG against them, gives every offer back (no refusal filter, so other
frameworks see them again at once) and tears itself down.

Rules: it never accepts; the plan reflects the resources that were free for
this framework during the wait (other frameworks' holdings are invisible).
"""

from __future__ import annotations

import asyncio
import contextlib

from edgerm.errors import WireError
from edgerm.frameworks.base import Framework
from edgerm.frameworks.driver import FrameworkDriver
from edgerm.frameworks.http_driver import HttpDriver
from edgerm.ids import OfferId
from edgerm.model import Offer
from edgerm.scheduler import LOCALITY, Dag, Plan, Policy, Snapshot, compile_dag


class PlanProbe(Framework):
    """Collects offers and compiles the DAG against them; accepts nothing."""

    name = "dataflow-plan"

    def __init__(self, dag: Dag, policy: Policy = LOCALITY) -> None:
        self.dag = dag
        self.policy = policy
        self.held: dict[OfferId, Offer] = {}
        self.complete = asyncio.Event()

    def plan(self) -> Plan:
        return compile_dag(self.dag, Snapshot.from_offers(self.held.values()), self.policy)

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        self.held.update({o.id: o for o in offers})
        if self.plan().complete:
            self.complete.set()

    async def offer_rescinded(self, driver: FrameworkDriver, offer_id: OfferId) -> None:
        self.held.pop(offer_id, None)


async def plan_against(dag: Dag, master_url: str, *, wait: float = 3.0, policy: Policy = LOCALITY) -> Plan:
    """The plan the master's current offers allow (raises the driver's ``WireError``)."""
    probe = PlanProbe(dag, policy)
    driver = HttpDriver(probe, master_url, name=f"dataflow-plan:{dag.name}", max_retries=3)
    run = asyncio.create_task(driver.run())
    done = asyncio.create_task(probe.complete.wait())
    try:
        await asyncio.wait([run, done], timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        if run.done():
            run.result()  # the subscription failed: raise its error
        plan = probe.plan()
        if probe.held:
            with contextlib.suppress(WireError):
                await driver.decline(list(probe.held), refuse_seconds=0)
        return plan
    finally:
        done.cancel()
        with contextlib.suppress(WireError):
            await driver.stop(teardown=True)
        await asyncio.wait([run, done])
