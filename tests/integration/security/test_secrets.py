"""A planted secret reaches its task and nothing else: no state, dashboard, metrics, log (DEBUG) or CLI output.

A real master, a real agent (wasmtime) and a real framework over HTTP. The
task's module finds ``API_KEY=`` in its WASI environment and copies the value
to its stdout, so the task proves it got the secret (``secret_env`` merged
into its environment); the module itself does not contain the secret. Then
every output of the cluster is searched for the secret, and for the
credentials of the principals involved.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiohttp
import pytest
import wasmtime

from edgerm import cli
from edgerm.agent.config import AgentConfig
from edgerm.agent.main import start_agent
from edgerm.frameworks import Framework, wasm_task
from edgerm.frameworks.http_driver import HttpDriver
from edgerm.master.main import RunningMaster
from edgerm.model import Offer, TaskState, TaskStatus
from tests.support import admin_headers

SECRET = "s3cr3t-planted-7f3a9c"
NEEDLE = "API_KEY="

#: Find NEEDLE in the environment block, write the rest of that entry to stdout, exit 0 (3: not found).
ECHO_SECRET = f"""
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{NEEDLE}")
  (func (export "_start")
    (local $size i32) (local $i i32) (local $j i32) (local $end i32) (local $k i32)
    (drop (call $sizes (i32.const 256) (i32.const 260)))
    (local.set $size (i32.load (i32.const 260)))
    (drop (call $get (i32.const 1024) (i32.const 8192)))
    (local.set $end (i32.sub (i32.add (i32.const 8192) (local.get $size)) (i32.const {len(NEEDLE)})))
    (local.set $i (i32.const 8192))
    (block $notfound
      (loop $outer
        (br_if $notfound (i32.gt_s (local.get $i) (local.get $end)))
        (local.set $j (i32.const 0))
        (block $mismatch
          (loop $inner
            (br_if $mismatch
              (i32.ne (i32.load8_u (i32.add (local.get $i) (local.get $j))) (i32.load8_u (local.get $j))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (if (i32.eq (local.get $j) (i32.const {len(NEEDLE)}))
              (then
                (local.set $k (i32.add (local.get $i) (local.get $j)))
                (block $done (loop $scan
                  (br_if $done (i32.eqz (i32.load8_u (local.get $k))))
                  (local.set $k (i32.add (local.get $k) (i32.const 1)))
                  (br $scan)))
                (i32.store (i32.const 512) (i32.add (local.get $i) (local.get $j)))
                (i32.store (i32.const 516) (i32.sub (local.get $k) (i32.add (local.get $i) (local.get $j))))
                (drop (call $write (i32.const 1) (i32.const 512) (i32.const 1) (i32.const 520)))
                (call $exit (i32.const 0))))
            (br $inner)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $outer)))
    (call $exit (i32.const 3))))
"""


class OneSecretTask(Framework):
    name = "secretive"

    def __init__(self, module: bytes) -> None:
        self.module = module
        self.launched = False
        self.done: asyncio.Future[TaskStatus] = asyncio.get_running_loop().create_future()

    async def resource_offers(self, driver: object, offers: list[Offer]) -> None:
        assert isinstance(driver, HttpDriver)
        for offer in offers:
            if self.launched:
                await driver.decline([offer.id])
                continue
            self.launched = True
            task = wasm_task(
                offer, "uses-a-secret", self.module, env={"PLAIN": "visible"}, secret_env={"API_KEY": SECRET}
            )
            await driver.accept([offer.id], [task])

    async def status_update(self, driver: object, status: TaskStatus) -> None:
        if status.state.terminal and not self.done.done():
            self.done.set_result(status)


async def test_a_planted_secret_appears_in_no_output(
    master: RunningMaster, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    module = bytes(wasmtime.wat2wasm(ECHO_SECRET))
    assert SECRET.encode() not in module
    config = AgentConfig(heartbeat_interval=0.1, executors=frozenset({"wasm"}))
    async with start_agent(master.url, config, tmp_path / "agent"):
        framework = OneSecretTask(module)
        driver = HttpDriver(framework, master.url)
        run = asyncio.create_task(driver.run())
        try:
            status = await asyncio.wait_for(framework.done, 30)
            assert status.state is TaskState.FINISHED, status
            # The task got the secret: it copied it to its own stdout, on the agent.
            outputs = [p.read_text() for p in (tmp_path / "agent").rglob("stdout")]
            assert SECRET in outputs, outputs

            auth = admin_headers(master.url)
            texts: dict[str, str] = {"status": repr(status)}
            async with aiohttp.ClientSession() as http:
                for path in ("/api/v1/state", "/metrics", "/"):
                    async with http.get(master.url + path, headers=auth) as r:
                        assert r.status == 200
                        texts[path] = await r.text()
            for kind in ("tasks", "frameworks", "agents"):
                # In a thread: the CLI blocks, and the master serves on this event loop.
                assert await asyncio.to_thread(cli.main, ["--master", master.url, kind]) == 0
                assert await asyncio.to_thread(cli.main, ["--master", master.url, "--json", kind]) == 0
            texts["cli"] = capsys.readouterr().out
            assert "uses-a-secret" in texts["cli"] and "uses-a-secret" in texts["/api/v1/state"]
        finally:
            await driver.stop()
            await run
    texts["logs"] = caplog.text
    assert master.tokens is not None
    saved = json.loads((tmp_path / "agent" / "credential.json").read_text())["token"]
    for where, text in texts.items():
        assert SECRET not in text, f"the secret leaked into {where}"
        for name, token in (("admin", master.tokens.admin), ("join", master.tokens.join), ("agent", saved)):
            assert token not in text, f"the {name} token leaked into {where}"
    assert "module" not in json.loads(texts["/api/v1/state"])["tasks"][0]
