"""Example files shipped inside the package, so they work from an installed wheel in any directory.

``wasm/`` holds small WASI modules as WAT text (``hello.wat`` prints a line, ``loop.wat`` runs until killed,
``exit3.wat`` exits 3, ...), ``dataflows/`` the DAG files of the README and docs/dataflow.md, and
``hello_framework.py`` the complete hello framework (``python -m edgerm.examples.hello_framework``).
In a source checkout, ``examples/wasm`` and ``examples/dataflows`` point here.

    from edgerm import examples
    module = load_module(examples.path("wasm/hello.wat"))
"""

from __future__ import annotations

from pathlib import Path

from edgerm.errors import ConfigError

ROOT = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """The shipped example file ``name`` (e.g. ``"wasm/hello.wat"``); ConfigError when there is none."""
    p = (ROOT / name).resolve()
    if not p.is_relative_to(ROOT) or not p.is_file():
        raise ConfigError(f"no example {name!r} in {ROOT} (see {', '.join(sorted(names()))})")
    return p


def names() -> list[str]:
    """Every shipped example file, as the names :func:`path` takes."""
    return sorted(
        str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and p.suffix in (".wat", ".yaml", ".json")
    )
