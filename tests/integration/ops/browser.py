"""A headless Chromium driven over the DevTools protocol (aiohttp websockets), for the dashboard tests.

One browser process per test module: a fresh profile in a temporary
directory, every background network feature off, so the only traffic is to
the pages it is sent to on 127.0.0.1. :class:`Browser` opens a tab,
navigates, evaluates JavaScript in the page, and takes full-page
screenshots. Skipped when Chromium is not installed (CI installs it with
scripts/setup_chromium.sh and then must run these tests).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--window-size=1360,900",
    "--remote-debugging-port=0",
)
WAIT = 30.0


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    binary = chromium_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the dashboard browser tests: install chromium (scripts/setup_chromium.sh)")
        pytest.skip("chromium is not installed (scripts/setup_chromium.sh)")
    return binary


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class Tab:
    """One page target over its own websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._waiting:
                self._waiting.pop(data["id"]).set_result(data)
            elif "method" in data:
                self._events.put_nowait(data)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        await self._ws.send_str(json.dumps({"id": call_id, "method": method, "params": params}))
        async with asyncio.timeout(WAIT):
            reply = await future
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def goto(self, url: str) -> None:
        """Navigate and wait for the load event."""
        while not self._events.empty():
            self._events.get_nowait()
        await self.send("Page.navigate", url=url)
        async with asyncio.timeout(WAIT):
            while (await self._events.get())["method"] != "Page.loadEventFired":
                pass

    async def js(self, expression: str) -> Any:
        """Evaluate ``expression`` in the page (promises awaited) and return its JSON value."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} raised: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def text(self) -> str:
        return str(await self.js("document.body.innerText"))

    async def screenshot(self, path: Path) -> None:
        """A PNG of the whole page (as tall as its content)."""
        height = int(await self.js("Math.max(document.documentElement.scrollHeight, 600)"))
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=1360,
            height=min(height, 6000),
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = await self.send("Page.captureScreenshot", format="png")
        await asyncio.to_thread(_write, path, base64.b64decode(shot["data"]))
        await self.send("Emulation.clearDeviceMetricsOverride")

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()


class Browser:
    """A headless Chromium process and a DevTools session to it."""

    def __init__(self, binary: str) -> None:
        self._binary = binary
        self._profile = tempfile.TemporaryDirectory(prefix="edgerm-chromium-")
        self._proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._base = ""
        self.console: list[str] = []

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            self._binary,
            *FLAGS,
            f"--user-data-dir={self._profile.name}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self._proc.stderr is not None
        async with asyncio.timeout(WAIT):
            while True:
                line = (await self._proc.stderr.readline()).decode()
                if not line:
                    raise RuntimeError("chromium exited before it listened for DevTools")
                if line.startswith("DevTools listening on ws://"):
                    break
        # ws://127.0.0.1:PORT/devtools/browser/ID -> http://127.0.0.1:PORT
        self._base = "http://" + line.split("ws://", 1)[1].split("/", 1)[0]
        self._drain = asyncio.create_task(self._drain_stderr())
        self._http = aiohttp.ClientSession()

    async def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        while await self._proc.stderr.readline():
            pass

    async def tab(self) -> Tab:
        assert self._http is not None
        async with self._http.put(self._base + "/json/new?about:blank") as r:
            target = await r.json()
        ws = await self._http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024)
        tab = Tab(ws)
        await tab.send("Page.enable")
        await tab.send("Runtime.enable")
        return tab

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await self._proc.wait()
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if hasattr(self, "_drain"):
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
        self._profile.cleanup()
