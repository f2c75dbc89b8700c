"""``edgerm-master``: the master process, and :func:`start_master` for tests and demos.

Role: the entry point layer. It builds a :class:`MasterService`, the handler
table, the HTTP app and (unless turned off) the CoAP endpoint over the same
table, binds them, and runs until SIGINT/SIGTERM.

Rules:
- Shutdown order: the service stops first (ends every framework stream and
  agent channel, answers UNAVAILABLE to late calls), then the CoAP endpoint
  (every observation gets its final 5.03) and the HTTP server close, so no
  handler is left waiting and nothing is left behind.
- :func:`start_master` binds the port it is given (0 = ephemeral) and reports
  the real one in ``RunningMaster.url``; use it as
  ``async with start_master() as master:`` or ``master = await start_master()``
  (then ``await master.stop()``). CoAP is off unless ``coap_port`` is given
  (0 = ephemeral); its URL is ``RunningMaster.coap_url``. The command line
  serves CoAP on 5683 by default (``--coap-port``, ``--no-coap``), bound to
  ``--host`` only; CoAP over TCP only with ``--coap-tcp``.
- The MQTT broker for dataflows (edgerm.master.broker): the command line
  embeds one on ``--broker-port`` (1883) of ``--host`` unless ``--broker URL``
  names an external one or ``--no-broker``; :func:`start_master` embeds one
  only with ``broker="embedded"`` (on ``broker_port``, 0 = ephemeral). The
  URL agents get is ``RunningMaster.broker_url``. The embedded broker starts
  before the service and stops after everything else.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import resource
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import TracebackType

from aiohttp import web

from edgerm.coap_util import DEFAULT_COAP_PORT
from edgerm.errors import ConfigError, MalformedMessage
from edgerm.lifecycle import Starting
from edgerm.limits import check_id
from edgerm.master.broker import DEFAULT_BROKER_PORT, EMBEDDED, EmbeddedBroker, check_broker_url
from edgerm.master.coap import CoapServer, start_coap_server
from edgerm.master.handlers import Handlers
from edgerm.master.http import DEFAULT_MAX_BODY, make_app
from edgerm.master.service import DEFAULT_MODULE_STORE_BYTES, MasterService, ServiceOptions
from edgerm.master.state import MasterConfig

log = logging.getLogger("edgerm.master")

LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn
GC_THRESHOLDS = (20_000, 50, 100)  # CPython's default is (700, 10, 10); see _serve


class RunningMaster:
    """A master serving HTTP on ``url`` (and CoAP on ``coap_url``) until :meth:`stop` (an async context manager)."""

    def __init__(
        self,
        service: MasterService,
        handlers: Handlers,
        runner: web.AppRunner,
        host: str,
        port: int,
        coap: CoapServer | None = None,
        broker: EmbeddedBroker | None = None,
    ) -> None:
        self.service = service
        self.broker = broker
        self.handlers = handlers
        self.host = host
        self.port = port
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        self.coap = coap
        self._runner = runner
        self._stopped = False

    @property
    def coap_url(self) -> str | None:
        """``coap://host:port`` of the CoAP endpoint, or None when CoAP is off."""
        return self.coap.url if self.coap is not None else None

    @property
    def coap_tcp_url(self) -> str | None:
        """``coap+tcp://host:port`` when the CoAP-over-TCP listener is on."""
        return self.coap.tcp_url if self.coap is not None else None

    @property
    def broker_url(self) -> str:
        """The MQTT broker URL agents get in REGISTERED ("" when there is none)."""
        return self.service.options.broker_url

    async def stop(self) -> None:
        """Stop the service, then the CoAP endpoint, the HTTP server and the embedded broker (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        try:
            await self.service.stop()
        finally:
            try:
                if self.coap is not None:
                    await self.coap.close()
            finally:
                try:
                    await self._runner.cleanup()
                finally:
                    if self.broker is not None:
                        await self.broker.stop()

    async def __aenter__(self) -> RunningMaster:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def start_master(
    host: str = "127.0.0.1",
    port: int = 0,
    config: MasterConfig | None = None,
    *,
    allocation_interval: float = 0.25,
    framework_heartbeat: float = 15.0,
    max_body: int = DEFAULT_MAX_BODY,
    broker_url: str = "",
    module_store_bytes: int = DEFAULT_MODULE_STORE_BYTES,
    access_log: bool = False,
    coap_port: int | None = None,
    coap_tcp: bool = False,
    broker: str | None = None,
    broker_port: int = 0,
) -> Starting[RunningMaster]:
    """Start a master on ``host:port`` (0 = an ephemeral port).

    ``coap_port``: None = no CoAP endpoint, 0 = an ephemeral UDP port, else
    that port on ``host``; ``coap_tcp`` adds a CoAP-over-TCP listener.
    ``broker``: ``"embedded"`` = an MQTT broker in this process on
    ``host:broker_port`` (0 = ephemeral), an ``mqtt://`` URL = that external
    broker, None = ``broker_url`` as given (default: none). Raises
    ConfigError for a broker that is neither.
    """
    if broker is not None and broker != EMBEDDED:
        broker_url = check_broker_url(broker)
    options = ServiceOptions(
        allocation_interval=allocation_interval,
        framework_heartbeat=framework_heartbeat,
        broker_url=broker_url,
        module_store_bytes=module_store_bytes,
    )
    coap = _CoapOptions(coap_port, coap_tcp)
    embed = _BrokerOptions(broker_port if broker == EMBEDDED else None)
    cfg = config if config is not None else MasterConfig()
    return Starting(lambda: _start(host, port, cfg, options, max_body, access_log, coap, embed))


@dataclass(frozen=True, slots=True)
class _BrokerOptions:
    port: int | None  # None: embed no broker


@dataclass(frozen=True, slots=True)
class _CoapOptions:
    port: int | None  # None: no CoAP endpoint
    tcp: bool = False

    def __post_init__(self) -> None:
        if self.tcp and self.port is None:
            raise ValueError("coap_tcp needs a coap_port")


async def _start(
    host: str,
    port: int,
    config: MasterConfig,
    options: ServiceOptions,
    max_body: int,
    access_log: bool,
    coap_options: _CoapOptions,
    broker_options: _BrokerOptions,
) -> RunningMaster:
    broker: EmbeddedBroker | None = None
    if broker_options.port is not None:
        broker = EmbeddedBroker(host, broker_options.port)
        await broker.start()  # first: agents registering right away must get its URL
        options = replace(options, broker_url=broker.url)
    try:
        return await _start_serving(host, port, config, options, max_body, access_log, coap_options, broker)
    except BaseException:
        if broker is not None:
            await broker.stop()
        raise


async def _start_serving(
    host: str,
    port: int,
    config: MasterConfig,
    options: ServiceOptions,
    max_body: int,
    access_log: bool,
    coap_options: _CoapOptions,
    broker: EmbeddedBroker | None,
) -> RunningMaster:
    service = MasterService(config, options)
    handlers = Handlers(service)
    app = make_app(handlers, max_body=max_body)
    runner = web.AppRunner(
        app,
        handler_cancellation=True,  # a dropped stream ends its handler at once
        shutdown_timeout=2.0,  # streams have ended by then (the service stops first)
        access_log=logging.getLogger("edgerm.master.access") if access_log else None,
    )
    await service.start()
    coap: CoapServer | None = None
    try:
        await runner.setup()
        # A fleet reconnecting at once (a master restart, a network back) must not
        # overflow aiohttp's default listen backlog of 128: SYNs dropped there
        # cost the agents 1-3 s of retransmission each (bench/scale.py).
        site = web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG)
        await site.start()
        if coap_options.port is not None:
            coap = await start_coap_server(handlers, host, coap_options.port, tcp=coap_options.tcp, max_body=max_body)
    except BaseException:
        await service.stop()
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    master = RunningMaster(service, handlers, runner, host, bound, coap, broker)
    log.info("edgerm master %s listening on %s", config.master_id, master.url)
    if coap is not None:
        log.info("CoAP on %s%s", coap.url, f" and {coap.tcp_url}" if coap.tcp_url else "")
    if options.broker_url:
        log.info("dataflow MQTT broker: %s%s", options.broker_url, " (embedded)" if broker is not None else "")
    return master


# -- command line ------------------------------------------------------------------


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _master_id(text: str) -> str:
    """An id as edgerm.limits defines them: offer ids are built from it and checked by every framework."""
    try:
        return check_id(text, "--master-id")
    except MalformedMessage as e:
        raise argparse.ArgumentTypeError(e.message) from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="edgerm-master", description="Run the edgerm master (HTTP and CoAP APIs).")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5050, help="HTTP port (default 5050; 0 = ephemeral)")
    p.add_argument("--master-id", type=_master_id, default="master", help="this master's id (default 'master')")
    p.add_argument("--offer-timeout", type=_positive, default=10.0, metavar="S", help="seconds an offer stays valid")
    p.add_argument(
        "--allocation-interval", type=_positive, default=0.25, metavar="S", help="seconds between allocation ticks"
    )
    p.add_argument(
        "--framework-heartbeat", type=_positive, default=15.0, metavar="S", help="seconds between framework HEARTBEATs"
    )
    p.add_argument(
        "--max-body", type=_positive_int, default=DEFAULT_MAX_BODY, metavar="BYTES", help="request body size limit"
    )
    p.add_argument(
        "--coap-port",
        type=int,
        default=DEFAULT_COAP_PORT,
        metavar="PORT",
        help=f"CoAP (UDP) port for agents, bound to --host only (default {DEFAULT_COAP_PORT}; 0 = ephemeral)",
    )
    p.add_argument("--coap-tcp", action="store_true", help="also serve CoAP over TCP (same port number)")
    p.add_argument("--no-coap", action="store_true", help="serve agents over HTTP only")
    p.add_argument(
        "--broker-port",
        type=int,
        default=DEFAULT_BROKER_PORT,
        metavar="PORT",
        help=f"port of the embedded MQTT broker, bound to --host (default {DEFAULT_BROKER_PORT}; 0 = ephemeral)",
    )
    mqtt = p.add_mutually_exclusive_group()
    mqtt.add_argument("--broker", metavar="URL", help="name an external MQTT broker (mqtt://host:port) to agents")
    mqtt.add_argument("--no-broker", action="store_true", help="no MQTT broker: agents get none (no dataflows)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--access-log", action="store_true", help="log every HTTP request")
    return p.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    config = MasterConfig(master_id=args.master_id, offer_timeout=args.offer_timeout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with start_master(
            args.host,
            args.port,
            config,
            allocation_interval=args.allocation_interval,
            framework_heartbeat=args.framework_heartbeat,
            max_body=args.max_body,
            access_log=args.access_log,
            coap_port=None if args.no_coap else args.coap_port,
            coap_tcp=args.coap_tcp and not args.no_coap,
            broker=None if args.no_broker else (args.broker or EMBEDDED),
            broker_port=args.broker_port,
        ) as master:
            # The cyclic GC's full collections stop the loop for as long as it
            # takes to scan every object: 0.3-2 s with thousands of agents
            # (bench/scale.py). Everything loaded so far (modules, the app)
            # lives as long as the process, so it leaves the scans; and a larger
            # young generation lets a request's short-lived objects die young
            # instead of piling up in the old one and triggering full passes.
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
            print(f"edgerm-master listening on {master.url}", flush=True)
            for url in (master.coap_url, master.coap_tcp_url):
                if url:
                    print(f"edgerm-master listening on {url} (agents)", flush=True)
            if master.broker is not None:
                print(f"edgerm-master MQTT broker on {master.broker_url} (dataflows)", flush=True)
            elif master.broker_url:
                print(f"edgerm-master names the MQTT broker {master.broker_url} to agents", flush=True)
            await stop.wait()
            log.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit: every HTTP agent holds a connection (its push stream)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limit = _raise_open_files_limit()
    log.info(
        "up to %d open files (about %d HTTP agents: a push stream and a keep-alive connection each)", limit, limit // 2
    )
    try:
        asyncio.run(_serve(args))
    except OSError as e:  # e.g. the port is taken
        print(f"edgerm-master: {e}", file=sys.stderr)
        return 1
    except ConfigError as e:  # e.g. --broker is not an mqtt:// URL
        print(f"edgerm-master: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
