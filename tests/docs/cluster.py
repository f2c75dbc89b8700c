"""The test cluster the docs run against, and a runner that leaves no process behind.

:func:`start_cluster` is the ONE place that starts the master and agents the docs' blocks talk to:
``edgerm-master`` on ephemeral HTTP, CoAP and MQTT ports of 127.0.0.1 and three ``edgerm-agent``
processes like the demo's (``sensor-1`` domain=edge with a simulated ``temperature`` sensor, ``edge-2``
domain=edge, ``cloud-1`` domain=cloud), all real console scripts. What a block needs to reach it is in
:attr:`DocsCluster.env` (``EDGERM_MASTER`` today; when the master requires credentials, start it with them
here and put the client's token variable in ``env``: every block and every command gets it) and in
:attr:`DocsCluster.rewrites` (the docs' default URLs, ``http://127.0.0.1:5050`` and friends, mapped to the
real ones).

:func:`run_script` runs a block in its own process group and, when it ends or times out, reports which of
its processes were still alive and then kills the whole group, so a recipe that starts daemons in the
background cannot leak them.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
DOC_MASTER = "http://127.0.0.1:5050"
DOC_COAP = "coap://127.0.0.1:5683"
DOC_BROKER = "mqtt://127.0.0.1:1883"
MASTER_ARGS = ("--allocation-interval", "0.1")  # its --state-dir (credentials, registry) is the test's own
AGENTS = (("sensor-1", "edge", "temperature"), ("edge-2", "edge", ""), ("cloud-1", "cloud", ""))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(extra: Mapping[str, str] = {}, bin_dir: Path = BIN) -> dict[str, str]:
    """A venv's scripts first on PATH (this interpreter's by default), unbuffered output, no inherited EDGERM_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGERM_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class DocsCluster:
    url: str
    coap_url: str
    broker_url: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    token: str = ""  # the admin token `edgerm-master init` made for this cluster
    join_token: str = ""

    @property
    def env(self) -> dict[str, str]:
        """What every block's process gets to reach this cluster: its URL and credentials."""
        return {"EDGERM_MASTER": self.url, "EDGERM_TOKEN": self.token, "EDGERM_JOIN_TOKEN": self.join_token}

    @property
    def rewrites(self) -> dict[str, str]:
        return {DOC_MASTER: self.url, DOC_COAP: self.coap_url, DOC_BROKER: self.broker_url}

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _agent_config(tmp: Path, name: str, domain: str, device: str) -> Path:
    path = tmp / f"{name}.yaml"
    devices = f"devices: [{{name: {device}, handle: 'sim:sine', shared: true}}]\n" if device else ""
    path.write_text(
        f"name: {name}\nwork_dir: {tmp / name}\nheartbeat_interval: 0.5\n"
        f"resources: {{cpus: 4, mem: 2048}}\nattributes: {{domain: {domain}}}\nexecutors: [wasm]\n" + devices
    )
    return path


def _read_urls(proc: subprocess.Popen[str], timeout: float, log: Path) -> dict[str, str]:
    """The URLs the master prints at start (HTTP, CoAP, MQTT); everything it prints goes on to ``log``."""
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    out = proc.stdout

    def pump() -> None:
        with log.open("a") as f:
            for line in out:
                lines.put(line)
                f.write(line)
                f.flush()

    threading.Thread(target=pump, daemon=True).start()
    urls: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(urls) < 3:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise RuntimeError(f"edgerm-master printed {urls} within {timeout}s") from None
        for url in re.findall(r"(?:http|coap|mqtt)://[\w.:\[\]]+", line):
            urls.setdefault(url.partition(":")[0], url)
    return urls


def start_cluster(tmp: Path, timeout: float = 60.0, bin_dir: Path = BIN) -> DocsCluster:
    """The test cluster, from the console scripts in ``bin_dir`` (this venv's, or an installed wheel's)."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = base_env(bin_dir=bin_dir)
    state = tmp / "master-state"
    init = [str(bin_dir / "edgerm-master"), "init", "--state-dir", str(state), "--format", "json"]
    tokens = json.loads(subprocess.run(init, check=True, capture_output=True, text=True, env=env).stdout)
    env["EDGERM_JOIN_TOKEN"] = tokens["join_token"]  # the agents join with it
    master_log = tmp / "master.log"
    ports = ["--port", "0", "--coap-port", "0", "--broker-port", "0", "--state-dir", str(state)]
    master = subprocess.Popen(
        [str(bin_dir / "edgerm-master"), *ports, *MASTER_ARGS],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    cluster = DocsCluster("", "", "", [master], [master_log], tokens["admin_token"], tokens["join_token"])
    try:
        urls = _read_urls(master, timeout, master_log)
        http, coap, mqtt = urls["http"], urls["coap"], urls["mqtt"]
        cluster.url, cluster.coap_url, cluster.broker_url = http, coap, mqtt
        for name, domain, device in AGENTS:
            log = tmp / f"{name}.log"
            cmd = [
                str(bin_dir / "edgerm-agent"),
                "--master",
                http,
                "--config",
                str(_agent_config(tmp, name, domain, device)),
            ]
            with log.open("w") as f:
                cluster.procs.append(subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env))
            cluster.logs.append(log)
        _wait_agents(http, len(AGENTS), timeout, cluster.token)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_agents(url: str, n: int, timeout: float, token: str) -> None:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url + "/api/v1/state", headers={"Authorization": f"Bearer {token}"})
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=2) as r:
                if len(json.load(r).get("agents", [])) >= n:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{n} agents did not register at {url} within {timeout}s")


# -- running blocks ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    returncode: int | None  # None: timed out
    output: str
    leftovers: list[str]  # command lines still running when the script ended

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-n:])


def _group_members(pgid: int) -> list[str]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                out.append(cmdline.strip())
        except (OSError, IndexError, ValueError):
            continue
    return out


def _kill_group(pgid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _group_members(pgid):
            time.sleep(0.05)


def run_script(argv: list[str], cwd: Path, env: Mapping[str, str], timeout: float, log: Path) -> Result:
    """Run ``argv`` in a new process group, output to ``log`` (a file: daemons it leaves cannot hold a pipe open)."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    pgid = proc.pid
    try:
        code: int | None = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    leftovers = _group_members(pgid)
    if leftovers:  # a child forked just before the script ended may not have exec'd yet: name it once it has
        time.sleep(0.5)
        leftovers = _group_members(pgid) or leftovers
    _kill_group(pgid)
    proc.wait()
    return Result(code, log.read_text(errors="replace"), leftovers)
