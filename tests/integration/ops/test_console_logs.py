"""The real console scripts' logs: every lifecycle event once, with its ids, as JSON lines; no tracebacks.

A master and an agent run as ``edgerm-master`` / ``edgerm-agent`` processes with ``--log-format json``;
frameworks launch tasks that finish, fail and are killed (``edgerm kill``), one framework tears down and
one leaves, and the agent is SIGKILLed so the master declares it lost. Then the master's stderr is read
as a person reading the log would: each event is there, once, naming its task, framework and agent.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent
EXAMPLES = Path(__file__).resolve().parents[3] / "edgerm" / "examples"
DETACHED = """
import asyncio, os, sys
from edgerm import examples
from edgerm.frameworks import Framework, load_module, run, wasm_task
from edgerm.model import TaskState
LOOP = load_module(examples.path("wasm/loop.wat"))
class Forever(Framework):
    name = "forever"
    task_id = None
    async def resource_offers(self, driver, offers):
        for offer in offers:
            if self.task_id is None:
                task = wasm_task(offer, "forever", LOOP, resources="cpus:0.1;mem:32")
                self.task_id = task.task_id
                await driver.accept([offer.id], [task])
            else:
                await driver.decline([offer.id], refuse_seconds=30)
    async def status_update(self, driver, status):
        if status.state is TaskState.RUNNING:
            print(status.task_id, flush=True)
            await driver.stop(teardown=False)
asyncio.run(run(Forever(), os.environ["EDGERM_MASTER"]))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGERM_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        assert line.startswith("{"), f"not a JSON log line: {line!r}"
        out.append(json.loads(line))
    return out


def _init(state_dir: Path) -> dict[str, str]:
    """``edgerm-master init``: the admin and join tokens of a fresh state dir."""
    argv = [str(BIN / "edgerm-master"), "init", "--state-dir", str(state_dir), "--format", "json"]
    tokens: dict[str, str] = json.loads(_run(*argv, env=_env()).stdout)
    return tokens


TOKEN: dict[str, str] = {}  # the admin token of the master under test (for _state)


def _state(url: str) -> dict[str, Any]:
    request = urllib.request.Request(url + "/api/v1/state", headers={"Authorization": f"Bearer {TOKEN['admin']}"})
    with urllib.request.urlopen(request, timeout=5) as r:
        state: dict[str, Any] = json.load(r)
        return state


def _until(check: Any, within: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        time.sleep(0.05)


def _run(*argv: str, env: dict[str, str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_master_and_agent_logs_tell_every_event_once(tmp_path: Path) -> None:
    tokens = _init(tmp_path / "state")
    TOKEN["admin"] = tokens["admin_token"]
    master = subprocess.Popen(
        [
            str(BIN / "edgerm-master"),
            "--port",
            "0",
            "--no-coap",
            "--no-broker",
            "--log-format",
            "json",
            "--allocation-interval",
            "0.1",
            "--state-dir",
            str(tmp_path / "state"),
            "--unreachable-timeout",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "master.err").open("w"),
        text=True,
        env=_env(),
    )
    agent: subprocess.Popen[str] | None = None
    try:
        assert master.stdout is not None
        url = master.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:"), url
        env = _env(EDGERM_MASTER=url, EDGERM_TOKEN=tokens["admin_token"], EDGERM_JOIN_TOKEN=tokens["join_token"])
        config = tmp_path / "agent.yaml"
        config.write_text("heartbeat_interval: 0.3\nexecutors: [wasm]\nresources: {cpus: 2, mem: 512}\n")
        agent = subprocess.Popen(
            [
                str(BIN / "edgerm-agent"),
                "--config",
                str(config),
                "--work-dir",
                str(tmp_path / "a1"),
                "--name",
                "logged-1",
                "--log-format",
                "json",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "agent.err").open("w"),
            text=True,
            env=env,
        )
        _until(lambda: len(_state(url)["agents"]) == 1, what="the agent registered")
        agent_id = _state(url)["agents"][0]["id"]
        hello = [sys.executable, str(EXAMPLES / "hello_framework.py"), "--timeout", "30"]
        assert _run(*hello, "--tasks", "2", env=env).returncode == 0
        failed = _run(*hello, "--tasks", "1", "--module", str(EXAMPLES / "wasm" / "exit3.wat"), env=env)
        assert failed.returncode == 1, failed.stderr
        detached = _run(sys.executable, "-c", DETACHED, env=env)
        assert detached.returncode == 0, detached.stderr
        forever = detached.stdout.split()[-1]
        killed = _run(str(BIN / "edgerm"), "kill", forever, env=env)
        assert killed.returncode == 0 and "kill sent" in killed.stdout, killed
        waited = _run(str(BIN / "edgerm"), "task", forever, "--wait", "KILLED", env=env)
        assert waited.returncode == 0, waited
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait()
        _until(lambda: not _state(url)["agents"], what="the master declared the agent lost")
    finally:
        for p in (agent, master):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=15)
    master_lines = _json_lines((tmp_path / "master.err").read_text())
    agent_lines = _json_lines((tmp_path / "agent.err").read_text())
    text = json.dumps(master_lines + agent_lines)
    assert "Traceback" not in text
    events = [line for line in master_lines if line.get("event")]
    counts = Counter(str(line["event"]) for line in events)
    assert counts["agent_registered"] == 1 and counts["agent_lost"] == 1, counts
    assert counts["agent_unreachable"] == 1, counts
    assert counts["framework_subscribed"] == 3 and counts["framework_torn_down"] == 2, counts
    assert counts["framework_disconnected"] == 1, counts
    assert counts["task_launched"] == 4 and counts["task_finished"] == 2, counts
    assert counts["task_failed"] == 1 and counts["task_killed"] == 1, counts
    for line in events:
        if str(line["event"]).startswith("task_"):
            assert line["task_id"] and line["framework_id"] and line["agent_id"] == agent_id, line
        elif str(line["event"]).startswith("agent_"):
            assert line["agent_id"] == agent_id, line
        else:
            assert line["framework_id"], line
    [fail] = [line for line in events if line["event"] == "task_failed"]
    assert fail["reason"] == "COMMAND_EXITED" and fail["exit_code"] == 3, fail
    [kill] = [line for line in events if line["event"] == "task_killed"]
    assert kill["task_id"] == forever
    # The agent: one line per task start and end, with the same ids.
    agent_events = Counter(str(line.get("event")) for line in agent_lines if line.get("event"))
    assert agent_events["task_starting"] == 4 and agent_events["task_running"] == 4, agent_events
    assert agent_events["task_finished"] == 2 and agent_events["task_failed"] == 1, agent_events
    assert agent_events["task_killed"] == 1, agent_events
    assert all(line["agent_id"] == agent_id for line in agent_lines if line.get("event"))


def _busy_tcp() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, int(s.getsockname()[1])


@pytest.mark.parametrize("flag", ["--port", "--coap-port", "--broker-port"])
def test_a_busy_master_port_is_one_line_naming_port_and_flag(flag: str, tmp_path: Path) -> None:
    _init(tmp_path / "state")
    kind = socket.SOCK_DGRAM if flag == "--coap-port" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            s.listen()
        port = s.getsockname()[1]
        ports = {"--port": "0", "--coap-port": "0", "--broker-port": "0", flag: str(port)}
        ports["--state-dir"] = str(tmp_path / "state")
        argv = [str(BIN / "edgerm-master"), *(x for kv in ports.items() for x in kv), "--log-level", "WARNING"]
        r = _run(*argv, env=_env(), timeout=30)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(port) in lines[0] and flag in lines[0] and "Traceback" not in r.stderr


def test_a_busy_dataflow_serve_port_is_one_line() -> None:
    s, port = _busy_tcp()
    with s:
        r = _run(str(BIN / "edgerm-dataflow"), "serve", "--port", str(port), env=_env(), timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"edgerm-dataflow: port 127.0.0.1:{port} is already in use; choose another with --port"
    ]


@pytest.mark.parametrize("script", ["edgerm-master", "edgerm-agent", "edgerm", "edgerm-dataflow"])
def test_every_console_script_has_version_and_help_with_defaults(script: str) -> None:
    import edgerm

    version = _run(str(BIN / script), "--version", env=_env(), timeout=30)
    assert version.returncode == 0 and version.stdout.strip() == f"{script} {edgerm.__version__}"
    help_ = _run(str(BIN / script), "--help", env=_env(), timeout=30)
    assert help_.returncode == 0 and "(default: " in help_.stdout and "--log-format" in help_.stdout
