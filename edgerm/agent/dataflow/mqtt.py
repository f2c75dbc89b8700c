"""The one place the data plane connects to the MQTT broker.

:func:`client` builds every operator instance's connection; broker credentials, TLS and the like belong
here and nowhere else. Rules:

- An instance slot has a stable client id (``OperatorConfig.client_id``) and a persistent session (clean
  session off), so the broker keeps its subscriptions and queues QoS 1 messages while no instance is
  connected; a replacement with the same id takes the session over.
- Acknowledgements are manual: the host acknowledges an input message (:func:`ack`) only once what came of it
  is published. aiomqtt 2.5 has no API for this, so it is reached through its paho client (paho 2.x
  ``manual_ack_set`` / ``ack``), in this module only.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from edgerm.agent.dataflow.contract import Broker
from edgerm.errors import ConfigError

KEEPALIVE = 10  # seconds; a dead broker connection is noticed within ~1.5x this
CONNECT_TIMEOUT = 10.0
#: QoS 1 messages the client keeps in flight towards the broker.
MAX_INFLIGHT = 32

_log = logging.getLogger("edgerm.agent.dataflow.mqtt")


class Client(aiomqtt.Client):
    """aiomqtt's client, remembering whether the broker still held the session (CONNACK's flag), and sending
    without Nagle's delay (paho leaves TCP_NODELAY off: a small PUBLISH then waits for the TCP ACK of the
    PUBACK before it, up to the peer's delayed-ACK timeout, tens of milliseconds per hop)."""

    session_present = False

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        nodelay(sock)
        super()._on_socket_open(client, userdata, sock)

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: Any,
        properties: Any = None,
    ) -> None:
        self.session_present = bool(flags.session_present)
        super()._on_connect(client, userdata, flags, reason_code, properties)


def nodelay(sock: Any) -> None:
    """Turn Nagle's algorithm off on a client's TCP socket (a no-op on anything else)."""
    with contextlib.suppress(OSError, AttributeError, ValueError):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def tls_context(broker: Broker) -> ssl.SSLContext | None:
    """For an ``mqtts://`` broker, a context verifying it against ``broker.ca`` (else the system's store)."""
    if not broker.tls:
        return None
    try:
        return ssl.create_default_context(cafile=broker.ca)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"broker CA {broker.ca}: {e}") from None


def client(
    broker: Broker,
    client_id: str,
    *,
    persistent: bool = True,
    manual_ack: bool = True,
    will: aiomqtt.Will | None = None,
) -> Client:
    """An unconnected client for ``broker`` (enter it with ``async with``); ``will``: its last will."""
    made = Client(
        broker.host,
        broker.port,
        identifier=client_id,
        username=broker.username,
        password=broker.password,
        tls_context=tls_context(broker),
        clean_session=not persistent,
        keepalive=KEEPALIVE,
        timeout=CONNECT_TIMEOUT,
        max_inflight_messages=MAX_INFLIGHT,
        will=will,
        logger=_log,
    )
    if manual_ack:
        made._client.manual_ack_set(True)
    return made


def ack(connection: aiomqtt.Client, mid: int) -> None:
    """Acknowledge one QoS 1 message received on ``connection`` (sends its PUBACK)."""
    connection._client.ack(mid, 1)


def settle(connection: aiomqtt.Client) -> None:
    """Take note of how a finished connection ended, so an unexpected drop is not logged as an unretrieved
    future ("Future exception was never retrieved") when nothing was iterating its messages at the time."""
    ended = connection._disconnected
    if ended.done() and not ended.cancelled():
        ended.exception()
