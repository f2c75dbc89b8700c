"""The MQTT broker the master names to agents for the dataflow data plane.

Agents learn the broker URL in REGISTERED (``ServiceOptions.broker_url``);
dataflow operators connect to it outwards, so no agent needs an open port.
Three choices (``edgerm-master`` flags, ``start_master(broker=...)``):

- ``embedded`` (the command line's default): an amqtt broker in the master's
  event loop, on ``--broker-port`` (1883; 0 = ephemeral) of ``--host``. The
  demo needs nothing installed. Anonymous clients are allowed; it is meant
  for a trusted network (as the master's own API is).
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

import logging
import socket
from typing import Any
from urllib.parse import urlsplit

from edgerm.errors import ConfigError

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
DEFAULT_BROKER_PORT = 1883
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

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_BROKER_PORT) -> None:
        self.host = host
        self.port = port
        self._broker: Any = None

    @property
    def url(self) -> str:
        return broker_url(self.host, self.port)

    async def start(self) -> None:
        """Bind and serve; ``port`` holds the bound port afterwards. Raises OSError if it cannot bind."""
        from amqtt.broker import Broker, BrokerError

        if not log.isEnabledFor(logging.DEBUG):
            # amqtt logs every connection at INFO, and its state machines (transitions) every step.
            for name in ("amqtt", "transitions"):
                logging.getLogger(name).setLevel(logging.WARNING)
        bind_host = self.host if self.host else "0.0.0.0"
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{bind_host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
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
            await broker.shutdown()


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

        async def stream_connected(self, reader: Any, writer: Any, listener_name: str) -> None:
            try:
                await super().stream_connected(reader, writer, listener_name)
            finally:
                writer.close()

    return ClosingBroker
