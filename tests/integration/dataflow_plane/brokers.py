"""Real MQTT brokers for the data-plane tests, and a watcher of topics.

- :func:`embedded` runs the master's amqtt broker (``EmbeddedBroker``) on an
  ephemeral port of 127.0.0.1.
- :class:`Mosquitto` starts Debian's ``mosquitto`` (scripts/setup_mosquitto.sh
  installs it) on a free port of 127.0.0.1 with a two-line config file, and
  stops it (SIGTERM, then SIGKILL) at teardown. :func:`mosquitto_binary`
  finds it, or returns None so a test can skip.
- :class:`Watcher` subscribes to topics with aiomqtt and keeps what arrives,
  so a test can wait for a condition on it.

Other test packages (the dataflow framework's) may import these.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from edgerm.master.broker import EmbeddedBroker
from edgerm.master.main import RunningMaster
from tests.integration.agent.helpers import eventually

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def mosquitto_binary() -> str | None:
    """The mosquitto executable, or None when it is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in MOSQUITTO_PATHS if Path(p).is_file()), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    """A mosquitto process on 127.0.0.1, started on a free port."""

    def __init__(self, binary: str, work_dir: Path) -> None:
        self.binary = binary
        self.work_dir = work_dir
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        for _attempt in range(3):  # a free port can be taken between the check and the bind
            self.port = _free_port()
            conf = self.work_dir / f"mosquitto-{self.port}.conf"
            conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
            log = (self.work_dir / f"mosquitto-{self.port}.log").open("wb")
            with log:
                self._proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self._proc.poll() is None:
                if _answers(self.port):
                    return
                time.sleep(0.02)
            self.stop()
        raise RuntimeError(f"mosquitto did not start; see {self.work_dir}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.asynccontextmanager
async def embedded() -> AsyncIterator[EmbeddedBroker]:
    broker = EmbeddedBroker("127.0.0.1", 0)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    at: float  # time.time() on arrival

    def lines(self) -> list[str]:
        return [line for line in self.payload.decode().splitlines() if line]


def login_for(master: RunningMaster) -> str | None:
    """The password a :class:`Watcher` needs on ``master``'s embedded broker (its admin token; None when insecure)."""
    return master.tokens.admin if master.tokens is not None else None


class Watcher:
    """An MQTT client that records every message on the topics it subscribed to."""

    def __init__(self, url: str, password: str | None = None) -> None:
        """``password``: an admin token, the login a secure master's embedded broker wants (:func:`login_for`)."""
        host, _, port = url.removeprefix("mqtt://").rpartition(":")
        self._client = aiomqtt.Client(
            host,
            int(port),
            identifier=f"watcher-{id(self):x}",
            username="admin" if password else None,
            password=password,
        )
        self.messages: list[Received] = []
        self._job: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watcher:
        await self._client.__aenter__()
        self._job = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._job is not None:
            self._job.cancel()
            await asyncio.gather(self._job, return_exceptions=True)
        await self._client.__aexit__(None, None, None)

    async def subscribe(self, *topics: str) -> None:
        for topic in topics:
            await self._client.subscribe(topic, qos=1)

    async def publish(self, topic: str, payload: bytes) -> None:
        await self._client.publish(topic, payload, qos=1)

    async def _collect(self) -> None:
        async for message in self._client.messages:
            payload = message.payload
            if isinstance(payload, bytes | bytearray):
                self.messages.append(Received(str(message.topic), bytes(payload), time.time()))

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    def records(self, topic: str) -> list[list[str]]:
        """Every record line that arrived on ``topic``, split into fields, in arrival order."""
        return [line.split() for m in self.on(topic) for line in m.lines()]

    def stats(self, topic: str) -> list[dict[str, Any]]:
        import json

        return [json.loads(m.payload) for m in self.on(topic)]

    async def wait(self, check: Callable[[], Any], within: float = 10.0) -> None:
        """Poll ``check`` until it is true, or fail with TimeoutError."""
        await eventually(check, within)
