"""``edgerm-master`` as a process: binds, serves, and exits cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from edgerm.master.main import parse_args
from tests.support import init_state_dir


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_master_process_serves_and_shuts_down_cleanly(sig: signal.Signals, tmp_path: Path) -> None:
    admin = (await init_state_dir(tmp_path))["admin_token"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgerm.master.main",
        "--state-dir",
        str(tmp_path),
        "--port",
        "0",
        "--coap-port",
        "0",
        "--broker-port",
        "0",
        "--offer-timeout",
        "5",
        "--log-level",
        "WARNING",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line.startswith("edgerm-master listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        headers = {"Authorization": f"Bearer {admin}"}
        async with aiohttp.ClientSession() as session, session.get(url + "/api/v1/state", headers=headers) as r:
            assert r.status == 200
            state = await r.json()
        assert state["master"]["offer_timeout"] == 5.0
        proc.send_signal(sig)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        assert proc.stderr is not None
        assert b"Traceback" not in await proc.stderr.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_flags_are_checked() -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--offer-timeout", "0"])
    assert exc.value.code == 2
    args = parse_args(["--port", "6000", "--allocation-interval", "0.5", "--max-body", "1024"])
    assert (args.port, args.allocation_interval, args.max_body) == (6000, 0.5, 1024)
    assert args.max_outstanding_offers == 100
    assert parse_args(["--max-outstanding-offers", "0"]).max_outstanding_offers == 0  # no limit
    with pytest.raises(SystemExit):
        parse_args(["--max-outstanding-offers", "-1"])
