"""Slot hand-over on real brokers: a replacement waits for the old holder's release, which a dead holder's
last will gives at once; only a holder that is neither released nor gone (partitioned, frozen) costs the wait."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

from edgerm.agent.dataflow import mqtt, slot
from edgerm.agent.dataflow.contract import OperatorConfig, parse_operator
from tests.integration.dataflow_plane.conftest import df_task

REPO = Path(__file__).resolve().parents[3]


def fresh() -> tuple[str, str, str]:
    """A run and two task ids of their own: the module-scoped brokers keep earlier tests' retained messages."""
    tag = uuid.uuid4().hex[:8]
    return f"run-{tag}", f"old-{tag}", f"new-{tag}"


def config_of(broker_url: str, run: str) -> OperatorConfig:
    task = df_task("h", "avg", "operator", "aggregate", broker_url, inputs=("edgerm/t/in/out",), EDGERM_DF_RUN=run)
    return parse_operator(dict(task.environment()))


HOLDER = """
import asyncio, sys
from edgerm.agent.dataflow import mqtt, slot
from tests.integration.dataflow_plane.test_handover import config_of

async def main() -> None:
    config = config_of(sys.argv[1], sys.argv[2])
    async with mqtt.client(config.broker, config.client_id, will=slot.release(config, sys.argv[3])):
        print("connected", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_a_dead_holders_will_releases_the_slot_and_the_replacement_does_not_wait(broker_url: str) -> None:
    run, old, new = fresh()
    config = config_of(broker_url, run)
    await slot.read_slot(config, old, state=False, claim=slot.claim(old, 1.0, config.run))
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, broker_url, run, old, stdout=asyncio.subprocess.PIPE, cwd=REPO
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 20)
        assert line.strip() == b"connected"
    finally:
        holder.kill()  # SIGKILL: no DISCONNECT; the broker sees the socket close and publishes the will
        await holder.wait()
    started = time.monotonic()
    held, _ = await slot.read_slot(config, new, state=False, claim=slot.claim(new, 2.0, config.run), handover=5.0)
    waited = time.monotonic() - started
    assert held == (old, 1.0)
    assert waited < 2.0, f"waited {waited:.2f}s for a slot whose holder died"
    again, _ = await slot.read_slot(config, "probe", state=False)
    assert again == (new, 2.0)  # the new claim is the slot's now


async def test_a_holder_that_neither_released_nor_died_costs_the_whole_wait(broker_url: str) -> None:
    run, old, new = fresh()
    config = config_of(broker_url, run)
    await slot.read_slot(config, old, state=False, claim=slot.claim(old, 1.0, config.run))
    started = time.monotonic()
    held, _ = await slot.read_slot(config, new, state=False, claim=slot.claim(new, 2.0, config.run), handover=0.5)
    waited = time.monotonic() - started
    assert held == (old, 1.0)
    assert 0.5 <= waited < 3.0


async def test_a_later_claim_is_not_overwritten(broker_url: str) -> None:
    run, early, later = fresh()
    config = config_of(broker_url, run)
    await slot.read_slot(config, later, state=False, claim=slot.claim(later, 5.0, config.run))
    held, _ = await slot.read_slot(config, early, state=False, claim=slot.claim(early, 1.0, config.run))
    assert held == (later, 5.0)
    again, _ = await slot.read_slot(config, "probe", state=False)
    assert again == (later, 5.0)


async def test_a_holder_back_after_its_will_clears_its_release(broker_url: str) -> None:
    """Its connection dropped (the will said it let go), it reconnected and holds the slot: a replacement must
    wait for it again, not take the session from under it."""
    run, old, new = fresh()
    config = config_of(broker_url, run)
    await slot.read_slot(config, old, state=False, claim=slot.claim(old, 1.0, config.run))
    async with mqtt.client(config.broker, f"{config.client_id}-w", persistent=False, manual_ack=False) as c:
        will = slot.release(config, old)
        await c.publish(will.topic, will.payload, qos=1, retain=True)  # what the broker published for its will
        await slot.clear_release(c, config)  # back and connected
    started = time.monotonic()
    held, _ = await slot.read_slot(config, new, state=False, claim=slot.claim(new, 2.0, config.run), handover=0.5)
    assert held == (old, 1.0)
    assert time.monotonic() - started >= 0.5
