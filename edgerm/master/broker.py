"""The MQTT broker the master names to agents for the dataflow data plane.

Agents learn the broker URL in REGISTERED (``ServiceOptions.broker_url``);
dataflow operators connect to it outwards, so no agent needs an open port.
Three choices (``edgerm-master`` flags, ``start_master(broker=...)``):

- ``embedded`` (the command line's default): an amqtt broker in the master's
  event loop, on ``--broker-port`` (1883; 0 = ephemeral) of ``--host``. The
  demo needs nothing installed. On a secure master every client logs in and
  each login reaches only its own topics (a :class:`~edgerm.master.broker_gate.BrokerGate`);
  an ``--insecure`` master's broker takes anonymous clients.
- an ``mqtt://host:port`` URL: an external broker (mosquitto for a fleet, a
  clustered broker beyond one machine); nothing is embedded.
- none (``--no-broker``): agents get an empty URL and dataflow tasks fail
  unless they name a broker themselves.

Rules: the URL named to agents uses the bound port (an ephemeral one once
known) and ``--host``, or this machine's hostname when ``--host`` is a
wildcard address (agents elsewhere cannot reach 0.0.0.0). amqtt is
imported only when a broker is embedded. Its per-connection INFO logging
(and that of its state machine library, transitions) is lowered to WARNING
unless this module logs at DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any
from urllib.parse import urlsplit

from edgerm.errors import ConfigError
from edgerm.master.broker_gate import Access, BrokerGate, Grant

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
DEFAULT_BROKER_PORT = 1883
STOP_TIMEOUT = 5.0  # seconds a stop waits for amqtt's shutdown
_WILDCARDS = ("", "0.0.0.0", "::")


def check_broker_url(url: str) -> str:
    """``url`` if it is ``mqtt://host[:port]``; raises ConfigError otherwise."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as e:
        raise ConfigError(f"broker: {url!r} is not a URL: {e}") from None
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ConfigError(f"broker: {url!r} is not mqtt://host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"broker: {url!r}: only mqtt://host:port is understood")
    return url


def broker_url(host: str, port: int) -> str:
    """The URL agents use for a broker bound to ``host:port``."""
    if host in _WILDCARDS:
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"mqtt://{host}:{port}"


class EmbeddedBroker:
    """An amqtt broker running in this event loop; :meth:`start`, then :meth:`stop`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_BROKER_PORT,
        gate: BrokerGate | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        """``gate``: require logins and enforce its ACLs (None: anonymous clients, any topic).
        ``tls``: (certfile, keyfile) to serve MQTT over TLS (``mqtts://``)."""
        self.host = host
        self.port = port
        self.gate = gate
        self.tls = tls
        self._broker: Any = None

    @property
    def url(self) -> str:
        url = broker_url(self.host, self.port)
        return url.replace("mqtt://", "mqtts://", 1) if self.tls else url

    async def start(self) -> None:
        """Bind and serve; ``port`` holds the bound port afterwards. Raises OSError if it cannot bind."""
        from amqtt.broker import Broker, BrokerError

        if not log.isEnabledFor(logging.DEBUG):
            # amqtt logs every connection at INFO, and its state machines (transitions) every step.
            for name in ("amqtt", "transitions"):
                logging.getLogger(name).setLevel(logging.WARNING)
        bind_host = self.host if self.host else "0.0.0.0"
        listener: dict[str, Any] = {"type": "tcp", "bind": f"{bind_host}:{self.port}"}
        if self.tls is not None:
            listener.update(ssl=True, certfile=self.tls[0], keyfile=self.tls[1])
        plugins: dict[str, Any] = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
        if self.gate is not None:
            _GATES[id(self.gate)] = self.gate
            plugins = {
                f"{__name__}.GateAuth": {"gate": id(self.gate)},
                f"{__name__}.GateTopics": {"gate": id(self.gate)},
            }
        config = {"listeners": {"default": listener}, "plugins": plugins}
        broker = _closing_broker(Broker)(config)
        try:
            await broker.start()
        except BrokerError as e:
            cause = e.__cause__
            if isinstance(cause, OSError):
                raise OSError(cause.errno, f"MQTT broker on {bind_host}:{self.port}: {cause.strerror}") from None
            raise OSError(f"MQTT broker on {bind_host}:{self.port}: {e}") from None
        self._broker = broker
        # amqtt keeps its asyncio servers by listener name; the bound port is only known there.
        server = broker._servers["default"].instance
        self.port = int(server.sockets[0].getsockname()[1])
        log.info("embedded MQTT broker on %s", self.url)

    async def stop(self) -> None:
        """Close every client session and the listener (idempotent)."""
        broker, self._broker = self._broker, None
        if broker is not None:
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await broker.shutdown()
            except TimeoutError:
                # amqtt waits for each client handler to end; one stuck must not hold the master's stop.
                log.warning("embedded MQTT broker: shutdown took over %gs; closing its listener", STOP_TIMEOUT)
                for server in broker._servers.values():
                    server.instance.close()
        if self.gate is not None:
            _GATES.pop(id(self.gate), None)


# -- logins and ACLs: amqtt plugins over a BrokerGate ---------------------------------------

#: Gates of the running embedded brokers, by id: amqtt builds plugins from a config of plain values.
_GATES: dict[int, BrokerGate] = {}
_GRANT = "_edgerm_grant"  # the session attribute a login's grant is kept in
_MAX_DENIALS_LOGGED = 1000


def _plugin_bases() -> tuple[Any, Any]:
    from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

    return BaseAuthPlugin, BaseTopicPlugin


def _gate_plugins() -> tuple[type, type]:
    auth_base, topic_base = _plugin_bases()
    from dataclasses import dataclass

    @dataclass
    class Config:
        gate: int = 0

    class _GateAuth(auth_base):  # type: ignore[misc,valid-type]
        """Every CONNECT logs in through the gate; its grant stays on the session."""

        def __init__(self, context: Any) -> None:
            super().__init__(context)
            self.gate: BrokerGate = _GATES[self.config.gate]

        async def authenticate(self, *, session: Any) -> bool:
            password = session.password
            if isinstance(password, bytes):
                password = password.decode(errors="replace")
            grant = self.gate.login(session.username, password)
            if grant is None:
                log.info("broker: login refused for client %s (user %r)", session.client_id, session.username)
                return False
            setattr(session, _GRANT, grant)
            # amqtt keeps offline messages only for sessions that are not anonymous; with them, its
            # broadcasts to our manual-ack clients time out waiting for PUBACKs and are dropped with an
            # ERROR each ("Task failed and will be skipped"), which broke the quality switch. Logged-in
            # sessions keep amqtt's anonymous handling: no offline queue (docs/dataflow.md, "On the
            # embedded amqtt broker"); mosquitto is the broker for moves that must lose nothing.
            session.is_anonymous = True
            log.debug("broker: %s logged in as client %s", grant.who, session.client_id)
            return True

    class _GateTopics(topic_base):  # type: ignore[misc,valid-type]
        """SUBSCRIBE, PUBLISH and each delivery are checked against the session's grant."""

        def __init__(self, context: Any) -> None:
            super().__init__(context)
            self._denied: set[tuple[str, str, str]] = set()

        async def topic_filtering(self, *, session: Any = None, topic: str | None = None, action: Any = None) -> bool:
            grant: Grant | None = getattr(session, _GRANT, None)
            if grant is None or topic is None or action is None:
                return False
            access = Access(str(action.value if hasattr(action, "value") else action))
            if grant.may(access, topic):
                return True
            key = (grant.who, access.value, topic)
            if key not in self._denied and len(self._denied) < _MAX_DENIALS_LOGGED:
                self._denied.add(key)  # one line per who, action and topic
                log.info("broker: %s may not %s %s", grant.who, access.value, topic)
            return False

    _GateAuth.Config = Config
    _GateTopics.Config = Config
    return _GateAuth, _GateTopics


def __getattr__(name: str) -> Any:
    """``GateAuth`` and ``GateTopics``, built on first use (amqtt is imported only with an embedded broker)."""
    if name in ("GateAuth", "GateTopics"):
        auth, topics = _gate_plugins()
        globals().update(GateAuth=auth, GateTopics=topics)
        return globals()[name]
    raise AttributeError(name)


class _SnapshotDict(dict[str, Any]):
    """A dict whose iteration walks a copy of its keys (or items).

    amqtt 0.12 iterates its subscription table and awaits inside the loop
    (when a client connects it publishes retained messages per topic; each
    broadcast awaits topic checks per subscriber). A client subscribing or
    leaving meanwhile changes the table's size, and the iteration raises
    ``RuntimeError: dictionary changed size during iteration`` inside the
    connecting client's handler, which then never gets its messages. Walking
    a snapshot makes those loops see the table as it was when they began.
    """

    def __iter__(self) -> Any:
        return iter(list(super().__iter__()))

    def items(self) -> Any:
        return list(super().items())

    def keys(self) -> Any:
        return list(super().keys())

    def values(self) -> Any:
        return list(super().values())


def _closing_broker(base: Any) -> Any:
    """amqtt's Broker, closing each client's stream when its session ends, with
    a subscription table that is safe to change while amqtt iterates it
    (:class:`_SnapshotDict`).

    amqtt 0.12 leaves the server side of a finished connection for the
    garbage collector (a ResourceWarning each, under ``-X dev``); closing it
    here frees the socket at once.
    """

    class ClosingBroker(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._subscriptions: dict[str, Any] = _SnapshotDict(self._subscriptions)

        async def _publish_retained_messages_for_subscription(
            self, subscription: tuple[str, int], session: Any
        ) -> None:
            """Retained messages for one of ``session``'s own subscriptions, each checked as a delivery.

            amqtt 0.12 calls this at connect for every session's filters, and
            delivers retained messages unchecked; here a session gets only
            what matches its own filters and what it may receive.
            """
            from amqtt.contexts import Action

            topic_filter, qos = subscription
            own = self._subscriptions.get(topic_filter, ())
            if not any(s.client_id == session.client_id for s, _ in own):
                return
            handler = self._get_handler(session)
            if handler is None:
                return
            sends = []
            for topic, retained in list(self._retained_messages.items()):
                if self._matches(topic, topic_filter) and await self._topic_filtering(
                    session, topic=topic, action=Action.RECEIVE
                ):
                    level = min(qos, retained.qos or qos)
                    sends.append(asyncio.ensure_future(handler.mqtt_publish(topic, retained.data, level, retain=True)))
            if sends:
                await asyncio.wait(sends)
                for send in sends:  # a client gone or slow to acknowledge: its session retries, nothing to log
                    if not send.cancelled() and send.exception() is not None:
                        log.debug("broker: retained %s to %s: %r", topic_filter, session.client_id, send.exception())

        async def stream_connected(self, reader: Any, writer: Any, listener_name: str) -> None:
            try:
                await super().stream_connected(reader, writer, listener_name)
            finally:
                writer.close()

    return ClosingBroker
