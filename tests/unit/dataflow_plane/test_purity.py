"""The data plane's pure modules import no I/O (as tests/unit/test_layers.py checks for the cores),
and the agent service can use the contract without loading MQTT."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3] / "edgerm"
IO_MODULES = {"asyncio", "aiohttp", "aiocoap", "docker", "wasmtime", "aiomqtt", "amqtt", "socket", "sqlite3"}
PURE = [
    "agent/dataflow/contract.py",
    "agent/dataflow/records.py",
    "agent/dataflow/delivery.py",
    "agent/dataflow/__init__.py",
    "dataflow_records.py",
    "dataflow_keys.py",
]


@pytest.mark.parametrize("name", PURE)
def test_pure_modules_import_no_io(name: str) -> None:
    tree = ast.parse((ROOT / name).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    assert not found & IO_MODULES, f"{name} imports {sorted(found & IO_MODULES)}"


def test_the_agent_loads_mqtt_only_for_a_dataflow_task() -> None:
    code = (
        "import sys\n"
        "import edgerm.agent.main, edgerm.agent.service, edgerm.agent.dataflow.runtime\n"
        "print(sorted(m for m in ('aiomqtt', 'amqtt', 'paho') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
