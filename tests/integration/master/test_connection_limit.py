"""Past its connection limit the master answers UNAVAILABLE and keeps serving: it never runs out of
descriptors, and it says so in one line, not a traceback per refused accept."""

from __future__ import annotations

import asyncio
import resource
import socket
import sys
from pathlib import Path

import aiohttp

from edgerm import wire
from edgerm.master.conn_guard import connection_limit
from tests.support import FAULT_ENV, eventually, exit_code

OPEN_FILES = 220  # the master's RLIMIT_NOFILE, soft and hard: it cannot raise it


def _low_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


async def test_connections_past_the_limit_are_refused_typed_and_the_rest_keep_working(tmp_path: Path) -> None:
    log_path = tmp_path / "master.log"
    log_file = log_path.open("wb")  # a file, not a pipe: a pipe nobody reads would block the master's logging
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgerm.master.main",
        "--insecure",
        "--state-dir",
        str(tmp_path),
        "--port",
        "0",
        "--no-coap",
        "--no-broker",
        stdout=asyncio.subprocess.PIPE,
        stderr=log_file,
        preexec_fn=_low_limit,
        env=FAULT_ENV,
    )
    held: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        url = line.split()[-1]
        host, port = url.removeprefix("http://").split(":")
        async with aiohttp.ClientSession() as kept:  # a keep-alive connection opened before the flood
            async with kept.get(url + "/metrics") as r:
                assert r.status == 200
            limit = connection_limit(OPEN_FILES)
            for _ in range(limit + 50):  # idle connections, as many agents' push streams would be
                held.append(socket.create_connection((host, int(port)), timeout=5))
                await asyncio.sleep(0)
            await asyncio.sleep(0.5)
            async with aiohttp.ClientSession() as fresh, fresh.get(url + "/metrics") as r:
                assert r.status == 503
                assert r.headers["Retry-After"] == "1"
                error = wire.decode_error(await r.read())
                assert error.code == "UNAVAILABLE" and f"limit of {limit} connections" in error.message
            async with kept.get(url + "/metrics") as r:  # the connection it already had still serves
                assert r.status == 200
            for s in held:
                s.close()
            held.clear()

            async def served() -> bool:
                async with aiohttp.ClientSession() as again, again.get(url + "/metrics") as r:
                    return r.status == 200

            await eventually(served, within=10, what="a new connection is served once the others closed")
        proc.terminate()
        assert await exit_code(proc, 20, log_path) == 0
        err = log_path.read_text()
        assert "Traceback" not in err
        refusals = [x for x in err.splitlines() if "refused since the last report" in x]
        assert 1 <= len(refusals) <= 3, err[-2000:]  # one line per 10 s and kind, however many were refused
    finally:
        log_file.close()
        for s in held:
            s.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
