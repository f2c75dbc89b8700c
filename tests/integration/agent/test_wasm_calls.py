"""wasm_calls: short wasmtime calls keep the GIL; guest code still runs without it (real wasmtime)."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import wasmtime
from wasmtime import _bindings

from edgerm.agent.wasm_calls import SHORT_CALLS, keep_gil_for_short_calls

FUNCFLAG_PYTHONAPI = 0x4  # ctypes: a PyDLL function, called with the GIL held
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "wasm"


def test_the_short_calls_keep_the_gil_and_the_long_ones_do_not() -> None:
    assert keep_gil_for_short_calls() == list(SHORT_CALLS)
    assert keep_gil_for_short_calls() == list(SHORT_CALLS)  # once per process: the second call changes nothing
    for name in SHORT_CALLS:
        assert getattr(_bindings, "_" + name)._flags_ & FUNCFLAG_PYTHONAPI, name
    for name in ("wasmtime_func_call", "wasmtime_linker_instantiate", "wasmtime_module_new"):
        assert not getattr(_bindings, "_" + name)._flags_ & FUNCFLAG_PYTHONAPI, name


def test_a_module_runs_and_reports_through_the_rebound_calls(tmp_path: Path) -> None:
    keep_gil_for_short_calls()
    config = wasmtime.Config()
    config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    for name, expect in (("hello.wat", None), ("exit3.wat", 3), ("trap.wat", "trap")):
        store = wasmtime.Store(engine)
        store.set_limits(memory_size=16 << 20)
        store.set_epoch_deadline(1_000_000)
        wasi = wasmtime.WasiConfig()
        wasi.argv = ["t"]
        wasi.stdout_file = str(tmp_path / f"{name}.out")
        store.set_wasi(wasi)
        module = wasmtime.Module(engine, (EXAMPLES / name).read_text())
        start = linker.instantiate(store, module).exports(store).get("_start")
        assert isinstance(start, wasmtime.Func)
        try:
            start(store)
            outcome: object = None
        except wasmtime.ExitTrap as e:
            outcome = e.code
        except wasmtime.Trap as e:
            assert e.message
            outcome = "trap"
        store.close()
        assert outcome == expect, name
    assert (tmp_path / "hello.wat.out").read_text()


def test_a_running_module_leaves_the_gil_to_other_threads() -> None:
    keep_gil_for_short_calls()
    config = wasmtime.Config()
    config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1)
    module = wasmtime.Module(engine, (EXAMPLES / "loop.wat").read_text())
    start = wasmtime.Instance(store, module, []).exports(store).get("_start")
    assert isinstance(start, wasmtime.Func)
    ended = threading.Event()

    def run() -> None:
        with contextlib.suppress(wasmtime.Trap):  # the kill below traps it
            start(store)
        ended.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    spins = 0
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # Python work on this thread while the loop module spins in the other
        spins += 1
    engine.increment_epoch()  # traps the module (its deadline was one tick)
    assert ended.wait(5)
    thread.join(5)
    store.close()
    assert spins > 10_000
