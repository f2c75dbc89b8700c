"""The Rust example operator (examples/operators/rust) follows the WASI operator ABI (real wasmtime),
run exactly as the agent runs a module: ``BatchExecutor``, argv = [operator, *args], ``/state`` preopened.
When Debian's rustc is installed, the module is rebuilt from its source and must behave the same."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edgerm.agent.dataflow.executor import MIB, BatchExecutor, BatchFailed, ExecutorSpec
from edgerm.model import Reason

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "examples" / "operators" / "rust" / "scale.wasm"
SAMPLE = (
    b"read.0 0 1700000000.000000 10\n"
    b"not a record\n"
    b"\n"
    b"read.1 7 1700000000.050000 25.5\n"
    b"read.0 1 1700000000.100000 -3.25\n"
)


def run(module: bytes, state: Path, *args: str) -> list[list[str]]:
    out = BatchExecutor(ExecutorSpec(module, ("scale", *args), {}, state, 16 * MIB)).run(SAMPLE)
    return [line.split() for line in out.decode().splitlines()]


def check(module: bytes, state: Path) -> None:
    assert run(module, state, "--scale", "1.8", "--offset", "32") == [
        ["read.0", "0", "1700000000.000000", "50"],
        ["read.1", "7", "1700000000.050000", "77.9"],
        ["read.0", "1", "1700000000.100000", "26.15"],
    ]
    assert [r[3] for r in run(module, state)] == ["10", "25.5", "-3.25"]
    with pytest.raises(BatchFailed) as e:
        run(module, state, "--scale", "fast")
    assert e.value.reason is Reason.COMMAND_EXITED and e.value.exit_code == 2


def test_the_committed_rust_module_scales_records(tmp_path: Path) -> None:
    check(COMMITTED.read_bytes(), tmp_path)


@pytest.mark.skipif(not Path("/usr/bin/rustc").exists(), reason="Debian's rustc is not installed")
def test_the_rust_example_builds_with_debians_toolchain(tmp_path: Path) -> None:
    out = tmp_path / "scale.wasm"
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_rust_operator.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if "can't find crate for `std`" in done.stderr:
        pytest.skip("libstd-rust-dev-wasm32 is not installed")
    assert done.returncode == 0, done.stderr
    check(out.read_bytes(), tmp_path)
