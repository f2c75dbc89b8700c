"""Imports only go down the layers (ARCHITECTURE.md, "Layers"), checked transitively.

:data:`LAYERS` declares which edgerm modules form each lower layer and
:data:`MAY_LOAD` what a module of that layer may bring into ``sys.modules``.
Each declared module is imported in a fresh interpreter (one forked child
per module, from a parent that has imported nothing of edgerm) with an
import hook that records every module requested and who asked for it, so
an I/O library, a clock or randomness reached through any chain of imports
fails the test and names the importer. ``time`` is loaded by the
interpreter itself at start-up: the child drops it from ``sys.modules``
first, so an ``import time`` anywhere below a core shows up too.

Layers:
- types: ids, errors, resources, model, messages, limits (pure values)
- proto: the generated ``edgerm.v1`` module; only ``edgerm.wire`` imports it
- wire: the converters (types + proto)
- core: the pure cores, the runtime and transport protocols and the
  framework API (types + core only): no
  asyncio or I/O library, no clock, no randomness, no protobuf
- service: the async services over the cores (may not load an adapter or an
  entry point)

A module not declared here is an adapter, runtime or entry point: only the
rule "nothing but wire imports edgerm.v1" applies to it.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "edgerm"

LAYERS: dict[str, list[str]] = {
    "types": [
        "edgerm",
        "edgerm.ids",
        "edgerm.errors",
        "edgerm.resources",
        "edgerm.model",
        "edgerm.messages",
        "edgerm.limits",
        "edgerm.dataflow_keys",
        "edgerm.dataflow_records",  # the record codec, shared by agents, operators and the framework
    ],
    "proto": ["edgerm.v1", "edgerm.v1.*"],
    "wire": ["edgerm.wire"],
    "core": [
        "edgerm.master",
        "edgerm.master.state",
        "edgerm.master.allocator",
        "edgerm.master.validation",
        "edgerm.master.events",
        "edgerm.master.actions",
        "edgerm.master.offers",
        "edgerm.master.deadlines",  # agent liveness deadlines (a heap), for the core
        "edgerm.master.tasks",
        "edgerm.master.registry",  # the rows the core persists
        "edgerm.master.readviews",  # the typed views the core keeps for the read side
        "edgerm.master.state_api",  # /api/v1/state pages from the views (query parsing, JSON rows)
        "edgerm.agent",
        "edgerm.agent.state",
        "edgerm.agent.core_io",
        "edgerm.agent.runtime",  # the Runtime protocol and its report types
        "edgerm.agent.transport",  # the Transport protocol
        "edgerm.agent.dataflow",
        "edgerm.agent.dataflow.contract",
        "edgerm.agent.dataflow.records",
        "edgerm.scheduler",
        "edgerm.scheduler.*",
        "edgerm.frameworks",
        "edgerm.frameworks.base",
        "edgerm.frameworks.driver",
        "edgerm.frameworks.tasks",
        "edgerm.frameworks.dataflow",
        "edgerm.frameworks.dataflow.contract",
        "edgerm.frameworks.dataflow.core",
        "edgerm.frameworks.dataflow.events",
        "edgerm.frameworks.dataflow.holds",
        "edgerm.frameworks.dataflow.quality",
        "edgerm.frameworks.dataflow.phases",
        "edgerm.frameworks.dataflow.views",
        "edgerm.frameworks.dataflow.watch",
        "edgerm.auth",
        "edgerm.auth.principal",
        "edgerm.auth.policy",
        "edgerm.auth.limits",
    ],
    "service": [
        "edgerm.master.broker_gate",  # broker logins and ACLs: pure but for its random key (so not a core)
        "edgerm.master.service",
        "edgerm.master.handlers",
        "edgerm.master.metrics",
        "edgerm.master.store",
        "edgerm.master.writer",
        "edgerm.master.eventlog",
        "edgerm.master.gc_policy",  # gc.freeze() as the fleet grows, GC pause timing
        "edgerm.agent.service",
        "edgerm.agent.tasklog",
        "edgerm.agent.journal",  # the agent's durable update log
        "edgerm.agent.sandboxes",  # task sandboxes: made, kept, recycled
        "edgerm.agent.threads",  # the wasm runtime's pool of threads
        "edgerm.logs",  # log formatting, shared by services and entry points
        "edgerm.promtext",  # Prometheus text, shared by the master, agents and the dataflow server
        "edgerm.master.history",
        "edgerm.master.dataflow_stats",
        "edgerm.master.logs",
        "edgerm.master.views",
        "edgerm.agent.logs",
        "edgerm.agent.metrics",
    ],
}
MAY_LOAD: dict[str, set[str]] = {
    "types": {"types"},
    "proto": {"proto"},
    "wire": {"types", "proto", "wire"},
    "core": {"types", "core"},
    "service": {"types", "proto", "wire", "core", "service"},
}

IO = {
    "asyncio",
    "aiohttp",
    "aiocoap",
    "docker",
    "wasmtime",
    "aiomqtt",
    "amqtt",
    "paho",
    "psutil",
    "socket",
    "ssl",
    "selectors",
    "sqlite3",
    "subprocess",
    "threading",
    "concurrent",
}
CLOCKS_AND_RANDOMNESS = {"time", "datetime", "random", "secrets", "uuid"}
PROTOBUF = {"google"}
FORBIDDEN: dict[str, set[str]] = {
    "types": IO | CLOCKS_AND_RANDOMNESS | PROTOBUF,
    "core": IO | CLOCKS_AND_RANDOMNESS | PROTOBUF,
    # protobuf's runtime itself loads threading (descriptor locks), hence time,
    # and datetime (well-known types); wire.py may not import them directly.
    "wire": (IO - {"threading"}) | {"random", "secrets", "uuid"},
}

_DRIVER = r"""
import json, os, sys

preloaded = [n for n in ("time",) if n in sys.modules]
out = {}
for name in sys.argv[1:]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        hits = []

        class Hook:
            def find_spec(self, fullname, path=None, target=None):
                f = sys._getframe(1)
                while f is not None and f.f_globals.get("__name__", "").startswith(("importlib", "_frozen")):
                    f = f.f_back
                hits.append((fullname, f.f_globals.get("__name__", "?") if f is not None else "?"))
                return None

        for n in preloaded:
            del sys.modules[n]
        before = set(sys.modules)
        sys.meta_path.insert(0, Hook())
        try:
            __import__(name)
            result = {"loaded": sorted(set(sys.modules) - before), "by": {n: who for n, who in reversed(hits)}}
        except BaseException as e:
            result = {"error": repr(e)}
        with os.fdopen(w, "wb") as f:
            f.write(json.dumps(result).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    out[name] = json.loads(data)
print(json.dumps(out))
"""


def _all_modules() -> list[str]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append(".".join(parts))
    return out


def layer_of(module: str) -> str | None:
    for layer, patterns in LAYERS.items():
        if any(fnmatch.fnmatchcase(module, p) for p in patterns):
            return layer
    return None


CHECKED = [mod for mod in _all_modules() if layer_of(mod) in MAY_LOAD and layer_of(mod) != "proto"]


@functools.cache
def _loaded() -> dict[str, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, *CHECKED], capture_output=True, text=True, timeout=300, check=True
    )
    result: dict[str, dict[str, object]] = json.loads(done.stdout)
    return result


def test_every_declared_pattern_names_a_module() -> None:
    modules = _all_modules()
    for patterns in LAYERS.values():
        for p in patterns:
            assert any(fnmatch.fnmatchcase(mod, p) for mod in modules), f"{p} names no module"


@pytest.mark.parametrize("module", CHECKED)
def test_a_module_loads_only_what_its_layer_may(module: str) -> None:
    layer = layer_of(module)
    assert layer is not None
    found = _loaded()[module]
    assert "error" not in found, found.get("error")
    loaded = found["loaded"]
    by = found["by"]
    assert isinstance(loaded, list) and isinstance(by, dict)
    problems = []
    for name in loaded:
        top = name.split(".")[0]
        if top in FORBIDDEN.get(layer, set()):
            problems.append(f"{name} (imported by {by.get(name, '?')})")
        elif top == "edgerm":
            other = layer_of(name)
            if other not in MAY_LOAD[layer]:
                problems.append(f"{name}, layer {other or 'adapter/entry point'} (imported by {by.get(name, '?')})")
    # Modules the importer found already loaded (e.g. preloaded by the parent) never show up
    # in ``loaded``; nothing of these is preloaded, so the list is complete.
    assert not problems, f"{module} ({layer}) loads: " + "; ".join(sorted(set(problems)))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_only_wire_imports_the_generated_protobuf_module() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "v1" or rel == Path("wire.py"):
            continue
        if any(name == "edgerm.v1" or name.startswith("edgerm.v1.") for name in _imports(path)):
            offenders.append(str(rel))
    assert not offenders, f"only edgerm/wire.py may import edgerm.v1; also: {offenders}"


def test_wire_itself_imports_no_clock_or_randomness() -> None:
    direct = {name.split(".")[0] for name in _imports(ROOT / "wire.py")}
    assert not direct & (CLOCKS_AND_RANDOMNESS | {"threading"})
