"""The Python operator SDK as a plain process (no Docker): the example operator against a real broker
(embedded amqtt), fed input batches as an upstream operator would publish them; SIGTERM ends it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.integration.dataflow_plane.brokers import Watcher, embedded

ROOT = Path(__file__).resolve().parents[3]
SCALE = ROOT / "examples" / "operators" / "python" / "scale.py"


def env(broker_url: str, replica: str = "0/1") -> dict[str, str]:
    return {
        **os.environ,
        "EDGERM_DF_DAG": "proc",
        "EDGERM_DF_OPERATOR": "scale",
        "EDGERM_DF_ROLE": "operator",
        "EDGERM_DF_IN": "edgerm/proc/read/out",
        "EDGERM_DF_OUT": "edgerm/proc/scale/out",
        "EDGERM_DF_REPLICA": replica,
        "EDGERM_BROKER": broker_url,
        "EDGERM_TASK_ID": "task-1",
        "EDGERM_AGENT_ID": "agent-1",
    }


async def test_the_example_operator_scales_records_and_reports_stats_until_sigterm() -> None:
    async with embedded() as broker, Watcher(broker.url) as watcher:
        await watcher.subscribe("edgerm/proc/scale/out", "edgerm/proc/scale/stats/0")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SCALE), "--scale", "2", "--offset", "1",
            env=env(broker.url), stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await watcher.wait(lambda: watcher.stats("edgerm/proc/scale/stats/0"), within=20)  # it is connected
            batch = b"read.0 0 1700000000.000000 10\nnot a record\nread.0 1 1700000000.100000 -3.5\n"
            await watcher.publish("edgerm/proc/read/out", batch)
            await watcher.wait(lambda: len(watcher.records("edgerm/proc/scale/out")) >= 2)
            assert watcher.records("edgerm/proc/scale/out") == [
                ["read.0", "0", "1700000000.000000", "21"],
                ["read.0", "1", "1700000000.100000", "-6"],
            ]
            await watcher.wait(
                lambda: any(s["in"] == 2 and s["out"] == 2 for s in watcher.stats("edgerm/proc/scale/stats/0"))
            )
            stats = watcher.stats("edgerm/proc/scale/stats/0")[-1]
            assert (stats["task"], stats["agent"], stats["dropped"], stats["errors"]) == ("task-1", "agent-1", 1, 0)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 10)
        assert code == 0


async def test_a_bad_environment_exits_2_naming_the_key() -> None:
    async with embedded() as broker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SCALE), env={**env(broker.url), "EDGERM_DF_IN": "edgerm/#"},
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2 and b"EDGERM_DF_IN" in err
