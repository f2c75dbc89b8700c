#!/usr/bin/env python3
"""footprint: the resident memory (RSS) of an idle agent, HTTP and CoAP, WASM-only and with Docker.

    python bench/footprint.py [--settle 5] [--samples 5]

Starts one ``edgerm-master`` (HTTP and CoAP, no broker), then one ``edgerm-agent`` process at a time
with a 1 s heartbeat: over HTTP and over CoAP, each WASM-only (``executors: [wasm]``) and with Docker
(``executors: [wasm, docker]``; counted only when a Docker engine answers, else marked unavailable).
After it registered and ``--settle`` seconds of heartbeats, its RSS is sampled ``--samples`` times, 1 s
apart (the figure is the largest sample: what the device must have free).

Baselines, measured in the same run as processes of the same interpreter: a bare ``python`` idling,
and one that imported what every agent must (aiohttp and protobuf), both sleeping. Results are saved
to bench/results/footprint.json with ratios against the aiohttp+protobuf baseline; the issue's target
is at most 40 MB for an idle agent. Also recorded: which heavy modules each agent had imported.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, save, spawn, stop

BIN = Path(sys.executable).parent
QUIET = ("--log-level", "WARNING")
# The agent's own entry point, plus a SIGUSR1 handler that writes the loaded top-level modules to a file:
# the same code as the edgerm-agent script, and nothing loaded into it beyond json and signal.
LAUNCHER = """
import json, signal, sys
def dump(*_):
    with open(sys.argv[1], "w") as f:
        json.dump(sorted({m.split(".")[0] for m in sys.modules}), f)
signal.signal(signal.SIGUSR1, dump)
from edgerm.agent.main import main
sys.exit(main(sys.argv[2:]))
"""
MiB = 1024 * 1024
TARGET_MB = 40.0
HEAVY = ("docker", "requests", "urllib3", "aiocoap", "amqtt", "wasmtime", "aiomqtt", "paho", "yaml", "psutil")

BASELINES = {
    "python_idle": "import time\nwhile True: time.sleep(1)",
    "aiohttp_protobuf_idle": "import aiohttp, google.protobuf.message, time\nwhile True: time.sleep(1)",
}


def rss_mb(pid: int, samples: int) -> float:
    proc = psutil.Process(pid)
    peak = 0
    for i in range(samples):
        if i:
            time.sleep(1.0)
        peak = max(peak, proc.memory_info().rss)
    return round(peak / MiB, 1)


def baseline(code: str, samples: int) -> float:
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(1.0)
        return rss_mb(proc.pid, samples)
    finally:
        proc.kill()
        proc.wait()


def agents(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(url + "/api/v1/state", timeout=5) as r:
        found: list[dict[str, Any]] = json.load(r)["agents"]
        return found


def imported_modules(pid: int, dump: Path) -> list[str]:
    """The heavy modules the agent has loaded (asked through the launcher's SIGUSR1 handler)."""
    psutil.Process(pid).send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if dump.exists() and dump.stat().st_size:
            try:
                loaded = set(json.loads(dump.read_text()))
            except ValueError:  # still being written
                time.sleep(0.05)
                continue
            return [m for m in HEAVY if m in loaded]
        time.sleep(0.05)
    return ["?"]


def measure_agent(
    name: str, master: str, coap: str, transport: str, executors: list[str], settle: float, samples: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgerm-footprint-") as tmp:
        cfg = Path(tmp) / "agent.yaml"
        cfg.write_text(f"heartbeat_interval: 1.0\nexecutors: [{', '.join(executors)}]\nname: {name}\n")
        dump = Path(tmp) / "modules.json"
        argv = [sys.executable, "-c", LAUNCHER, str(dump), "--config", str(cfg), "--work-dir", tmp, *QUIET]
        argv += ["--coap", "--master", coap] if transport == "coap" else ["--master", master]
        before = {a["id"] for a in agents(master)}
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            mine: dict[str, Any] | None = None
            while mine is None:
                if time.monotonic() > deadline or proc.poll() is not None:
                    err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                    raise RuntimeError(f"agent {name} did not register: {err[-1000:]}")
                mine = next((a for a in agents(master) if a["id"] not in before), None)
                time.sleep(0.1)
            time.sleep(settle)
            rss = rss_mb(proc.pid, samples)
            executors_on = mine.get("attributes", {}).get("executors", [])
            return {
                "transport": transport,
                "executors_asked": executors,
                "executors_offered": executors_on,
                "rss_mb": rss,
                "modules": imported_modules(proc.pid, dump),
                "alive": proc.poll() is None,
            }
        finally:
            stop(proc)  # type: ignore[arg-type]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--settle", type=float, default=5.0, help="seconds of heartbeats before sampling")
    p.add_argument("--samples", type=int, default=5, help="RSS samples, 1 s apart")
    args = p.parse_args()
    base = {name: baseline(code, args.samples) for name, code in BASELINES.items()}
    print(f"baselines: {base}", flush=True)
    port, coap_port = free_port(), free_port(2)
    master_url = f"http://127.0.0.1:{port}"
    coap_url = f"coap://127.0.0.1:{coap_port}"
    master = spawn(
        [str(BIN / "edgerm-master"), "--port", str(port), "--coap-port", str(coap_port), "--no-broker", *QUIET],
        ready_url=master_url + "/api/v1/state",
    )
    results: dict[str, Any] = {}
    try:
        for transport in ("http", "coap"):
            for executors in (["wasm"], ["wasm", "docker"]):
                name = f"{transport}-{'+'.join(executors)}"
                r = measure_agent(name, master_url, coap_url, transport, executors, args.settle, args.samples)
                r["docker_available"] = "docker" in r["executors_offered"]
                r["vs_aiohttp_protobuf"] = round(r["rss_mb"] / base["aiohttp_protobuf_idle"], 2)
                r["within_target"] = r["rss_mb"] <= TARGET_MB
                results[name] = r
                print(f"{name:18} {r['rss_mb']:6.1f} MB  x{r['vs_aiohttp_protobuf']:.2f}  modules={r['modules']}")
    finally:
        stop(master)
    path = save(
        "footprint",
        {
            "command": "python bench/footprint.py " + " ".join(sys.argv[1:]),
            "heartbeat_interval_s": 1.0,
            "settle_s": args.settle,
            "samples": args.samples,
            "target_mb": TARGET_MB,
            "baselines_mb": base,
            "agents": results,
        },
    )
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
