"""Imports only go down the layers (ARCHITECTURE.md): pure cores import no I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "edgerm"
IO_MODULES = {"asyncio", "aiohttp", "aiocoap", "docker", "wasmtime", "aiomqtt", "amqtt", "socket", "sqlite3"}
PURE = [
    "resources.py",
    "model.py",
    "messages.py",
    "errors.py",
    "ids.py",
    "dataflow_keys.py",
    "agent/dataflow/contract.py",
    "frameworks/dataflow/contract.py",
    "wire.py",
    "master/state.py",
    "master/allocator.py",
    "master/validation.py",
    "master/events.py",
    "master/actions.py",
    "agent/state.py",
    "agent/core_io.py",
    "scheduler",
]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _files() -> list[Path]:
    out: list[Path] = []
    for p in PURE:
        target = ROOT / p
        if target.is_dir():
            out.extend(sorted(target.rglob("*.py")))
        elif target.exists():
            out.append(target)
    return out


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_imports_no_io(path: Path) -> None:
    bad = _imports(path) & IO_MODULES
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
