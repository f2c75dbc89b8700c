"""Real processes for chaos tests: masters and agents as children, always reaped.

Each child's output goes to a log file in the test's tmp dir; the test reads
it to check that no traceback was printed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path
from typing import BinaryIO

import aiohttp

from tests.support import init_state_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Processes:
    """Child processes of one test, killed and reaped at the end whatever happens.

    ``env`` is added to every child's environment (the tokens :func:`secure` provisions).
    """

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self.env: dict[str, str] = {}
        self.admin_token = ""

    async def secure(self, state_dir: Path) -> list[str]:
        """``edgerm-master init`` in ``state_dir``: children get the join token, this test the admin one.
        Returns the master's ``--state-dir`` flags."""
        tokens = await init_state_dir(state_dir)
        self.admin_token = tokens["admin_token"]
        self.env["EDGERM_JOIN_TOKEN"] = tokens["join_token"]
        return ["--state-dir", str(state_dir)]

    async def start(self, *args: str, log: Path) -> asyncio.subprocess.Process:
        out = _append(log)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *args, stdout=out, stderr=asyncio.subprocess.STDOUT, env=_env() | self.env
            )
        finally:
            out.close()
        self.procs.append(proc)
        return proc

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _append(path: Path) -> BinaryIO:
    return open(path, "ab")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "EDGERM_MASTER"}


async def master_state(url: str, token: str) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http, http.get(url + "/api/v1/state", headers=headers) as resp:
        state: dict[str, object] = await resp.json()
        return state


def no_tracebacks(*logs: Path) -> None:
    for log in logs:
        text = log.read_text()
        assert "Traceback" not in text, f"{log.name}: {text[-3000:]}"
