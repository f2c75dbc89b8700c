"""The embedded amqtt broker under churn: clients connecting while others
subscribe and leave must all be served (amqtt 0.12 iterates its subscription
table while awaiting; see ``edgerm.master.broker._SnapshotDict``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiomqtt
import pytest

from edgerm.master.broker import EmbeddedBroker


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    b = EmbeddedBroker(port=0)
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


async def _churn(port: int, i: int, stop: asyncio.Event) -> None:
    """Subscribe and unsubscribe filters that match retained messages, until told to stop."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"churn-{i}") as c:
        k = 0
        while not stop.is_set():
            topic = f"retained/{(i * 7 + k) % 50}"
            await c.subscribe(topic, qos=1)
            await c.unsubscribe(topic)
            k += 1


async def _subscriber(port: int, i: int, ready: asyncio.Event) -> int:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"sub-{i}") as c:
        await c.subscribe("data/x", qos=1)
        ready.set()
        async for _message in c.messages:
            return 1
    return 0


async def test_clients_connecting_during_subscription_churn_are_all_served(
    broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="retainer") as c:
        for k in range(50):
            await c.publish(f"retained/{k}", b"r", qos=1, retain=True)  # retained messages make connects await
    for _round in range(3):
        stop = asyncio.Event()
        churn = [asyncio.create_task(_churn(broker.port, i, stop)) for i in range(10)]
        await asyncio.sleep(0.2)
        readies = [asyncio.Event() for _ in range(20)]
        subs = [asyncio.create_task(_subscriber(broker.port, i, readies[i])) for i in range(20)]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 30)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*churn), 30)
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="publisher") as p:
            await p.publish("data/x", b"1", qos=1)
        assert await asyncio.wait_for(asyncio.gather(*subs), 30) == [1] * 20
    failures = [r for r in caplog.records if "changed size during iteration" in r.getMessage() or r.exc_info]
    assert not failures, [r.getMessage() for r in failures]
