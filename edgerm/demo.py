"""The README demo: a master, three agents and the temperature pipeline, as real processes.

    python -m edgerm.demo [--seconds 6] [--port 0]

Starts ``edgerm-master`` on 127.0.0.1 (an ephemeral port unless given) with
its embedded MQTT broker (on another ephemeral port), three ``edgerm-agent``
processes (``sensor-1``: domain=edge with a simulated temperature sensor
``sim:sine``; ``edge-2``: domain=edge; ``cloud-1``: domain=cloud), then runs
``edgerm-dataflow run examples/dataflows/temperature.yaml`` for ``--seconds``:
it places the operators (the source and the Fahrenheit map at the edge, the
average and the console sink in the cloud), prints live status and the
records arriving at the sink, and tears the DAG down. It then prints the
cluster's tasks with the ``edgerm`` CLI and stops every process it started,
whatever happens. Exits with the dataflow's status (0 when it ran and records
reached the sink).

Security is on, as in any cluster: the demo runs ``edgerm-master init`` in a
temporary state dir, makes a framework token with ``edgerm token create``,
lets the agents join with the join token (``EDGERM_JOIN_TOKEN``), and gives
the dataflow its framework token and the ``edgerm`` CLI the admin token
(``EDGERM_TOKEN``). No token is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from edgerm import examples

PIPELINE = examples.path("dataflows/temperature.yaml")
AGENTS = (
    ("sensor-1", "edge", "temperature"),
    ("edge-2", "edge", ""),
    ("cloud-1", "cloud", ""),
)


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
        try:
            urllib.request.urlopen(url, timeout=0.5).close()
            return
        except urllib.error.HTTPError:  # it answers (401 without a token): it is up
            return
        except OSError:
            pass
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


def _agent_config(tmp: Path, name: str, domain: str, device: str) -> Path:
    path = tmp / f"{name}.yaml"
    devices = f"devices: [{{name: {device}, handle: 'sim:sine'}}]\n" if device else ""
    path.write_text(
        f"name: {name}\n"
        f"work_dir: {tmp / name}\n"
        "heartbeat_interval: 0.5\n"
        "resources: {cpus: 2, mem: 1024}\n"
        f"attributes: {{domain: {domain}}}\n"
        "executors: [wasm]\n" + devices
    )
    return path


def _count_agents(url: str, token: str) -> int:
    request = urllib.request.Request(url + "/api/v1/state", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=1) as resp:
            return len(json.load(resp).get("agents", []))
    except OSError:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edgerm-demo", description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="how long the pipeline runs")
    parser.add_argument("--port", type=int, default=0, help="master port (0: an ephemeral one)")
    args = parser.parse_args(argv)
    port = args.port or _free_port()
    broker_port = _free_port()
    url = f"http://127.0.0.1:{port}"
    broker = f"mqtt://127.0.0.1:{broker_port}"
    py = sys.executable
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "EDGERM_MASTER": url}
    with tempfile.TemporaryDirectory(prefix="edgerm-demo-") as tmpdir, _processes() as procs:
        tmp = Path(tmpdir)
        state_dir = tmp / "master"
        _say(f"edgerm-master init --state-dir {state_dir} (an admin and a join token; the file keeps their hashes)")
        init = [py, "-m", "edgerm.master.main", "init", "--state-dir", str(state_dir), "--format", "json"]
        tokens = json.loads(subprocess.run(init, env=env, check=True, capture_output=True, text=True).stdout)
        create = [py, "-m", "edgerm.cli", "token", "create", "--role", "framework", "--name", "dataflow"]
        create += ["--state-dir", str(state_dir), "--quiet"]
        framework_token = subprocess.run(create, env=env, check=True, capture_output=True, text=True).stdout.strip()
        admin_env = {**env, "EDGERM_TOKEN": tokens["admin_token"]}
        _say(f"starting the master on {url} with its MQTT broker on {broker}")
        cmd = [py, "-m", "edgerm.master.main", "--host", "127.0.0.1", "--port", str(port), "--no-coap"]
        cmd += ["--broker-port", str(broker_port), "--log-level", "WARNING", "--state-dir", str(state_dir)]
        procs.append(subprocess.Popen(cmd, env=env))
        _wait_for(url + "/api/v1/state", procs[-1])
        for name, domain, device in AGENTS:
            extra = f", simulated {device} sensor (sim:sine)" if device else ""
            _say(f"starting agent {name} (domain={domain}{extra})")
            cfg = _agent_config(tmp, name, domain, device)
            agent = [py, "-m", "edgerm.agent.main", "--master", url, "--config", str(cfg), "--log-level", "WARNING"]
            procs.append(subprocess.Popen(agent, env={**env, "EDGERM_JOIN_TOKEN": tokens["join_token"]}))
        deadline = time.monotonic() + 20
        while _count_agents(url, tokens["admin_token"]) < len(AGENTS):
            if time.monotonic() > deadline:
                raise SystemExit("demo: the agents did not register within 20s")
            time.sleep(0.1)
        subprocess.run([py, "-m", "edgerm.cli", "--master", url, "agents"], env=admin_env, check=False)
        _say(f"edgerm-dataflow run {PIPELINE} for {args.seconds:g}s")
        run = [py, "-m", "edgerm.frameworks.dataflow.cli", "run", str(PIPELINE), "--master", url, "--broker", broker]
        run += ["--duration", str(args.seconds), "--deadline", "30", "--status-interval", "2", "--min-records", "1"]
        code = subprocess.run(run, env={**env, "EDGERM_TOKEN": framework_token}, check=False).returncode
        _say("the cluster's tasks afterwards")
        subprocess.run([py, "-m", "edgerm.cli", "--master", url, "tasks"], env=admin_env, check=False)
        _say("stopping everything")
    print("demo " + ("finished: the pipeline ran and was torn down" if code == 0 else f"failed (dataflow exit {code})"))
    return code


if __name__ == "__main__":
    sys.exit(main())
