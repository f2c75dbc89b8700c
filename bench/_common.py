"""Shared helpers for the benchmark scripts: free ports, subprocess servers, percentiles, JSON results.

Benchmarks are not tests: they print figures and save them as JSON under bench/results/, as ratios against a
baseline measured in the same run.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """An ephemeral port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(
    args: Sequence[str], ready_url: str | None = None, timeout: float = 20.0, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a server process and wait until ``ready_url`` answers (any HTTP status).

    Its stderr goes to ``log`` if given (a pipe nobody reads would stall a chatty process), else to a pipe.
    """
    err_to: Any = log.open("ab") if log is not None else subprocess.PIPE
    proc = subprocess.Popen(list(args), stdout=subprocess.DEVNULL, stderr=err_to)
    if ready_url is None:
        return proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else (log.read_text() if log else "")
            raise RuntimeError(f"{args[0]} exited: {err[-2000:]}")
        try:
            urllib.request.urlopen(ready_url, timeout=0.5).close()
            return proc
        except OSError as e:
            if hasattr(e, "code"):  # an HTTP error status: the server answers
                return proc
            time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"{args[0]} did not answer at {ready_url}")


def secure_master(state_dir: Path) -> list[str]:
    """``edgerm-master init`` in ``state_dir``; this process and its children get the tokens by environment.

    ``EDGERM_TOKEN`` (admin: frameworks run here and state reads) and ``EDGERM_JOIN_TOKEN`` (agents) are set in
    ``os.environ``; returns the master's ``--state-dir`` flags.
    """
    cmd = [sys.executable, "-m", "edgerm.master.main", "init", "--state-dir", str(state_dir), "--format", "json"]
    tokens = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    os.environ["EDGERM_TOKEN"] = tokens["admin_token"]
    os.environ["EDGERM_JOIN_TOKEN"] = tokens["join_token"]
    return ["--state-dir", str(state_dir)]


def get_state(url: str, timeout: float = 1.0) -> dict[str, Any]:
    """``GET /api/v1/state`` with the token :func:`secure_master` set."""
    token = os.environ.get("EDGERM_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url.rstrip("/") + "/api/v1/state", headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        state: dict[str, Any] = json.load(resp)
        return state


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    """p50/p99/mean of seconds, in milliseconds."""
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 50) * 1000, 3),
        "p99_ms": round(pct(values, 99) * 1000, 3),
        "mean_ms": round(statistics.fmean(values) * 1000, 3) if values else float("nan"),
    }


def save(name: str, data: dict[str, Any]) -> Path:
    """Write ``bench/results/NAME.json`` with machine facts added, and return its path.

    ``name`` may also be a path (it holds a ``/`` or ends in ``.json``): the file is written there instead,
    relative to the working directory (``--out bench/results/x.json`` once became
    ``bench/results/bench/results/x.json.json`` and the run's figures were lost)."""
    if "/" in name or name.endswith(".json"):
        path = Path(name if name.endswith(".json") else name + ".json")
        name = path.stem
    else:
        path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()},
        **data,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
