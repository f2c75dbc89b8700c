"""Taking an instance slot over: the retained claim, and reading the slot's claim and checkpoint.

Shared by everything that runs an operator instance under the slot's persistent session (the agent's
:class:`~.host.OperatorHost` and the Python operator SDK; docs/dataflow.md "Delivery"):

- Before it first takes the slot's session, an instance publishes a retained **claim** (:func:`claim`,
  ``{"task", "t", "run"}``) on the slot's claim topic, unless a later instance's is there already; once
  the session is its own it reads the checkpoint (and claims again, in case the first did not get
  through).
- A running instance watches the claim topic on its session (QoS 0); when a later claim arrives it stops
  processing and disconnects cleanly, leaving what it has not acknowledged in the session. A new
  instance that replaced another's claim waits ``HANDOVER_WAIT`` before it takes the session, so a live
  old instance has let it go by then and no broker take-over is needed: amqtt's take-over (0.12) leaves
  the old connection open and can lose the acknowledgements of what the new one sends right after it.
  An instance that reconnects also reads the claim first.
- Before it reconnects, it reads the claim again; when a later instance holds it (:func:`later`), it gives
  the slot up instead of taking the session back.
- :func:`read_slot` reads both on a connection of its own: the slot's session may hold a full window of
  unacknowledged inputs, behind which the broker would queue them. A probe the reader publishes to itself
  after subscribing comes back after the retained messages, so its arrival means "that is all".
"""

from __future__ import annotations

import asyncio
import json
import logging

from edgerm.agent.dataflow import mqtt
from edgerm.agent.dataflow.contract import OperatorConfig
from edgerm.agent.dataflow.delivery import Checkpoint, decode_checkpoint
from edgerm.errors import MalformedMessage, MessageTooLarge

log = logging.getLogger(__name__)

#: Seconds to wait for the probe to come back before going on without a checkpoint.
RESTORE_WAIT = 5.0
#: Seconds a new instance gives the instance whose claim it replaced to see the new claim and let the
#: session go, before it takes the session (a take-over that is not needed is not made).
HANDOVER_WAIT = 0.5
PROBE = b"\x00probe "

#: A slot's claim: the task holding it and when that instance started.
Claim = tuple[str, float]


def claim(task_id: str, started: float, run: str) -> bytes:
    """The retained claim an instance publishes on its slot's claim topic."""
    return json.dumps({"task": task_id, "t": started, "run": run}).encode()


def parse_claim(data: bytes, run: str) -> Claim | None:
    """A claim of this ``run``, or ``None`` (another run's, or not a claim)."""
    try:
        body = json.loads(data)
        if str(body.get("run", "")) != run:
            return None
        return str(body["task"]), float(body["t"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def later(held: Claim | None, task_id: str, started: float) -> bool:
    """Whether ``held`` (the slot's claim) is a later instance's than (``task_id``, ``started``)."""
    if held is None:
        return False
    task, t = held
    return task != task_id and (t, task) >= (started, task_id)


async def read_slot(
    config: OperatorConfig, task_id: str, *, state: bool, claim: bytes = b"", wait: float = RESTORE_WAIT
) -> tuple[Claim | None, Checkpoint | None]:
    """The slot's retained claim and (with ``state``) this run's checkpoint, read on a connection of its own.

    ``claim`` (this instance's): published, retained, after the read unless the claim read is a later
    instance's (publishing it again is harmless). The claim returned is the one read before.

    Raises ``aiomqtt.MqttError`` when the broker cannot be reached; a broker that does not answer within
    ``wait`` seconds gives what was read so far (logged).
    """
    held: Claim | None = None
    found: Checkpoint | None = None
    probe = PROBE + task_id.encode()
    reader = mqtt.client(config.broker, f"{config.client_id}-r", persistent=False, manual_ack=False)
    try:
        async with reader, asyncio.timeout(wait):
            await reader.subscribe(config.claim_topic, qos=1)
            if state:
                await reader.subscribe(config.state_topic, qos=1)
            await reader.subscribe(config.probe_topic, qos=1)
            await reader.publish(config.probe_topic, probe, qos=1)
            async for message in reader.messages:
                payload = message.payload
                data = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
                topic = str(message.topic)
                if topic == config.probe_topic and data == probe:
                    break
                if not message.retain:
                    continue
                if topic == config.claim_topic:
                    held = parse_claim(data, config.run) or held
                elif topic == config.state_topic and data.startswith(b'{"v":'):
                    try:
                        candidate = decode_checkpoint(data)
                    except (MalformedMessage, MessageTooLarge) as e:
                        log.warning("dataflow task %s: the checkpoint is not usable: %s", task_id, e)
                        continue
                    found = candidate if candidate.run == config.run else None
            mine = parse_claim(claim, config.run) if claim else None
            if mine is not None and not later(held, *mine):
                await reader.publish(config.claim_topic, claim, qos=1, retain=True)
    except TimeoutError:
        log.warning("dataflow task %s: no answer from the broker's retained messages; going on", task_id)
    finally:
        mqtt.settle(reader)
    return held, found
