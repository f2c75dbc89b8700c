"""A base for the benchmark frameworks (kept apart from _common.py, which imports nothing of edgerm)."""

from __future__ import annotations

from edgerm.frameworks import Framework, FrameworkDriver, supports
from edgerm.model import Offer


class OfferHolder(Framework):
    """Holds the offers for its ``executor`` (declining the others for an hour) and calls ``_launch`` after
    each batch of offers; a rescinded offer leaves ``held``."""

    executor = "wasm"

    def __init__(self) -> None:
        self.held: dict[str, Offer] = {}

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        for o in offers:
            if supports(o, self.executor):
                self.held[o.id] = o
            else:
                await driver.decline([o.id], refuse_seconds=3600)
        await self._launch(driver)

    async def offer_rescinded(self, driver: FrameworkDriver, offer_id: str) -> None:
        self.held.pop(offer_id, None)

    async def _launch(self, driver: FrameworkDriver) -> None:
        raise NotImplementedError
