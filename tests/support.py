"""Helpers shared by the integration suites: polling for a condition, and whether Docker can run the tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgerm.auth.client import bearer, resolve_token
from edgerm.auth.principal import Role
from edgerm.model import PullPolicy

WAIT = 10.0  # generous bound on loopback; tests wait for conditions, never for fixed times
TEST_IMAGE = os.environ.get("EDGERM_TEST_IMAGE", "edgerm-test/busybox:latest")


async def eventually(check: Callable[[], Any], within: float = WAIT, what: str | Callable[[], str] = "") -> None:
    """Poll ``check`` (sync or async) until it is true; fail with an AssertionError naming ``what``
    otherwise (a callable ``what`` is called then, to describe what was seen)."""
    try:
        async with asyncio.timeout(within):
            while True:
                result = check()
                if asyncio.iscoroutine(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not within {within}s: {(what() if callable(what) else what) or check}") from None


def admin_headers(master_url: str) -> dict[str, str]:
    """``Authorization`` with the admin token an in-process master provisioned ({} for an insecure one)."""
    return bearer(resolve_token(None, master_url, Role.ADMIN, env={}))


async def init_state_dir(state_dir: Path) -> dict[str, str]:
    """``edgerm-master init --state-dir STATE_DIR`` in a process of its own: its ``admin_token`` and ``join_token``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "edgerm.master.main", "init", "--state-dir", str(state_dir), "--format", "json"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    tokens: dict[str, str] = json.loads(out)
    return tokens


def docker_unavailable(image: str = TEST_IMAGE) -> str:
    """Empty when a Docker engine answers and holds the test image, else why not."""
    from edgerm.agent.docker_engine import DockerEngine, EngineError  # lazily: only the Docker suites need the SDK

    engine = DockerEngine()
    try:
        if not engine.ping():
            return "no Docker engine answers (run scripts/setup_docker.sh)"
        try:
            engine.ensure_image(image, PullPolicy.NEVER)
        except EngineError as e:
            return f"test image {image} missing (run scripts/setup_docker.sh): {e}"
    finally:
        engine.close()
    return ""


def require_docker(why_not: str) -> None:
    """Skip without Docker on a developer's machine; fail in CI, which must run the Docker tests."""
    if why_not:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Docker tests: {why_not}")
        pytest.skip(why_not)


async def oscore_transport(
    coap_url: str, work_dir: Path, agent_id: str, join_url: str | None = None, **options: Any
) -> Any:
    """A CoAP transport OSCORE-protected for ``agent_id``: it joins the in-process master at ``coap_url``
    (or at ``join_url``, with its provisioned join token) and keeps the context in ``work_dir``. Close it."""
    from edgerm.agent.coap_join import coap_security
    from edgerm.agent.coap_transport import CoapAgentTransport
    from edgerm.ids import AgentId

    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
    context, renew = await coap_security(coap_url, work_dir, AgentId(agent_id), join_url=join_url, deadline=0.0)
    assert context is not None, f"no OSCORE context for {agent_id}: is {coap_url} an in-process secure master?"
    return CoapAgentTransport(coap_url, security_context=context, renew=renew, **options)


FAULT_ENV = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # a child started with it dumps its threads on SIGABRT


async def exit_code(proc: asyncio.subprocess.Process, within: float, log: Path | None = None) -> int:
    """The child's exit code once it exits within ``within`` seconds. Otherwise abort it (a child started
    with :data:`FAULT_ENV` writes every thread's stack to its stderr then) and fail with that stack: from
    its stderr pipe, or from ``log`` if its stderr went to that file."""
    try:
        return await asyncio.wait_for(proc.wait(), within)
    except TimeoutError:
        pass
    proc.send_signal(signal.SIGABRT)
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()
    if log is not None:
        err = await asyncio.to_thread(log.read_text, errors="replace")
    elif proc.stderr is not None:
        err = (await proc.stderr.read()).decode(errors="replace")
    else:
        err = "(stderr not captured)"
    raise AssertionError(f"pid {proc.pid} did not exit within {within}s; its threads then:\n{err[-6000:]}")
