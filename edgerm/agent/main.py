"""``edgerm-agent``: the agent's command line, and ``start_agent`` for tests and demos.

::

    edgerm-agent [--master URL] [--coap] [--config FILE] [--work-dir DIR] [--name N] [--log-level LEVEL]
                 [--join-token T] [--join-url URL] [--token T] [--ca FILE]
                 [--metrics-port PORT [--metrics-host ADDR]]

Plain ``edgerm-agent`` talks to ``EDGERM_MASTER`` or http://127.0.0.1:5050
(precedence: flag > environment > config > default, edgerm.agent.config);
``edgerm-agent --coap`` speaks CoAP, to coap://127.0.0.1:5683 unless a
``coap://`` or ``coap+tcp://`` URL is named the same ways.
An agent listens on no port unless ``--metrics-port`` asks it to serve
Prometheus ``/metrics`` (edgerm.agent.metrics) on ``--metrics-host``
(127.0.0.1 by default).
SIGINT or SIGTERM stops it cleanly: WebAssembly tasks are stopped, Docker
containers are left running for the next start to recover.

Credentials (HTTP): the agent presents its own token, bound to its agent id.
The first start joins with a join token (``--join-token`` or
``EDGERM_JOIN_TOKEN``) and keeps the credential it gets in its work dir
(:mod:`edgerm.auth.join`); later starts reuse it. ``--ca`` (``EDGERM_CA``)
verifies an https master. Over CoAP the agent joins the same way at
``--join-url`` (``EDGERM_JOIN_URL``, the master's https URL) and also gets an
OSCORE context that protects every CoAP request (:mod:`edgerm.agent.coap_join`).

Assembly order (:func:`start_agent`): work dir -> its lock (a second agent
on the same dir fails here with ``WorkDirInUse``: exit status 2, one line
naming the dir and the holder's pid) -> agent id -> credential -> transport
-> runtimes (those that are available) -> measured ``AgentInfo`` -> service
(which replays the work dir's journal before it registers).
The ``wasm`` runtime is a :class:`~edgerm.agent.dataflow.runtime.DataflowRuntime`
wrapping the plain :class:`~edgerm.agent.wasm.WasmRuntime`: dataflow operator
tasks (env ``EDGERM_DF_ROLE``) are hosted per micro-batch, others run as commands.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from edgerm.agent.config import (
    DEFAULT_MASTER,
    KNOWN_EXECUTORS,
    MASTER_ENV,
    AgentConfig,
    default_work_dir,
    load_config,
    resolve_master,
)
from edgerm.agent.metrics import start_metrics_server
from edgerm.agent.resources import build_agent_info, load_agent_id, measure
from edgerm.agent.runtime import Runtime
from edgerm.agent.service import AgentService
from edgerm.agent.transport import AgentTransport
from edgerm.agent.workdir import WorkDirLock
from edgerm.auth import join as joining
from edgerm.auth.client import client_ssl, resolve_token
from edgerm.auth.principal import Role
from edgerm.errors import ConfigError, EdgermError, TransportError, WireError
from edgerm.ids import AgentId
from edgerm.lifecycle import Starting
from edgerm.logs import add_log_arguments, configure_logging, fail, version_argument

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("edgerm.agent")

DEFAULT_COAP_MASTER = "coap://127.0.0.1:5683"
DATAFLOW_THREADS = 8  # at most this many dataflow batches run at once
COAP_SCHEMES = ("coap", "coap+tcp")


def transport_for(master_url: str) -> AgentTransport:
    """The transport that speaks the master URL's scheme."""
    scheme = urlsplit(master_url).scheme
    if scheme in ("http", "https"):
        # Imported here: an agent that speaks CoAP does not load aiohttp.
        from edgerm.agent.http_transport import HttpAgentTransport

        return HttpAgentTransport(master_url)
    if scheme in COAP_SCHEMES:
        # Imported here: an agent that speaks HTTP does not load aiocoap.
        from edgerm.agent.coap_transport import CoapAgentTransport

        return CoapAgentTransport(master_url)
    raise ConfigError(f"master: no transport for {scheme!r} URLs (use http://, https://, coap:// or coap+tcp://)")


async def build_runtimes(
    config: AgentConfig, agent_id: AgentId, work_dir: Path, transport: AgentTransport
) -> dict[str, Runtime]:
    """The runtimes the config asks for (all known ones by default) that work here."""
    wanted = config.executors if config.executors is not None else KNOWN_EXECUTORS
    explicit = config.executors is not None
    out: dict[str, Runtime] = {}
    if "wasm" in wanted:
        try:
            from edgerm.agent.dataflow.runtime import DataflowRuntime
            from edgerm.agent.wasm import WasmRuntime
        except ImportError as e:
            log.warning("no wasm executor: wasmtime does not import (%s)", e)
        else:
            plain = WasmRuntime(
                work_dir,
                default_time_limit=config.wasm.time_limit,
                default_memory=config.wasm.memory,
                threads=config.wasm.threads,
                fetch_module=transport.fetch_module,
            )
            # Tasks with EDGERM_DF_ROLE are dataflow operators, hosted per batch; the rest run as commands.
            out["wasm"] = DataflowRuntime(
                agent_id,
                plain,
                devices={d.name: d.handle for d in config.devices},
                fetch_module=transport.fetch_module,
                threads=min(config.wasm.threads, DATAFLOW_THREADS),
                default_memory=config.wasm.memory,
            )
    if "docker" in wanted and importlib.util.find_spec("docker") is None:
        (log.warning if explicit else log.info)(
            "no docker executor: the Docker SDK is not installed (pip install 'edgerm[docker]')"
        )
    elif "docker" in wanted:
        from edgerm.agent.docker import DockerRuntime

        docker = DockerRuntime(agent_id, config.devices)
        if await docker.available():
            out["docker"] = docker
        else:
            (log.warning if explicit else log.info)("no docker executor: no Docker engine answers")
            await docker.close()
    return out


class RunningAgent:
    """A started agent; ``async with`` it (or call :meth:`stop`) to stop it."""

    def __init__(
        self,
        service: AgentService,
        master_url: str,
        tmp: tempfile.TemporaryDirectory[str] | None,
        lock: WorkDirLock | None = None,
    ) -> None:
        self.service = service
        self.master_url = master_url
        self._tmp = tmp
        self._lock = lock
        self._metrics: web.AppRunner | None = None
        #: ``http://host:port/metrics`` when the agent serves its metrics, else None.
        self.metrics_url: str | None = None

    @property
    def agent_id(self) -> AgentId:
        return self.service.info.id

    @property
    def work_dir(self) -> Path:
        return self.service.work_dir

    async def wait_registered(self) -> None:
        """Wait until the master has answered REGISTERED (wrap in ``asyncio.timeout``)."""
        await self.service.wait_registered()

    async def serve_metrics(self, host: str, port: int) -> None:
        runner = await start_metrics_server(self.service, host, port)
        self._metrics = runner
        self.metrics_url = f"http://{host}:{runner.addresses[0][1]}/metrics"

    async def stop(self) -> None:
        try:
            await self.service.stop()
            if self._metrics is not None:
                await self._metrics.cleanup()
                self._metrics = None
        finally:
            if self._lock is not None:
                self._lock.release()
        if self._tmp is not None:
            await asyncio.to_thread(self._tmp.cleanup)
            self._tmp = None

    async def __aenter__(self) -> RunningAgent:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def start_agent(
    master_url: str,
    config: AgentConfig | None = None,
    work_dir: Path | None = None,
    *,
    runtimes: Mapping[str, Runtime] | None = None,
    transport: AgentTransport | None = None,
    register_timeout: float | None = 10.0,
    token: str | None = None,
    join_token: str | None = None,
    ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    join_url: str | None = None,
) -> Starting[RunningAgent]:
    """Start an agent in this event loop; unless ``register_timeout`` is None, wait until it registered.

    Use as ``async with start_agent(url) as agent:`` or ``agent = await
    start_agent(url)`` (then ``await agent.stop()``). ``work_dir``: the
    argument, else the config's, else a temporary directory removed at stop.
    ``runtimes``: default, those of :func:`build_runtimes`. Raises
    :class:`~edgerm.errors.TransportError` when the master does not answer
    within ``register_timeout`` (the agent is stopped again). ``token``,
    ``join_token``, ``ca``, ``tls_cert``/``tls_key`` (a client certificate):
    credentials for an HTTP master (module docstring); ``join_url``: where a
    CoAP agent joins (the master's HTTP(S) URL). ``metrics_port``:
    serve ``/metrics`` on ``metrics_host`` at that port (0: ephemeral; None:
    no listener, the default).
    """
    creds = _Credentials(token, join_token, ca, tls_cert, tls_key, join_url)
    metrics = (metrics_host, metrics_port) if metrics_port is not None else None
    return Starting(
        lambda: _start(
            master_url, config or AgentConfig(), work_dir, runtimes, transport, register_timeout, creds, metrics
        )
    )


class _Credentials:
    def __init__(
        self,
        token: str | None,
        join_token: str | None,
        ca: str | None,
        cert: str | None = None,
        key: str | None = None,
        join_url: str | None = None,
    ) -> None:
        self.token = token
        self.join_token = join_token
        self.join_url = join_url
        self.ca = ca
        self.cert = cert
        self.key = key

    async def transport(
        self, master_url: str, work_dir: Path, agent_id: AgentId, deadline: float | None
    ) -> AgentTransport:
        """The HTTP transport with this agent's token (joining first if needed); CoAP: transport_for.

        A join that may pass later (the master is not up yet) is retried until ``deadline`` (None: for ever).
        """
        if urlsplit(master_url).scheme not in ("http", "https"):
            return await self.coap_transport(master_url, work_dir, agent_id, deadline)
        ssl_context = client_ssl(master_url, self.ca, self.cert, self.key)
        token = await joining.agent_token(
            master_url,
            work_dir,
            agent_id,
            token=self.token,
            join_token=self.join_token,
            ssl_context=ssl_context,
            deadline=deadline,
        )
        if token is None:
            log.warning(
                "agent %s has no credential and no join token: only an --insecure master accepts it "
                "(give --join-token or EDGERM_JOIN_TOKEN)",
                agent_id,
            )

        async def renew() -> str | None:
            # The master refused our credential (expired or revoked): join again if we can.
            join_token = resolve_token(self.join_token, master_url, Role.JOIN)
            if self.token or not join_token:
                log.error("the master refused this agent's credential; re-join with --join-token")
                return None
            try:
                new = await joining.join(master_url, join_token, agent_id, ssl_context=ssl_context)
            except (WireError, TransportError) as e:
                log.error("the master refused this agent's credential and re-joining failed: %s", e)
                return None
            joining.save(work_dir, master_url, agent_id, new)
            log.info("agent %s re-joined %s with a fresh credential", agent_id, master_url)
            return new

        from edgerm.agent.http_transport import HttpAgentTransport  # lazily: a CoAP agent does not load aiohttp

        return HttpAgentTransport(master_url, token=token, ssl=ssl_context, renew=renew)

    async def coap_transport(
        self, master_url: str, work_dir: Path, agent_id: AgentId, deadline: float | None
    ) -> AgentTransport:
        """The CoAP transport, OSCORE-protected with the context from the work dir or a join."""
        from edgerm.agent.coap_join import coap_security, join_url_for
        from edgerm.agent.coap_transport import CoapAgentTransport

        join_url = join_url_for(master_url, self.join_url)
        ssl_context = client_ssl(join_url, self.ca, self.cert, self.key) if join_url else None
        context, renew = await coap_security(
            master_url,
            work_dir,
            agent_id,
            join_token=self.join_token,
            join_url=join_url,
            ssl_context=ssl_context,
            deadline=deadline,
        )
        return CoapAgentTransport(master_url, security_context=context, renew=renew)


async def _start(
    master_url: str,
    config: AgentConfig,
    work_dir: Path | None,
    runtimes: Mapping[str, Runtime] | None,
    transport: AgentTransport | None,
    register_timeout: float | None,
    credentials: _Credentials,
    metrics: tuple[str, int] | None = None,
) -> RunningAgent:
    tmp = None
    if work_dir is None:
        work_dir = config.work_dir
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="edgerm-agent-")
        work_dir = Path(tmp.name)
    work_dir.mkdir(parents=True, exist_ok=True)
    lock = WorkDirLock.acquire(work_dir)  # before anything reads the dir: one identity, one agent
    try:
        agent_id = load_agent_id(work_dir)
        if transport is None:
            deadline = time.monotonic() + register_timeout if register_timeout is not None else None
            transport = await credentials.transport(master_url, work_dir, agent_id, deadline)
        if runtimes is None:
            runtimes = await build_runtimes(config, agent_id, work_dir, transport)
        executors = frozenset([name for name, rt in runtimes.items() if await rt.available()])
        measured = await asyncio.to_thread(measure, work_dir)
    except BaseException:
        lock.release()
        raise
    info = build_agent_info(agent_id, config, measured, executors)
    service = AgentService(
        info, transport, {e: runtimes[e] for e in executors}, work_dir, max_pending=config.max_pending_updates
    )
    service.broker_ca = credentials.ca  # an mqtts:// broker is verified as the master is
    agent = RunningAgent(service, master_url, tmp, lock)
    try:
        if metrics is not None:
            await agent.serve_metrics(*metrics)
        await service.start()
        log.info(
            "agent %s (%s) at %s: %s; executors %s; master %s",
            agent_id,
            info.hostname,
            work_dir,
            info.resources,
            ",".join(sorted(executors)) or "none",
            master_url,
        )
        if register_timeout is not None:
            try:
                async with asyncio.timeout(register_timeout):
                    await agent.wait_registered()
            except TimeoutError:
                raise TransportError(f"the master at {master_url} did not answer within {register_timeout}s") from None
    except BaseException:
        await agent.stop()
        raise
    return agent


# -- command line -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgerm-agent",
        description="Run an edgerm agent on this device.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    version_argument(p)
    p.add_argument("--master", metavar="URL", help=f"the master's URL (default: $EDGERM_MASTER or {DEFAULT_MASTER})")
    p.add_argument(
        "--coap", action="store_true", help=f"talk to the master over CoAP (default URL {DEFAULT_COAP_MASTER})"
    )
    p.add_argument("--config", metavar="FILE", type=Path, help="YAML config file (docs/agent-config.md)")
    p.add_argument(
        "--work-dir",
        metavar="DIR",
        type=Path,
        help=f"state directory: agent id, task dirs, module cache (default: {default_work_dir()}); one per agent",
    )
    p.add_argument("--name", metavar="N", help="hostname to advertise (default: the machine's)")
    add_log_arguments(p)
    p.add_argument("--join-token", metavar="T", help="join the master with this token (default: $EDGERM_JOIN_TOKEN)")
    p.add_argument(
        "--join-url",
        metavar="URL",
        help="with --coap: the master's https:// (or http://) URL to join at, for the OSCORE context "
        "(default: $EDGERM_JOIN_URL)",
    )
    p.add_argument("--token", metavar="T", help="an agent token made for this agent's id (instead of joining)")
    p.add_argument("--ca", metavar="FILE", help="CA certificate that verifies an https master (default: $EDGERM_CA)")
    p.add_argument("--tls-cert", metavar="PEM", help="client certificate, for a master that requires one")
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus /metrics on this port (default: off, the agent listens on no port)",
    )
    p.add_argument(
        "--metrics-host", default="127.0.0.1", metavar="ADDR", help="address for --metrics-port (default 127.0.0.1)"
    )
    return p


def master_url_for(flag: str | None, coap: bool, env: Mapping[str, str], config: AgentConfig) -> str:
    """The master URL (``resolve_master``); with ``--coap`` the CoAP default, and a CoAP URL required."""
    if coap and not (flag or env.get(MASTER_ENV) or config.master):
        return DEFAULT_COAP_MASTER
    url = resolve_master(flag, env, config)
    if coap and urlsplit(url).scheme not in COAP_SCHEMES:
        raise ConfigError(f"--coap: the master URL must be coap:// or coap+tcp://, got {url!r}")
    return url


def _work_dir(config: AgentConfig) -> Path:
    """The configured work dir, else the default one, else (unwritable home) a temporary one."""
    if config.work_dir is not None:
        config.work_dir.mkdir(parents=True, exist_ok=True)
        return config.work_dir
    path = default_work_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
        return path
    except OSError as e:
        tmp = Path(tempfile.mkdtemp(prefix="edgerm-agent-"))
        log.warning("cannot use %s (%s); using %s", path, e.strerror, tmp)
        return tmp


async def _serve(config: AgentConfig, master_url: str, args: argparse.Namespace) -> None:
    agent = await start_agent(
        master_url,
        config,
        _work_dir(config),
        register_timeout=None,
        token=args.token,
        join_token=args.join_token,
        join_url=args.join_url,
        ca=args.ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )
    if agent.metrics_url:
        print(f"edgerm-agent serves metrics on {agent.metrics_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await agent.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        config = load_config(args.config) if args.config else AgentConfig()
        config = config.with_overrides(work_dir=args.work_dir, name=args.name)
        master_url = master_url_for(args.master, args.coap, os.environ, config)
        asyncio.run(_serve(config, master_url, args))
    except (ConfigError, OSError) as e:
        fail("edgerm-agent", str(e))
        return 2
    except EdgermError as e:
        fail("edgerm-agent", str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
