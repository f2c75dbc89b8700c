"""Each committed builtin operator module does what it says on a sample batch (real wasmtime).

The modules are run exactly as the agent runs them: ``BatchExecutor``, one
Store per batch, argv = [operator, *args], ``/state`` preopened.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import pytest

from edgerm.agent.dataflow.executor import MIB, BatchExecutor, BatchFailed, ExecutorSpec, ModuleCache, ModuleInvalid
from edgerm.dataflow_ops import BUILTINS, is_builtin, load_builtin
from edgerm.errors import ConfigError
from edgerm.model import Reason

SAMPLE = (
    b"read.0 0 1700000000.000000 10\n"
    b"read.1 0 1700000000.050000 25.5\n"
    b"this line is not a record\n"
    b"read.0 1 1700000000.100000 85\n"
    b"read.0 2 1700000000.200000 -3.25\n"
)


def run(tmp_path: Path, name: str, *args: str, batch: bytes = SAMPLE, argv0: str = "") -> list[list[str]]:
    spec = ExecutorSpec(load_builtin(name), (argv0 or name, *args), {}, tmp_path, 16 * MIB)
    out = BatchExecutor(spec).run(batch)
    return [line.split() for line in out.decode().splitlines()]


def test_every_builtin_ships_as_package_data() -> None:
    for name in BUILTINS:
        assert load_builtin(name)[:4] == b"\0asm"
        assert load_builtin(f"builtin:{name}") == load_builtin(name)
    assert is_builtin("builtin:map") and not is_builtin("modules/map.wasm")
    with pytest.raises(ConfigError, match="no builtin operator 'reduce'"):
        load_builtin("builtin:reduce")


def test_map_scales_and_offsets_keeping_src_seq_and_t(tmp_path: Path) -> None:
    out = run(tmp_path, "map", "--scale", "1.8", "--offset", "32")
    assert out == [
        ["read.0", "0", "1700000000.000000", "50"],
        ["read.1", "0", "1700000000.050000", "77.9"],
        ["read.0", "1", "1700000000.100000", "185"],
        ["read.0", "2", "1700000000.200000", "26.15"],
    ]
    assert [r[3] for r in run(tmp_path, "map")] == ["10", "25.5", "85", "-3.25"]  # identity by default


def test_filter_keeps_values_strictly_above_and_below(tmp_path: Path) -> None:
    assert [r[3] for r in run(tmp_path, "filter", "--above", "10")] == ["25.5", "85"]
    assert [r[3] for r in run(tmp_path, "filter", "--below", "10")] == ["-3.25"]
    assert [r[3] for r in run(tmp_path, "filter", "--above", "0", "--below", "50")] == ["10", "25.5"]
    with pytest.raises(BatchFailed) as e:
        run(tmp_path, "filter")
    assert e.value.reason is Reason.COMMAND_EXITED and e.value.exit_code == 2
    assert "give --above, --below or both" in e.value.message


def test_sensor_drops_out_of_range_readings_then_calibrates(tmp_path: Path) -> None:
    out = run(tmp_path, "sensor", "--min", "-40", "--max", "80", "--offset", "0.5")
    assert [(r[0], r[1], r[3]) for r in out] == [
        ("read.0", "0", "10.5"),
        ("read.1", "0", "26"),
        ("read.0", "2", "-2.75"),
    ]
    assert len(run(tmp_path, "sensor")) == 4  # no bounds: every finite reading


def test_aggregate_windows_span_batches_through_state(tmp_path: Path) -> None:
    args = ("--window", "3", "--agg", "mean")
    first = run(tmp_path, "aggregate", *args, argv0="avg")
    assert first == [["avg", "0", "1700000000.100000", "40.1666666667"]]
    second = run(
        tmp_path, "aggregate", *args, argv0="avg", batch=b"x.0 9 1700000001.000000 4\nx.0 10 1700000002.000000 2\n"
    )
    # -3.25 was left in the window from the first batch: (-3.25 + 4 + 2) / 3
    assert second == [["avg", "1", "1700000002.000000", "0.916666666667"]]
    assert (tmp_path / "state" / "aggregate").read_text().startswith("2 0 ")


@pytest.mark.parametrize(("agg", "value"), [("min", "-3.25"), ("max", "85"), ("sum", "117.25"), ("count", "4")])
def test_aggregate_functions(tmp_path: Path, agg: str, value: str) -> None:
    assert run(tmp_path, "aggregate", "--window", "4", "--agg", agg) == [["aggregate", "0", "1700000000.200000", value]]


def test_sink_formats_records_csv_and_json(tmp_path: Path) -> None:
    batch = b"read.0 4 1700000000.500000 21.456\n"
    records = run(tmp_path, "sink", "--precision", "1", batch=batch)
    assert records == [["read.0", "4", "1700000000.500000", "21.5"]]
    spec = ExecutorSpec(load_builtin("sink"), ("sink", "--format", "csv"), {}, tmp_path, 16 * MIB)
    assert BatchExecutor(spec).run(batch) == b"read.0,4,1700000000.500000,21.456\n"
    spec = ExecutorSpec(load_builtin("sink"), ("sink", "--format", "json"), {}, tmp_path, 16 * MIB)
    assert BatchExecutor(spec).run(batch) == b'{"src":"read.0","seq":4,"t":1700000000.500000,"value":21.456}\n'


def test_unknown_arguments_fail_the_batch_with_usage(tmp_path: Path) -> None:
    with pytest.raises(BatchFailed) as e:
        run(tmp_path, "map", "--factor", "2")
    assert "unknown argument: --factor" in e.value.message and "usage: map" in e.value.message


def test_the_module_cache_spares_a_second_compile(tmp_path: Path) -> None:
    cache = ModuleCache()
    spec = ExecutorSpec(load_builtin("map"), ("map",), {}, tmp_path, 16 * MIB)
    BatchExecutor(spec, cache)
    assert cache.get(hashlib.sha256(spec.module).hexdigest()) is not None
    assert BatchExecutor(spec, cache).run(b"a 0 1 2\n") == b"a 0 1 2\n"


@pytest.mark.parametrize(("module", "needle"), [(b"\0asm\1\0\0\0", "no _start"), (b"junk", "not a valid")])
def test_modules_that_cannot_serve_are_refused(tmp_path: Path, module: bytes, needle: str) -> None:
    with pytest.raises(ModuleInvalid, match=needle):
        BatchExecutor(ExecutorSpec(module, ("x",), {}, tmp_path, 16 * MIB))


EVENTS = (
    b'room.0 0 1700000000.000000 {"temperature":20,"room":"a, \\"b\\" }","tags":[1,{"temperature":99}]}\n'
    b'room.0 1 1700000000.100000 {"humidity":40,"temperature":35.5}\n'
    b'room.0 2 1700000000.200000 {"room":"no temperature here"}\n'
    b"room.0 3 1700000000.300000 12\n"
    b'room.0 4 1700000000.400000 ["an", "array"]\n'
)


def lines(tmp_path: Path, name: str, *args: str) -> list[str]:
    spec = ExecutorSpec(load_builtin(name), (name, *args), {}, tmp_path, 16 * MIB)
    return BatchExecutor(spec).run(EVENTS).decode().splitlines()


def test_map_with_field_changes_that_field_only_and_passes_the_rest_through(tmp_path: Path) -> None:
    out = lines(tmp_path, "map", "--field", "temperature", "--scale", "1.8", "--offset", "32")
    assert out == [
        'room.0 0 1700000000.000000 {"temperature":68,"room":"a, \\"b\\" }","tags":[1,{"temperature":99}]}',
        'room.0 1 1700000000.100000 {"humidity":40,"temperature":95.9}',
        'room.0 2 1700000000.200000 {"room":"no temperature here"}',  # no such field: unchanged
        "room.0 3 1700000000.300000 12",  # not an object: unchanged
        'room.0 4 1700000000.400000 ["an", "array"]',
    ]
    plain = lines(tmp_path, "map", "--scale", "2")  # without --field only numbers are mapped
    assert plain[3] == "room.0 3 1700000000.300000 24" and plain[1].endswith('{"humidity":40,"temperature":35.5}')


def test_filter_and_aggregate_select_a_json_field(tmp_path: Path) -> None:
    kept = lines(tmp_path, "filter", "--field", "temperature", "--above", "30")
    assert kept == ['room.0 1 1700000000.100000 {"humidity":40,"temperature":35.5}']
    assert [line.split()[3] for line in lines(tmp_path, "filter", "--above", "10")] == ["12"]
    (window,) = lines(tmp_path, "aggregate", "--field", "temperature", "--window", "2", "--agg", "max")
    assert window == "aggregate 0 1700000000.100000 35.5"


def test_the_sink_writes_json_values_as_json(tmp_path: Path) -> None:
    out = lines(tmp_path, "sink", "--format", "json")
    assert out[1] == '{"src":"room.0","seq":1,"t":1700000000.100000,"value":{"humidity":40,"temperature":35.5}}'
    assert out[3] == '{"src":"room.0","seq":3,"t":1700000000.300000,"value":12}'


def test_a_stopped_executor_runs_no_batch_even_one_not_started_when_stop_came(tmp_path: Path) -> None:
    """stop() before a batch has set its epoch deadline must still stop it (a kill racing the worker thread):
    the module below loops forever, so only the stop flag ends the run."""
    import threading

    from edgerm.agent.wasm import load_module

    loop = load_module(Path(__file__).resolve().parents[3] / "examples" / "wasm" / "loop.wat")
    executor = BatchExecutor(ExecutorSpec(loop, ("loop",), {}, tmp_path, 16 * MIB))
    executor.stop()
    failed: list[BatchFailed] = []

    def run() -> None:
        try:
            executor.run(b"a 0 1 2\n")
        except BatchFailed as e:
            failed.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive() and failed and failed[0].reason is Reason.TIME_LIMIT


def test_stdio_stays_out_of_the_workdir_and_close_releases_it(tmp_path: Path) -> None:
    """Batches go through in-memory files (memfd), not files on disk, with no descriptor per batch; a failing
    batch still quotes stderr; close() releases the files, and a closed executor runs nothing."""
    import gc
    import os

    def open_fds() -> set[int]:
        """The descriptors open on batch stdio memfds, this process's. Other executors' may open or close meanwhile
        (an earlier test's, finishing in its thread or collected now), so the checks below are on this test's own
        executors' descriptors, and on growth far below one per batch, not on exact sets."""
        fds = set()
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:batch."):
                    fds.add(int(fd))
        return fds

    def own(executor: BatchExecutor) -> set[int]:
        return {executor._stdin._fd, executor._stdout._fd, executor._stderr._fd}

    gc.collect()  # executors of earlier tests, closed now rather than during the checks
    record = b"read.0 0 1700000000.000000 10\n"
    executor = BatchExecutor(ExecutorSpec(load_builtin("map"), ("map", "--scale", "2"), {}, tmp_path, 16 * MIB))
    mine = own(executor)
    assert len(mine) == 3 and -1 not in mine and mine <= open_fds()  # three memfds
    before = open_fds()
    batches = 30
    for _ in range(batches):
        assert executor.run(record).split() == [b"read.0", b"0", b"1700000000.000000", b"20"]
    assert own(executor) == mine
    assert len(open_fds() - before) < batches // 3  # no descriptor per batch (another executor may add its three)
    assert not any(p.name.startswith("batch.") for p in tmp_path.iterdir())
    bad = BatchExecutor(ExecutorSpec(load_builtin("map"), ("map", "--factor", "2"), {}, tmp_path / "b", 16 * MIB))
    theirs = own(bad)
    assert len(theirs) == 3 and not theirs & mine and theirs <= open_fds()
    with pytest.raises(BatchFailed, match="usage: map"):
        bad.run(record)
    bad.close()
    executor.close()
    assert own(bad) == own(executor) == {-1}  # closed, each of its three
    with pytest.raises(BatchFailed) as e:
        executor.run(record)
    assert e.value.reason is Reason.TIME_LIMIT
