"""The README demo: a master, two agents and a framework running WebAssembly tasks, as real processes.

    python -m edgerm.demo [--tasks 4] [--port 0]

Starts ``edgerm-master`` on 127.0.0.1 (an ephemeral port unless given), two
``edgerm-agent`` processes (one labelled ``domain=edge``, one ``domain=cloud``),
runs ``examples/hello_framework.py`` against them, prints the cluster with the
``edgerm`` CLI, and stops every process it started, whatever happens. Exits
with the framework's status (0 when every task FINISHED).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "examples" / "hello_framework.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: {proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=0.5).close()
            return
        time.sleep(0.1)
    raise SystemExit(f"demo: nothing answered at {url} within {timeout:g}s")


@contextlib.contextmanager
def _processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _agent_config(tmp: Path, name: str, domain: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(
        f"name: {name}\n"
        f"work_dir: {tmp / name}\n"
        "heartbeat_interval: 0.5\n"
        "resources: {cpus: 2, mem: 1024}\n"
        f"attributes: {{domain: {domain}}}\n"
    )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgerm-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4, help="WebAssembly tasks to run (default 4)")
    parser.add_argument("--port", type=int, default=0, help="master port (default: an ephemeral one)")
    args = parser.parse_args(argv)
    port = args.port or _free_port()
    url = f"http://127.0.0.1:{port}"
    py = sys.executable
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "EDGERM_MASTER": url}
    with tempfile.TemporaryDirectory(prefix="edgerm-demo-") as tmpdir, _processes() as procs:
        tmp = Path(tmpdir)
        _say(f"starting the master on {url}")
        cmd = [py, "-m", "edgerm.master.main", "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"]
        procs.append(subprocess.Popen(cmd, env=env))
        _wait_for(url + "/api/v1/state", procs[-1])
        for name, domain in (("edge-1", "edge"), ("cloud-1", "cloud")):
            _say(f"starting agent {name} (domain={domain})")
            cfg = _agent_config(tmp, name, domain)
            agent = [py, "-m", "edgerm.agent.main", "--master", url, "--config", str(cfg), "--log-level", "WARNING"]
            procs.append(subprocess.Popen(agent, env=env))
        deadline = time.monotonic() + 20
        while _count_agents(url) < 2:
            if time.monotonic() > deadline:
                raise SystemExit("demo: the agents did not register within 20s")
            time.sleep(0.1)
        subprocess.run([py, "-m", "edgerm.cli", "--master", url, "agents"], env=env, check=False)
        _say(f"running examples/hello_framework.py with {args.tasks} WebAssembly tasks")
        hello = [py, str(HELLO), "--master", url, "--tasks", str(args.tasks), "--timeout", "60"]
        code = subprocess.run(hello, env=env, check=False).returncode
        _say("the cluster afterwards")
        subprocess.run([py, "-m", "edgerm.cli", "--master", url, "tasks"], env=env, check=False)
        _say("stopping everything")
    print("demo " + ("finished: every task FINISHED" if code == 0 else f"failed (framework exit {code})"))
    return code


def _count_agents(url: str) -> int:
    import json

    try:
        with urllib.request.urlopen(url + "/api/v1/state", timeout=1) as resp:
            return len(json.load(resp).get("agents", []))
    except OSError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
