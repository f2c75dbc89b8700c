"""Records that are not one float: JSON events and binary files through real operators on a real broker.

- JSON readings from a ``cmd:`` source go through ``map --field`` and ``filter --field`` to a sink.
- Files dropped into a ``dir:`` source's directory become bytes records (content type from the extension),
  pass a WASM operator untouched, and reach the sink byte for byte; each file is deleted once published.
- A ``cmd+bytes:`` source makes one bytes record of each run's output.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgerm.agent.dataflow.readers import Blob, readings
from edgerm.agent.dataflow.runtime import DataflowRuntime
from edgerm.dataflow_records import MAX_RECORD_BYTES, Record, decode_batch
from tests.integration.agent.helpers import eventually
from tests.integration.dataflow_plane.brokers import Watcher
from tests.integration.dataflow_plane.conftest import Reports, df_task, topic, watch


def records(w: Watcher, operator: str) -> list[Record]:
    return [r for m in w.on(topic(operator)) for r in decode_batch(m.payload).records]


async def test_json_events_are_mapped_and_filtered_by_field(
    broker_url: str, runtime: DataflowRuntime, reports: Reports, watcher_factory: list[Watcher], tmp_path: Path
) -> None:
    w = await watch(watcher_factory, broker_url, topic("hot"), topic("out"))
    events = 'printf \'%s\\n\' \'{"temperature": 20, "room": "a b"}\' \'{"temperature": 35}\' \'{"room": "c"}\''
    tasks = [
        df_task("out-0", "out", "sink", "sink", broker_url, "--format", "json", inputs=(topic("hot"),)),
        df_task(
            "hot-0",
            "hot",
            "operator",
            "filter",
            broker_url,
            "--field",
            "temperature",
            "--above",
            "80",
            inputs=(topic("f"),),
        ),
        df_task(
            "f-0",
            "f",
            "operator",
            "map",
            broker_url,
            "--field",
            "temperature",
            "--scale",
            "1.8",
            "--offset",
            "32",
            inputs=(topic("ev"),),
        ),
    ]
    for task in tasks:
        await runtime.launch(task, tmp_path / task.task_id, reports)
    await eventually(lambda: all((h := runtime.host(t.task_id)) is not None and h.connected for t in tasks))
    source = df_task(
        "ev-0", "ev", "source", "map", broker_url, EDGERM_DF_DEVICE=f"cmd:{events}", EDGERM_DF_PERIOD="0.05"
    )
    await runtime.launch(source, tmp_path / "ev", reports)
    await eventually(lambda: len(records(w, "hot")) >= 3, what="hot events")
    hot = records(w, "hot")
    assert all(r.value == {"temperature": 95.0} for r in hot), hot  # 35 °C is 95 °F; 68 °F is not above 80
    assert [r.seq for r in hot[:3]] == sorted(r.seq for r in hot[:3])
    await eventually(lambda: len(w.on(topic("out"))) >= 1)
    line = w.on(topic("out"))[0].payload.decode().splitlines()[0]
    assert line.startswith('{"src":"ev.0","seq":') and line.endswith(',"value":{"temperature":95}}')
    for task in [source, *tasks]:
        await runtime.kill(task.task_id, 1.0)


async def test_files_dropped_in_a_directory_travel_as_bytes_records(
    broker_url: str, runtime: DataflowRuntime, reports: Reports, watcher_factory: list[Watcher], tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    w = await watch(watcher_factory, broker_url, topic("pass"))
    op = df_task("pass-0", "pass", "operator", "map", broker_url, "--scale", "2", inputs=(topic("files"),))
    await runtime.launch(op, tmp_path / "pass", reports)
    await eventually(lambda: (h := runtime.host(op.task_id)) is not None and h.connected)
    source = df_task(
        "files-0", "files", "source", "sensor", broker_url, EDGERM_DF_DEVICE=f"dir:{drop}", EDGERM_DF_PERIOD="0.05"
    )
    await runtime.launch(source, tmp_path / "files", reports)
    frame = os.urandom(300_000)
    (drop / ".frame.jpg.part").write_bytes(frame)  # written under a dot name, then renamed in
    (drop / ".frame.jpg.part").rename(drop / "frame.jpg")
    (drop / "notes.json").write_text('{"a": 1}')
    await eventually(lambda: len(records(w, "pass")) >= 2, what="both files through the operator")
    got = {r.content_type: r for r in records(w, "pass")}
    assert got["image/jpeg"].value == frame and got["image/jpeg"].src == "files.0"
    assert got["application/json"].value == b'{"a": 1}'  # a file is bytes, whatever it holds
    await eventually(lambda: not any(drop.iterdir()), what="published files are deleted")
    for task in (source, op):
        await runtime.kill(task.task_id, 1.0)


async def test_a_command_source_can_emit_binary_records(
    amqtt_url: str, runtime: DataflowRuntime, reports: Reports, watcher_factory: list[Watcher], tmp_path: Path
) -> None:
    w = await watch(watcher_factory, amqtt_url, topic("cam"))
    source = df_task(
        "cam-0",
        "cam",
        "source",
        "sensor",
        amqtt_url,
        EDGERM_DF_DEVICE="cmd+bytes:printf 'a\\000b'",
        EDGERM_DF_PERIOD="0.05",
        EDGERM_DF_CONTENT_TYPE="image/x-test",
    )
    await runtime.launch(source, tmp_path / "cam", reports)
    await eventually(lambda: len(records(w, "cam")) >= 3)
    got = records(w, "cam")
    assert all(r.value == b"a\x00b" and r.content_type == "image/x-test" for r in got)
    assert [r.seq for r in got] == list(range(got[0].seq, got[0].seq + len(got)))
    await runtime.kill(source.task_id, 1.0)


async def test_a_file_over_the_record_limit_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"x" * (MAX_RECORD_BYTES + 1))
    (tmp_path / "small.bin").write_bytes(b"ok")
    stream = readings(f"dir:{tmp_path}", 0.05)
    try:
        _, reading = await anext(stream)
    finally:
        await stream.aclose()
    assert isinstance(reading, Blob) and reading.data == b"ok" and reading.consumed == tmp_path / "small.bin"
