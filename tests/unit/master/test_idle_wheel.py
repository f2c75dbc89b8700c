"""IdleWheel: one timer for many idle timeouts; never early, at most a slot late, and no timer while empty."""

from __future__ import annotations

import asyncio

from edgerm.master.idle_wheel import SLOTS, Idles, IdleWheel

TIMEOUT = 0.2


class Item:
    def __init__(self) -> None:
        self.idle_slot: set[Idles] | None = None
        self.expired_at: float | None = None

    def expire(self) -> None:
        self.expired_at = asyncio.get_running_loop().time()


async def test_an_idle_item_expires_after_the_timeout_and_at_most_a_slot_later() -> None:
    loop = asyncio.get_running_loop()
    wheel = IdleWheel(TIMEOUT)
    items = []
    for _ in range(5):  # touched at different phases of the wheel
        item = Item()
        wheel.touch(item)
        items.append((item, loop.time()))
        await asyncio.sleep(TIMEOUT / SLOTS / 3)
    async with asyncio.timeout(5):
        while any(i.expired_at is None for i, _ in items):  # noqa: ASYNC110 (what is tested is the timing)
            await asyncio.sleep(0.01)
    for item, touched in items:
        assert item.expired_at is not None
        assert TIMEOUT <= item.expired_at - touched < TIMEOUT * (1 + 1 / SLOTS) + 0.15
    assert len(wheel) == 0 and wheel._timer is None  # nothing held: no timer


async def test_an_item_touched_often_never_expires_and_a_forgotten_one_never_does() -> None:
    wheel = IdleWheel(TIMEOUT)
    busy, forgotten, idle = Item(), Item(), Item()
    for item in (busy, forgotten, idle):
        wheel.touch(item)
    wheel.forget(forgotten)
    assert forgotten.idle_slot is None
    for _ in range(int(3 * TIMEOUT / 0.02)):
        wheel.touch(busy)
        await asyncio.sleep(0.02)
    assert idle.expired_at is not None
    assert busy.expired_at is None and forgotten.expired_at is None
    assert len(wheel) == 1
    wheel.close()


async def test_a_touch_moves_an_item_only_once_per_turn() -> None:
    wheel = IdleWheel(60.0)
    item = Item()
    wheel.touch(item)
    slot = item.idle_slot
    for _ in range(100):
        wheel.touch(item)
    assert item.idle_slot is slot and len(wheel) == 1
    wheel.close()
