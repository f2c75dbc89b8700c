"""``edgerm-master`` as a process: init, refusing to start without credentials, --insecure, SIGHUP rotation."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from edgerm.auth.credentials import CREDENTIALS_FILE
from tests.support import eventually, init_state_dir

MASTER = (sys.executable, "-m", "edgerm.master.main")
QUIET = ("--port", "0", "--no-coap", "--no-broker", "--log-level", "WARNING")


async def _run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@asynccontextmanager
async def _master(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    proc = await asyncio.create_subprocess_exec(
        *MASTER, *QUIET, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert "listening on http" in line, line
        yield proc, line.split()[-1]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _status(url: str, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(url + "/api/v1/state", headers=headers) as r:
        return r.status


async def test_without_credentials_the_master_refuses_to_start_and_says_how(tmp_path: Path) -> None:
    code, out, err = await _run(*MASTER, *QUIET, "--state-dir", str(tmp_path / "empty"))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "edgerm-master init --state-dir" in err and "--insecure" in err


async def test_init_prints_the_tokens_once_and_stores_hashes(tmp_path: Path) -> None:
    code, out, _ = await _run(*MASTER, "init", "--state-dir", str(tmp_path))
    assert code == 0
    admin = next(line.split()[-1] for line in out.splitlines() if line.startswith("admin token:"))
    join = next(line.split()[-1] for line in out.splitlines() if line.startswith("join token:"))
    stored = (tmp_path / CREDENTIALS_FILE).read_text()
    assert admin not in stored and join not in stored and "sha256:" in stored
    assert (tmp_path / CREDENTIALS_FILE).stat().st_mode & 0o077 == 0
    code, _, err = await _run(*MASTER, "init", "--state-dir", str(tmp_path))
    assert code == 1 and "already holds credentials" in err  # never overwritten


async def test_sighup_picks_up_new_and_revoked_tokens(tmp_path: Path) -> None:
    tokens = await init_state_dir(tmp_path)
    cli = (sys.executable, "-m", "edgerm.cli", "token")
    async with _master("--state-dir", str(tmp_path)) as (proc, url):
        assert await _status(url, tokens["admin_token"]) == 200
        code, out, _ = await _run(*cli, "create", "--role", "admin", "--name", "ops", "--state-dir", str(tmp_path))
        assert code == 0
        ops = next(line.split()[-1] for line in out.splitlines() if line.startswith("token:"))
        assert await _status(url, ops) == 401  # not before SIGHUP
        proc.send_signal(signal.SIGHUP)
        await eventually(lambda: _is(url, ops, 200), what="the new token works after SIGHUP")
        code, _, err = await _run(*cli, "revoke", "ops", "--state-dir", str(tmp_path), "--reload")
        assert code == 0 and f"pid {proc.pid}" in err  # --reload found the master by its pid file
        await eventually(lambda: _is(url, ops, 401), what="the revoked token stops working after SIGHUP")
        assert await _status(url, tokens["admin_token"]) == 200
    assert proc.stderr is not None
    err = (await proc.stderr.read()).decode()
    assert "Traceback" not in err and tokens["admin_token"] not in err and ops not in err
    assert not (tmp_path / "master.pid").exists()  # removed at exit
    code, _, err = await _run(*cli, "revoke", "admin", "--state-dir", str(tmp_path), "--reload")
    assert code == 1 and "no running master" in err


async def _is(url: str, token: str, status: int) -> bool:
    return await _status(url, token) == status


async def test_insecure_mode_warns_loudly(tmp_path: Path) -> None:
    async with _master("--insecure") as (proc, url):
        assert await _status(url, "") == 200
    assert proc.stderr is not None
    err = (await proc.stderr.read()).decode()
    assert "WARNING" in err and "INSECURE MODE" in err
