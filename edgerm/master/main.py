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
- Security is on by default. The command line reads the credentials file in
  ``--state-dir`` (made by ``edgerm-master init``; it refuses to start
  without one) and re-reads it on SIGHUP; ``--insecure`` opens the cluster
  for local development, with a loud warning. :func:`start_master`
  provisions an in-memory credentials set instead (unless given
  ``credentials`` or ``insecure=True``) and publishes the client tokens for
  in-process clients (:mod:`edgerm.auth.local`), so tests and the demo need
  no setup; ``RunningMaster.tokens`` holds them.
- TLS: ``--tls-cert/--tls-key`` (``tls=TlsFiles(...)``) serve https;
  ``--tls-client-ca`` also requires client certificates signed by that CA.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib.util
import logging
import math
import os
import resource
import secrets
import shutil
import signal
import ssl
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from aiohttp import web

from edgerm import dataflow_keys
from edgerm.auth import local
from edgerm.auth.client import bearer
from edgerm.auth.credentials import CREDENTIALS_FILE, CredentialStore
from edgerm.auth.limits import Limits
from edgerm.auth.principal import Role
from edgerm.coap_util import DEFAULT_COAP_PORT
from edgerm.errors import ConfigError, MalformedMessage
from edgerm.ids import FrameworkId, TaskId, new_id
from edgerm.lifecycle import Starting
from edgerm.limits import check_id
from edgerm.logs import add_log_arguments, configure_logging, fail, version_argument
from edgerm.master.agent_calls import AgentCalls
from edgerm.master.agent_http import AgentFastPath
from edgerm.master.broker import DEFAULT_BROKER_PORT, EMBEDDED, EmbeddedBroker, check_broker_url
from edgerm.master.broker_gate import MASTER_USER, BrokerGate, TaskView
from edgerm.master.coap import CoapServer, start_coap_server
from edgerm.master.coap_oscore import CoapSecurity
from edgerm.master.conn_guard import GuardedTCPSite, connection_limit, quiet_accept_errors
from edgerm.master.dataflow_stats import StatsListener
from edgerm.master.gc_policy import GcPolicy
from edgerm.master.handlers import Handlers
from edgerm.master.http import DEFAULT_MAX_BODY, make_app, server_logger
from edgerm.master.http_auth import HttpSecurity
from edgerm.master.service import DEFAULT_MODULE_STORE_BYTES, MasterService, ServiceOptions
from edgerm.master.state import MasterConfig
from edgerm.master.store import MEMORY, open_store
from edgerm.model import TaskInfo
from edgerm.paths import default_master_state_dir

log = logging.getLogger("edgerm.master")

PID_FILE = "master.pid"
INSECURE_WARNING = (
    "INSECURE MODE (--insecure): no authentication, no authorization. Anyone who can reach this master can "
    "register as any agent, run tasks, kill every framework's tasks and read the whole state. "
    "For local development only; run `edgerm-master init` for a secure cluster."
)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The master's certificate and key (PEM); ``client_ca``: require client certificates it signed."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self.cert), str(self.key))
            if self.client_ca is not None:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(cafile=str(self.client_ca))
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"TLS: {e}") from None
        return context


NO_AMQTT = (
    "the embedded MQTT broker needs amqtt (pip install 'edgerm[broker]'); "
    "or name an external broker with --broker mqtt://HOST:PORT, or run with --no-broker"
)


def _amqtt_installed() -> bool:
    return importlib.util.find_spec("amqtt") is not None


class PortInUse(OSError):
    """A port the master must bind is taken: ``what`` (HTTP, CoAP, MQTT broker) and the flag that changes it."""

    def __init__(self, what: str, host: str, port: int, flag: str) -> None:
        super().__init__(errno.EADDRINUSE, f"{what} port {host}:{port} is already in use; choose another with {flag}")
        self.what, self.host, self.port, self.flag = what, host, port, flag


def _busy(e: OSError) -> bool:
    return e.errno == errno.EADDRINUSE or "address already in use" in str(e).lower()


LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn


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
        security: HttpSecurity | None = None,
        tokens: local.ProvisionedTokens | None = None,
        tls: bool = False,
    ) -> None:
        self.service = service
        self.broker = broker
        self.handlers = handlers
        self.host = host
        self.port = port
        self.url = f"{'https' if tls else 'http'}://{f'[{host}]' if ':' in host else host}:{port}"
        self.coap = coap
        self.security = security
        self.tokens = tokens
        self._runner = runner
        self._stopped = False
        #: Hears the dataflow operators' stats on the broker, for the dashboard (None without a broker).
        self.stats_listener: StatsListener | None = None
        #: The agents' HTTP fast path (edgerm.master.agent_http) its connections start on.
        self.agent_http: AgentFastPath | None = None
        if tokens is not None:
            local.publish(self.url, tokens)
            if coap is not None:
                local.publish_join_url(coap.url, self.url)

    @property
    def insecure(self) -> bool:
        return self.security is None

    def auth_headers(self, role: Role = Role.ADMIN) -> dict[str, str]:
        """``Authorization`` for a provisioned token of ``role`` ({} when insecure or not provisioned)."""
        return bearer(self.tokens.for_role(role)) if self.tokens is not None else {}

    def issue_token(self, role: Role, name: str | None = None, **binding: object) -> str:
        """A new credential of ``role`` on this master (tests: a second framework, a bound agent)."""
        if self.security is None:
            raise RuntimeError("an insecure master has no credentials")
        token, _ = self.security.store.issue(role, name, **binding)  # type: ignore[arg-type]
        return token

    def reload_credentials(self) -> bool:
        """Re-read the credentials file (SIGHUP); ends streams of revoked principals."""
        return self.security.reload() if self.security is not None else False

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
        if self.tokens is not None:
            local.withdraw(self.url)
            if self.coap is not None:
                local.withdraw(self.coap.url)
        try:
            if self.stats_listener is not None:
                await self.stats_listener.stop()
            await self.service.stop()
        finally:
            try:
                if self.coap is not None:
                    await self.coap.close()
                if self.security is not None:
                    _close_contexts(self.security)
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
    state_dir: str = MEMORY,
    registry_sync: str = "normal",
    insecure: bool = False,
    credentials: CredentialStore | None = None,
    tokens: local.ProvisionedTokens | None = None,
    limits: Limits | None = None,
    tls: TlsFiles | None = None,
) -> Starting[RunningMaster]:
    """Start a master on ``host:port`` (0 = an ephemeral port).

    Security: ``insecure`` opens every route to everyone. Otherwise
    ``credentials`` is the store to authenticate against (e.g. over the
    state dir's file), or, when None, a fresh in-memory store provisioned
    with one admin, framework, join and metrics token, published for
    in-process clients and kept in ``RunningMaster.tokens`` (``tokens``:
    publish these for a given ``credentials`` store instead, e.g. when a
    test restarts a master over the same credentials). ``limits``:
    the per-principal abuse limits. ``tls``: serve https.

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
    if not cfg.incarnation:
        cfg = replace(cfg, incarnation=new_id()[:8])
    registry = _RegistryOptions(state_dir, registry_sync)
    guard = _SecurityOptions(insecure, credentials, limits, tls, tokens)
    return Starting(lambda: _start(host, port, cfg, options, max_body, access_log, coap, embed, registry, guard))


@dataclass(frozen=True, slots=True)
class _RegistryOptions:
    state_dir: str
    sync: str = "normal"


@dataclass(frozen=True, slots=True)
class _SecurityOptions:
    insecure: bool = False
    credentials: CredentialStore | None = None
    limits: Limits | None = None
    tls: TlsFiles | None = None
    tokens: local.ProvisionedTokens | None = None

    def __post_init__(self) -> None:
        if self.insecure and self.credentials is not None:
            raise ValueError("insecure and credentials exclude each other")
        if self.tokens is not None and self.credentials is None:
            raise ValueError("tokens are those of a credentials store: give both")

    def build(self) -> tuple[HttpSecurity | None, local.ProvisionedTokens | None]:
        if self.insecure:
            return None, None
        tokens = self.tokens
        store = self.credentials
        if store is None:
            store = CredentialStore()
            tokens = local.ProvisionedTokens(
                admin=store.issue(Role.ADMIN, "admin")[0],
                framework=store.issue(Role.FRAMEWORK, "framework")[0],
                join=store.issue(Role.JOIN, "join")[0],
                metrics=store.issue(Role.METRICS, "metrics")[0],
            )
        return HttpSecurity(store, limits=self.limits, secure_cookies=self.tls is not None), tokens


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
    registry: _RegistryOptions,
    security: _SecurityOptions,
) -> RunningMaster:
    broker: EmbeddedBroker | None = None
    if broker_options.port is not None:
        if not _amqtt_installed():
            raise ConfigError(NO_AMQTT)
        gate = None if security.insecure else BrokerGate(await asyncio.to_thread(_broker_key, registry.state_dir))
        tls = (str(security.tls.cert), str(security.tls.key)) if security.tls is not None else None
        broker = EmbeddedBroker(host, broker_options.port, gate=gate, tls=tls)  # TLS as the HTTP API
        try:
            await broker.start()  # first: agents registering right away must get its URL
        except OSError as e:
            if _busy(e):
                raise PortInUse("MQTT broker", host, broker_options.port, "--broker-port (or --broker URL)") from None
            raise
        options = replace(options, broker_url=broker.url)
    try:
        return await _start_serving(
            host, port, config, options, max_body, access_log, coap_options, broker, registry, security
        )
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
    registry: _RegistryOptions,
    security_options: _SecurityOptions,
) -> RunningMaster:
    security, tokens = security_options.build()
    tls = security_options.tls
    ssl_context = tls.context() if tls is not None else None
    store = await asyncio.to_thread(open_store, registry.state_dir, registry.sync)
    service = MasterService(config, options, store=store)
    if broker is not None and broker.gate is not None and security is not None:
        _attach_gate(broker.gate, service, security)
    handlers = Handlers(service)
    app = make_app(handlers, max_body=max_body, security=security)
    access_logger = logging.getLogger("edgerm.master.access") if access_log else None
    runner = web.AppRunner(
        app,
        handler_cancellation=True,  # a dropped stream ends its handler at once
        shutdown_timeout=2.0,  # streams have ended by then (the service stops first)
        access_log=access_logger,
        logger=server_logger(),  # a malformed request is one INFO line, not an ERROR with a traceback
    )
    # Agents' calls are served on their connections (edgerm.master.agent_http), the rest by aiohttp.
    fast = AgentFastPath(AgentCalls(handlers, max_body, security), access_log=access_logger)
    try:
        await service.start()
    except BaseException:
        store.close()
        raise
    coap: CoapServer | None = None
    try:
        await runner.setup()
        # A fleet reconnecting at once (a master restart, a network back) must not
        # overflow aiohttp's default listen backlog of 128: SYNs dropped there
        # cost the agents 1-3 s of retransmission each (bench/scale.py).
        # Connections past the open-file limit (less a reserve) are answered UNAVAILABLE and closed: the
        # process never runs out of descriptors (edgerm.master.conn_guard).
        quiet_accept_errors(asyncio.get_running_loop())
        open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        site = GuardedTCPSite(
            runner,
            host,
            port,
            limit=connection_limit(open_files),
            ssl_context=ssl_context,
            backlog=LISTEN_BACKLOG,
            fast=fast,
        )
        try:
            await site.start()
        except OSError as e:
            if _busy(e):
                raise PortInUse("HTTP", host, port, "--port") from None
            raise
        if coap_options.port is not None:
            coap_security = _coap_security(security) if security is not None else None
            try:
                coap = await start_coap_server(
                    handlers, host, coap_options.port, tcp=coap_options.tcp, max_body=max_body, security=coap_security
                )
            except OSError as e:
                if _busy(e):
                    raise PortInUse("CoAP", host, coap_options.port, "--coap-port (or --no-coap)") from None
                raise
    except BaseException:
        await service.stop()
        await runner.cleanup()
        if security is not None and security.oscore is not None:
            _close_contexts(security)
        raise
    bound = runner.addresses[0][1]
    master = RunningMaster(service, handlers, runner, host, bound, coap, broker, security, tokens, tls is not None)
    master.agent_http = fast
    log.info(
        "edgerm master %s listening on %s (%s)",
        config.master_id,
        master.url,
        "INSECURE: no authentication" if security is None else f"{len(security.store.credentials)} credentials",
    )
    if security is None:
        log.warning(INSECURE_WARNING)
    if registry.state_dir != MEMORY:
        log.info("registry in %s (sync=%s)", registry.state_dir, registry.sync)
    else:
        log.info("registry in memory: nothing survives a restart")
    if options.broker_url:
        login = (MASTER_USER, broker.gate.master_password) if broker is not None and broker.gate is not None else None
        master.stats_listener = StatsListener(options.broker_url, service.history.stats, login=login)
        master.stats_listener.start()
    if coap is not None:
        log.info("CoAP on %s%s", coap.url, f" and {coap.tcp_url}" if coap.tcp_url else "")
    if options.broker_url:
        log.info("dataflow MQTT broker: %s%s", options.broker_url, " (embedded)" if broker is not None else "")
    return master


def _coap_security(security: HttpSecurity) -> CoapSecurity:
    """The agents' OSCORE contexts: ``STATE_DIR/oscore`` next to the credentials file, else a temporary dir."""
    from edgerm.auth.oscore_contexts import CONTEXTS_DIR, AgentContexts

    path = security.store.path
    if path is not None:
        root = path.parent / CONTEXTS_DIR
    else:  # in-memory credentials (tests, the demo): the contexts go with them
        root = Path(tempfile.mkdtemp(prefix="edgerm-oscore-"))
        security.oscore_tmp = root
    security.oscore = AgentContexts(root)
    log.info("CoAP agents: OSCORE contexts in %s (%d known)", root, len(security.oscore))
    return CoapSecurity(security, security.oscore)


def _close_contexts(security: HttpSecurity) -> None:
    """Persist and release the agents' OSCORE contexts; a temporary dir goes away."""
    if security.oscore is not None:
        security.oscore.close()
    if security.oscore_tmp is not None:
        shutil.rmtree(security.oscore_tmp, ignore_errors=True)
        security.oscore_tmp = None


BROKER_KEY_FILE = "broker.key"


def _broker_key(state_dir: str) -> bytes | None:
    """The key task broker passwords are made with: ``STATE_DIR/broker.key`` (made once, mode 0600), so a
    restarted master still accepts its running tasks; None (a fresh key) for an in-memory registry."""
    if state_dir == MEMORY:
        return None
    path = Path(state_dir) / BROKER_KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    except ValueError:
        raise ConfigError(f"{path}: not a broker key (hex); remove it to make a new one") from None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


def _attach_gate(gate: BrokerGate, service: MasterService, security: HttpSecurity) -> None:
    """Let ``gate`` see the master's tasks, frameworks and credentials, and give dataflow tasks their login."""

    def task(task_id: str) -> TaskView | None:
        record = service.core.task(TaskId(task_id))
        if record is None:
            return None
        return TaskView(record.framework_id, record.info.env, record.live)

    def on_launch(info: TaskInfo) -> TaskInfo:
        if dataflow_keys.ROLE not in info.env:
            return info
        return replace(info, secret_env={**info.secret_env, **gate.credential_env(info.task_id)})

    gate.attach(
        task,
        lambda fid: service.core.framework_known(FrameworkId(fid)),
        security.store,
        lambda principal: frozenset(security.policy.owners.owned_by(principal.name)),
    )
    service.on_launch = on_launch


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


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _master_id(text: str) -> str:
    """An id as edgerm.limits defines them: offer ids are built from it and checked by every framework."""
    try:
        return check_id(text, "--master-id")
    except MalformedMessage as e:
        raise argparse.ArgumentTypeError(e.message) from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="edgerm-master",
        description="Run the edgerm master (HTTP and CoAP APIs).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    version_argument(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--port", type=int, default=5050, help="HTTP port (0 = ephemeral)")
    p.add_argument("--master-id", type=_master_id, default="master", help="this master's id")
    p.add_argument("--offer-timeout", type=_positive, default=10.0, metavar="S", help="seconds an offer stays valid")
    p.add_argument(
        "--allocation-interval", type=_positive, default=0.25, metavar="S", help="seconds between allocation ticks"
    )
    p.add_argument(
        "--max-outstanding-offers",
        type=_non_negative_int,
        default=MasterConfig().max_outstanding_offers,
        metavar="N",
        help="offers one framework may hold unanswered before it gets no more (0 = no limit; default 100)",
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
        help="CoAP (UDP) port for agents, bound to --host only (0 = ephemeral)",
    )
    p.add_argument("--coap-tcp", action="store_true", help="also serve CoAP over TCP (same port number)")
    p.add_argument("--no-coap", action="store_true", help="serve agents over HTTP only")
    p.add_argument(
        "--broker-port",
        type=int,
        default=DEFAULT_BROKER_PORT,
        metavar="PORT",
        help="port of the embedded MQTT broker, bound to --host (0 = ephemeral)",
    )
    mqtt = p.add_mutually_exclusive_group()
    mqtt.add_argument("--broker", metavar="URL", help="name an external MQTT broker (mqtt://host:port) to agents")
    mqtt.add_argument("--no-broker", action="store_true", help="no MQTT broker: agents get none (no dataflows)")
    p.add_argument(
        "--registry-sync",
        choices=["normal", "full"],
        default="normal",
        help="normal: every acknowledged write survives a crash or kill -9 of the master; full: also a power cut, "
        "at one fsync per group commit",
    )
    p.add_argument(
        "--reregister-grace",
        type=_non_negative,
        default=0.0,
        metavar="S",
        help="settle period after a restart or a stall of the master, in which no agent is declared unreachable "
        "(0 = 3 heartbeat intervals of the slowest known agent)",
    )
    p.add_argument(
        "--unreachable-timeout",
        type=_positive,
        default=600.0,
        metavar="S",
        help="seconds an unreachable agent's tasks wait for it before they are LOST",
    )
    p.add_argument(
        "--framework-failover-timeout",
        type=_positive,
        default=24 * 3600.0,
        metavar="S",
        help="seconds a disconnected framework's tasks keep running, for frameworks that set none",
    )
    add_log_arguments(p)
    p.add_argument("--access-log", action="store_true", help="log every HTTP request")
    p.add_argument(
        "--state-dir",
        default=None,
        metavar="DIR",
        help="the master's state dir: its credentials, and the registry (frameworks, agents, tasks) that survives "
        f"restarts (default {default_master_state_dir()}); ':memory:' keeps no registry (with --insecure only)",
    )
    p.add_argument(
        "--insecure", action="store_true", help="no authentication at all: an open cluster for local development"
    )
    p.add_argument("--tls-cert", type=Path, metavar="PEM", help="serve HTTPS with this certificate (chain)")
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="the private key of --tls-cert")
    p.add_argument("--tls-client-ca", type=Path, metavar="PEM", help="require client certificates signed by this CA")
    args = p.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        p.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca is not None and args.tls_cert is None:
        p.error("--tls-client-ca needs --tls-cert and --tls-key")
    if args.state_dir == MEMORY and not args.insecure:
        p.error("--state-dir :memory: has no credentials file: give a state dir, or --insecure")
    return args


def write_pid(state_dir: Path) -> Path:
    """``STATE_DIR/master.pid``: where ``edgerm token ... --reload`` finds the master to SIGHUP."""
    path = state_dir / PID_FILE
    path.write_text(f"{os.getpid()}\n", encoding="ascii")
    return path


def credential_store(state_dir: Path | None) -> CredentialStore:
    """The store over ``STATE_DIR/credentials.yaml``; ConfigError telling how to make it when it is missing."""
    directory = state_dir if state_dir is not None else default_master_state_dir()
    path = directory / CREDENTIALS_FILE
    if not path.exists():
        flag = f" --state-dir {directory}" if state_dir is not None else ""
        raise ConfigError(
            f"no credentials in {directory}: run `edgerm-master init{flag}` first "
            "(or `edgerm-master --insecure` for an open development cluster)"
        )
    return CredentialStore(path=path)


async def _serve(args: argparse.Namespace) -> None:
    config = MasterConfig(
        master_id=args.master_id,
        offer_timeout=args.offer_timeout,
        max_outstanding_offers=args.max_outstanding_offers,
        reregister_grace=args.reregister_grace,
        unreachable_timeout=args.unreachable_timeout,
        framework_failover_timeout=args.framework_failover_timeout,
    )
    embedded: str | None = EMBEDDED
    if not args.broker and not args.no_broker and not _amqtt_installed():
        if args.broker_port != DEFAULT_BROKER_PORT:  # asked for by port: refuse rather than ignore it
            raise ConfigError(NO_AMQTT)
        log.warning(
            "no embedded MQTT broker: amqtt is not installed (pip install 'edgerm[broker]'); "
            "dataflows need --broker mqtt://HOST:PORT"
        )
        embedded = None
    state_dir = args.state_dir if args.state_dir is not None else str(default_master_state_dir())
    store = None if args.insecure else credential_store(Path(args.state_dir) if args.state_dir else None)
    tls = TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert is not None else None
    if args.insecure:
        print(f"edgerm-master: WARNING: {INSECURE_WARNING}", file=sys.stderr, flush=True)
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
            broker=None if args.no_broker else (args.broker or embedded),
            broker_port=args.broker_port,
            state_dir=state_dir,
            registry_sync=args.registry_sync,
            insecure=args.insecure,
            credentials=store,
            tls=tls,
        ) as master:
            loop.add_signal_handler(signal.SIGHUP, master.reload_credentials)
            pid_file = write_pid(store.path.parent) if store is not None and store.path is not None else None
            # The cyclic GC stops the loop for as long as a pass scans: what the app and
            # the fleet keep is frozen out of the scans (edgerm.master.gc_policy).
            gc_policy = GcPolicy(master.service.metrics, lambda: master.service.core.size)
            gc_policy.install()
            freezer = asyncio.create_task(gc_policy.run(), name="edgerm-master-gc")
            print(f"edgerm-master listening on {master.url}", flush=True)
            for url in (master.coap_url, master.coap_tcp_url):
                if url:
                    print(f"edgerm-master listening on {url} (agents)", flush=True)
            if master.broker is not None:
                print(f"edgerm-master MQTT broker on {master.broker_url} (dataflows)", flush=True)
            elif master.broker_url:
                print(f"edgerm-master names the MQTT broker {master.broker_url} to agents", flush=True)
            try:
                await stop.wait()
            finally:
                freezer.cancel()
                gc_policy.uninstall()
                if pid_file is not None:
                    pid_file.unlink(missing_ok=True)
            log.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)


class _NoBrokerTraceback(logging.Filter):
    """amqtt logs its own failed start with a traceback; the master reports it in one line (PortInUse)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("amqtt") and record.getMessage() == "Broker startup failed")


def _raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit: every HTTP agent holds a connection (its push stream)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["init"]:
        from edgerm.auth.cli import init_main

        return init_main(argv[1:])
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_format).addFilter(_NoBrokerTraceback())
    limit = _raise_open_files_limit()
    connections = connection_limit(limit)
    log.info(
        "up to %d open files: %d HTTP connections (about %d HTTP agents: a push stream and a keep-alive connection "
        "each), more are refused UNAVAILABLE",
        limit,
        connections,
        connections // 2,
    )
    try:
        asyncio.run(_serve(args))
    except PortInUse as e:  # expected: one line naming the port and the flag, no traceback
        fail("edgerm-master", e.strerror or str(e), {"port": e.port})
        return 1
    except OSError as e:  # e.g. --host is not an address of this machine
        fail("edgerm-master", str(e))
        return 1
    except ConfigError as e:  # e.g. --broker is not an mqtt:// URL
        fail("edgerm-master", str(e))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
