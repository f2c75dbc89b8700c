"""The committed operator modules are what scripts/build_operators.sh builds from their C sources.

Skipped where Debian's clang and wasi-libc are not installed (CI needs no C
toolchain: the .wasm files are committed; this test guards that they match).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _toolchain() -> bool:
    return shutil.which("clang") is not None and Path("/usr/include/wasm32-wasi/stdio.h").is_file()


@pytest.mark.skipif(not _toolchain(), reason="clang and wasi-libc are not installed")
def test_committed_operators_match_their_sources() -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_operators.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
