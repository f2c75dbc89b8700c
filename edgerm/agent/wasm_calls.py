"""Short wasmtime C calls made without handing the GIL away.

wasmtime-py binds wasmtime's C API through ``ctypes.CDLL``, which releases
the GIL around every call. A trivial task makes about 20 of them (a store,
its WASI config, the ``_start`` export, the store's delete) that each take
microseconds. On a loaded agent every release lets another thread (the event
loop, another run) take the GIL, and taking it back costs a context switch.
Measured with 20 runs in flight beside a busy loop thread: 41 context
switches and 1.15 ms of CPU per hello-world run; with the calls below keeping
the GIL, 4 and 0.57 ms. One agent alone (``bench/agent_tasks.py --before``):
1.87 against 2.40 CPU ms per task, the wasm threads' system time halved.

:func:`keep_gil_for_short_calls` rebinds the calls listed in
``SHORT_CALLS`` to the same symbols loaded through ``ctypes.PyDLL``, which
keeps the GIL. They run no guest code, call no Python back, wait for no
other thread (a store is used by one thread at a time) and do no I/O beyond
opening a task's stdout and stderr files. The calls that run guest code or can take long (compiling,
deserializing, instantiating, calling a function) are not touched and keep
releasing the GIL, so a long-running module never holds up the loop.

wasmtime-py's wrappers look these names up in ``wasmtime._bindings`` at each
call, so rebinding the module attribute is enough. A name that is missing or
not a ctypes function (another wasmtime-py layout) is left alone: the cost is
speed, never behaviour.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from _ctypes import CFuncPtr

log = logging.getLogger(__name__)

SHORT_CALLS = (
    "wasmtime_store_new",
    "wasmtime_store_context",
    "wasmtime_store_limiter",
    "wasmtime_store_epoch_deadline_callback",
    "wasmtime_context_set_epoch_deadline",
    "wasmtime_context_set_wasi",
    "wasmtime_store_delete",
    "wasmtime_engine_increment_epoch",
    "wasi_config_new",
    "wasi_config_set_argv",
    "wasi_config_set_env",
    "wasi_config_set_stdout_file",
    "wasi_config_set_stderr_file",
    "wasmtime_instance_export_nth",
    "wasmtime_func_type",
    "wasm_functype_params",
    "wasm_functype_results",
    "wasm_functype_delete",
    "wasmtime_error_new",
    "wasmtime_error_message",
    "wasmtime_error_exit_status",
    "wasmtime_error_delete",
    "wasmtime_trap_code",
    "wasm_trap_message",
    "wasm_trap_delete",
    "wasm_byte_vec_delete",
)

_lock = threading.Lock()
_rebound: list[str] | None = None


def keep_gil_for_short_calls() -> list[str]:
    """Rebind ``SHORT_CALLS`` to GIL-keeping ctypes functions (once per process); the names rebound."""
    global _rebound
    with _lock:
        if _rebound is None:
            _rebound = _rebind()
            log.debug("wasmtime: %d short calls keep the GIL", len(_rebound))
        return list(_rebound)


def _rebind() -> list[str]:
    from wasmtime import _bindings, _ffi

    path = getattr(getattr(_ffi, "dll", None), "_name", None)
    if not isinstance(path, str):
        return []
    try:
        keeping = ctypes.PyDLL(path)
    except OSError:
        return []
    done: list[str] = []
    for name in SHORT_CALLS:
        old = getattr(_bindings, "_" + name, None)
        if not isinstance(old, CFuncPtr):
            continue
        new = getattr(keeping, name, None)
        if new is None:
            continue
        new.restype = old.restype
        new.argtypes = old.argtypes
        setattr(_bindings, "_" + name, new)
        done.append(name)
    return done
