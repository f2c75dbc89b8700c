"""Taking an instance slot over: the retained claim, and reading the slot's claim and checkpoint.

Shared by everything that runs an operator instance under the slot's persistent session (the agent's
:class:`~.host.OperatorHost` and the Python operator SDK; docs/dataflow.md "Delivery"):

- Before it first takes the slot's session, an instance publishes a retained **claim** (:func:`claim`,
  ``{"task", "t", "run"}``) on the slot's claim topic, unless a later instance's is there already; once
  the session is its own it reads the checkpoint (and claims again, in case the first did not get
  through).
- A running instance watches the claim topic on its session (QoS 0); when a later claim arrives it stops
  processing, publishes a retained **release** (``RELEASED`` + its task id) on the slot's probe topic and
  disconnects cleanly, leaving what it has not acknowledged in the session. The same release is its
  session's last will, so the broker publishes it when the instance dies. A new instance that replaced
  another's claim waits for that instance's release, at most ``HANDOVER_WAIT``, before it takes the
  session: a live or dead old instance has let the session go by then and no broker take-over is needed
  (only one partitioned or frozen costs the wait). amqtt's take-over (0.12) leaves the old connection
  open and can lose the acknowledgements of what the new one sends right after it.
  An instance that reconnects also reads the claim first, and once connected removes the retained release
  (its will may have published it while it was away).
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

import aiomqtt

from edgerm.agent.dataflow import mqtt
from edgerm.agent.dataflow.contract import OperatorConfig
from edgerm.agent.dataflow.delivery import Checkpoint, decode_checkpoint
from edgerm.errors import MalformedMessage, MessageTooLarge

log = logging.getLogger(__name__)

#: Seconds to wait for the probe to come back before going on without a checkpoint.
RESTORE_WAIT = 5.0
#: Seconds a new instance waits for the release of the instance whose claim it replaced before it takes the
#: session anyway (that instance is partitioned or frozen: the broker's take-over ends its connection).
HANDOVER_WAIT = 1.0
RELEASED = b"\x00released "
PROBE = b"\x00probe "

#: A slot's claim: the task holding it and when that instance started.
Claim = tuple[str, float]


def claim(task_id: str, started: float, run: str) -> bytes:
    """The retained claim an instance publishes on its slot's claim topic."""
    return json.dumps({"task": task_id, "t": started, "run": run}).encode()


def release(config: OperatorConfig, task_id: str) -> aiomqtt.Will:
    """The retained message saying ``task_id``'s instance let the slot's session go (also its last will)."""
    return aiomqtt.Will(config.probe_topic, RELEASED + task_id.encode(), qos=1, retain=True)


async def publish_release(connection: aiomqtt.Client, config: OperatorConfig, task_id: str) -> None:
    """Say, on the slot's session about to be closed, that ``task_id``'s instance lets it go (bounded: a
    replacement that does not hear it waits ``HANDOVER_WAIT`` at most)."""
    will = release(config, task_id)
    try:
        async with asyncio.timeout(1.0):
            await connection.publish(will.topic, will.payload, qos=will.qos, retain=will.retain)
    except (TimeoutError, aiomqtt.MqttError) as e:
        log.info("slot %s: the release of task %s was not published: %s", config.client_id, task_id, e)


async def subscribe(connection: mqtt.Client, config: OperatorConfig) -> None:
    """Subscribe a slot's session: its inputs at QoS 1 and its claim topic at QoS 0 (a later instance's claim:
    let go), in one SUBSCRIBE. Not sent again on a session the broker kept (it has them): amqtt 0.12
    answered that SUBSCRIBE under a packet id of the session's re-sent messages, and the SUBACK never
    reached the client."""
    if not connection.session_present:
        await connection.subscribe([*((t, 1) for t in config.inputs), (config.claim_topic, 0)])


def is_claim(message: aiomqtt.Message, config: OperatorConfig) -> bool:
    """Whether a message on a slot's session is a claim (the claim topic, subscribed at QoS 0), not an input."""
    return message.qos == 0 and str(message.topic) == config.claim_topic


async def clear_release(connection: aiomqtt.Client, config: OperatorConfig) -> None:
    """Remove the slot's retained release (its holder is connected again after its will was published);
    QoS 0: nothing to acknowledge on a session just resumed."""
    try:
        await connection.publish(config.probe_topic, b"", qos=0, retain=True)
    except aiomqtt.MqttError as e:
        log.debug("slot %s: the release was not cleared: %s", config.client_id, e)


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
    config: OperatorConfig,
    task_id: str,
    *,
    state: bool,
    claim: bytes = b"",
    handover: float = 0.0,
    wait: float = RESTORE_WAIT,
) -> tuple[Claim | None, Checkpoint | None]:
    """The slot's retained claim and (with ``state``) this run's checkpoint, read on a connection of its own.

    ``claim`` (this instance's): published, retained, after the read unless the claim read is a later
    instance's (publishing it again is harmless). The claim returned is the one read before. ``handover``:
    when that claim was another instance's that has not released the slot, wait this long at most for its
    release.

    Raises ``aiomqtt.MqttError`` when the broker cannot be reached; a broker that does not answer within
    ``wait`` seconds gives what was read so far (logged).
    """
    held: Claim | None = None
    found: Checkpoint | None = None
    released: set[bytes] = set()  # the tasks whose instances let the session go
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
                if topic == config.probe_topic and data.startswith(RELEASED):
                    released.add(data[len(RELEASED) :])
                    continue
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
                if handover > 0 and held is not None and held[0] != task_id:
                    await _released(reader, config, held[0].encode(), released, handover)
    except TimeoutError:
        log.warning("dataflow task %s: no answer from the broker's retained messages; going on", task_id)
    finally:
        mqtt.settle(reader)
    return held, found


async def _released(
    reader: aiomqtt.Client, config: OperatorConfig, holder: bytes, released: set[bytes], wait: float
) -> None:
    """Until ``holder``'s release arrives on the probe topic (or it came already), at most ``wait`` seconds."""
    if holder in released:
        return
    try:
        async with asyncio.timeout(wait):
            async for message in reader.messages:
                payload = message.payload
                data = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
                if str(message.topic) == config.probe_topic and data == RELEASED + holder:
                    return
    except TimeoutError:
        log.info(
            "slot %s: task %s did not release it within %.1fs; taking the session over",
            config.client_id,
            holder.decode(errors="replace"),
            wait,
        )
