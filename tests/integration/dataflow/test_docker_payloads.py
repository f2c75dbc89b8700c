"""JSON events and binary frames through WebAssembly builtins and a user's own Python operators in Docker.

The operators are examples/operators/python-image (not part of the test image): this module builds that
directory's Dockerfile, FROM edgerm-test/python:latest, the way docs/dataflow.md tells a user to ("Your own
operator image"), under a tag and label of its own, and removes the image at the end. Real master, broker
(embedded amqtt and mosquitto), agents, wasmtime and Docker engine:

- ``cmd:`` source of JSON events -> ``map --field temperature`` (WASM) -> ``annotate_events.py`` (Docker)
  -> console sink: every good event above the limit arrives, converted and tagged, in order; a malformed
  JSON line is dropped and counted at the source; an event without the field makes the user's function
  raise, which costs that record alone (counted in the operator's errors); nothing else is lost.
- ``dir:`` source of PGM files -> ``invert_frames.py`` (Docker) -> console sink: every frame arrives
  inverted, byte for byte, with its content type; a text file and a truncated frame make the function
  raise and are counted; the pipeline goes on.

Skipped without Docker or the base image on a developer's machine; CI (``CI`` set) must run it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgerm.dataflow_records import decode_batch
from edgerm.frameworks.dataflow import DataflowRun
from edgerm.frameworks.dataflow.watch import InstanceStats
from edgerm.scheduler import Instance
from tests.integration.dataflow.conftest import Cluster, agent_containers, dag, eventually, remove_containers
from tests.integration.dataflow_plane.brokers import Watcher, login_for
from tests.support import docker_unavailable, require_docker

BASE = "edgerm-test/python:latest"
CONTEXT = Path(__file__).resolve().parents[3] / "examples" / "operators" / "python-image"
PGM = "image/x-portable-graymap"
_WHY_NOT = docker_unavailable(BASE)


@pytest.fixture(scope="module")
def user_image() -> Iterator[str]:
    """The user's operator image, built from its Dockerfile (offline: the base image is local)."""
    require_docker(_WHY_NOT)
    import docker

    tag = f"edgerm-test/user-operators:{os.getpid()}"
    client = docker.from_env(timeout=120)
    try:
        client.images.build(path=str(CONTEXT), tag=tag, labels={"edgerm.test": "1"}, rm=True, forcerm=True)
        yield tag
    finally:
        try:
            client.images.remove(tag, force=True)
        finally:
            client.close()


# -- JSON events ----------------------------------------------------------------------------------------

EVENTS = 120
LIMIT = 80.0


def _event(i: int) -> str:
    """Event ``i``'s line: every 10th is malformed JSON, every 7th (else) has no temperature."""
    if i % 10 == 0:
        return f'{{"id": {i}, "room": "hall", "temperature": '
    if i % 7 == 0:
        return json.dumps({"id": i, "room": "cellar"})
    return json.dumps({"id": i, "room": "kitchen", "temperature": 15 + i % 20})


MALFORMED = [i for i in range(1, EVENTS + 1) if i % 10 == 0]
NO_FIELD = [i for i in range(1, EVENTS + 1) if i % 10 and i % 7 == 0]
HOT = [i for i in range(1, EVENTS + 1) if i % 10 and i % 7 and (15 + i % 20) * 1.8 + 32 > LIMIT]


def _events_script(work: Path) -> tuple[Path, Path]:
    """A device command that waits for ``go``, prints the events 5 ms apart, then idles (it is killed)."""
    go = work / "go"
    lines = work / "events.jsonl"
    lines.write_text("".join(_event(i) + "\n" for i in range(1, EVENTS + 1)))
    script = work / "events.sh"
    script.write_text(
        f'while [ ! -e "{go}" ]; do sleep 0.05; done\n'
        f'while IFS= read -r line; do printf "%s\\n" "$line"; sleep 0.005; done < "{lines}"\n'
        "exec sleep 600\n"
    )
    return script, go


def _json_pipeline(image: str) -> str:
    return f"""
name: jsonev
operators:
  read:
    kind: source
    wasm: builtin:sensor
    devices: [temperature]
    env: {{EDGERM_DF_PERIOD: "0.02"}}
    resources: {{cpus: 0.1, mem: 32}}
  fahrenheit:
    kind: operator
    wasm: builtin:map
    args: [--field, temperature, --scale, "1.8", --offset, "32"]
    resources: {{cpus: 0.1, mem: 32}}
  alerts:
    kind: operator
    docker: {image}
    args: [python3, /opt/app/annotate_events.py, --field, temperature, --above, "{LIMIT}", --label, hot]
    resources: {{cpus: 0.5, mem: 128}}
  store:
    kind: sink
    wasm: builtin:sink
    resources: {{cpus: 0.1, mem: 32}}
edges:
  - read -> fahrenheit -> alerts -> store
"""


def _stats(run: DataflowRun, operator: str) -> InstanceStats | None:
    return next((s for s in run.watch.view(0).instances if s.operator == operator), None)


def _stats_of(run: DataflowRun, operator: str) -> InstanceStats:
    stats = _stats(run, operator)
    assert stats is not None, f"no stats from {operator}"
    return stats


async def test_json_events_through_wasm_and_a_python_operator_in_docker(cluster: Cluster, user_image: str) -> None:
    script, go = _events_script(cluster.work)
    await cluster.agent("sensor-1", sensor=f"cmd:sh {script}")
    box = await cluster.agent("docker-1", cpus=2.0, mem=1024, executors=frozenset({"wasm", "docker"}))
    try:
        async with Watcher(cluster.broker_url, login_for(cluster.master)) as watcher:
            await watcher.subscribe("edgerm/jsonev/store/out")
            run = cluster.run(dag(_json_pipeline(user_image)), deadline=30.0)
            await run.start()
            assert await run.wait_running(30), run.render()
            assert run.framework.live[Instance("alerts")].placement.hostname == "docker-1"
            # every instance is connected (it published stats) before the first event is read
            await eventually(
                lambda: {s.operator for s in run.watch.view(0).instances} == {"read", "fahrenheit", "alerts", "store"},
                within=30,
                what="stats from every instance",
            )
            go.touch()
            await watcher.wait(lambda: len(watcher.records("edgerm/jsonev/store/out")) >= len(HOT), within=30)
            # stats come every second: wait until the source and the Python operator reported taking in
            # the whole stream, then for one more report (what they took in is processed within ms)
            await eventually(
                lambda: (s := _stats(run, "read")) is not None and s.received + s.dropped == EVENTS,
                what="the source to report every event it read",
            )
            await eventually(
                lambda: (s := _stats(run, "alerts")) is not None and s.received == EVENTS - len(MALFORMED),
                what="the Python operator to report every good event",
            )
            await asyncio.sleep(1.5)
        out = [(f[0], int(f[1]), json.loads(f[3])) for f in watcher.records("edgerm/jsonev/store/out")]
        assert [e["id"] for _, _, e in out] == HOT  # all of them, once each, in order
        for src, _, event in out:
            fahrenheit = (15 + event["id"] % 20) * 1.8 + 32
            assert src == "read.0" and event["room"] == "kitchen" and event["alert"] == "hot", event
            assert event["temperature"] == pytest.approx(fahrenheit) and event["over"] == pytest.approx(
                fahrenheit - LIMIT
            ), event
        seqs = [seq for _, seq, _ in out]
        assert seqs == sorted(seqs)
        read, alerts = _stats_of(run, "read"), _stats_of(run, "alerts")
        # the malformed JSON lines were dropped and counted where they were read
        assert (read.received, read.dropped) == (EVENTS - len(MALFORMED), len(MALFORMED)), read
        # each event without the field cost one error and that record alone; the operator kept running
        assert (alerts.errors, alerts.dropped, alerts.emitted) == (len(NO_FIELD), len(NO_FIELD), len(HOT)), alerts
        assert alerts.task == run.framework.live[Instance("alerts")].task_id
        assert not run.framework.done.is_set() and not run.framework.moves
        await run.stop()
        assert run.exit_code == 0
        await eventually(lambda: not agent_containers(box.agent_id), what="the operator's container removed")
    finally:
        await asyncio.to_thread(remove_containers, await asyncio.to_thread(agent_containers, box.agent_id))


# -- binary frames --------------------------------------------------------------------------------------


def _pgm(width: int, height: int, rng: random.Random) -> bytes:
    return b"P5\n%d %d\n255\n" % (width, height) + rng.randbytes(width * height)


def _inverted(frame: bytes) -> bytes:
    head = frame.index(b"255\n") + 4
    return frame[:head] + bytes(255 - b for b in frame[head:])


FRAMES_PIPELINE = """
name: frames
operators:
  camera:
    kind: source
    wasm: builtin:sensor
    devices: [temperature]
    env: {{EDGERM_DF_PERIOD: "0.05"}}
    resources: {{cpus: 0.1, mem: 32}}
  negative:
    kind: operator
    docker: {image}
    args: [python3, /opt/app/invert_frames.py]
    resources: {{cpus: 0.5, mem: 128}}
  store:
    kind: sink
    wasm: builtin:sink
    resources: {{cpus: 0.1, mem: 32}}
edges:
  - camera -> negative -> store
"""


async def test_binary_frames_through_a_python_operator_in_docker(cluster: Cluster, user_image: str) -> None:
    frames_dir = cluster.work / "frames"
    frames_dir.mkdir()
    await cluster.agent("camera-1", sensor=f"dir:{frames_dir}")
    box = await cluster.agent("docker-1", cpus=2.0, mem=1024, executors=frozenset({"wasm", "docker"}))
    rng = random.Random(12)
    frames = [_pgm(w, h, rng) for w, h in ((64, 48), (320, 240), (17, 3), (640, 480), (1, 1), (200, 100))]
    bad = {"notes.txt": b"not a frame", "short.pgm": _pgm(10, 10, rng)[:-7]}
    try:
        async with Watcher(cluster.broker_url, login_for(cluster.master)) as watcher:
            await watcher.subscribe("edgerm/frames/store/out")
            run = cluster.run(dag(FRAMES_PIPELINE.format(image=user_image)), deadline=30.0)
            await run.start()
            assert await run.wait_running(30), run.render()
            await eventually(
                lambda: {s.operator for s in run.watch.view(0).instances} == {"camera", "negative", "store"},
                within=30,
                what="stats from every instance",
            )
            # dropped in the documented way: written under a dot name, then renamed; bad files in between
            names = [f"f{i}.pgm" for i in range(3)] + list(bad) + [f"f{i}.pgm" for i in range(3, len(frames))]
            payloads = dict(zip([f"f{i}.pgm" for i in range(len(frames))], frames, strict=True)) | bad
            for name in names:
                part = frames_dir / f".{name}.part"
                part.write_bytes(payloads[name])
                part.rename(frames_dir / name)
                await asyncio.sleep(0.03)

            def arrived() -> list[tuple[str, int, object, str]]:
                return [
                    (r.src, r.seq, r.value, r.content_type)
                    for m in watcher.on("edgerm/frames/store/out")
                    for r in decode_batch(m.payload).records
                ]

            await watcher.wait(lambda: len(arrived()) >= len(frames), within=30)
            await eventually(
                lambda: (s := _stats(run, "negative")) is not None and s.received == len(names),
                what="the Python operator to report every file",
            )
            await asyncio.sleep(1.5)  # one more report: what it took in is processed within ms
        got = arrived()
        assert all(src == "camera.0" and ctype == PGM for src, _, _, ctype in got), [g[:2] + g[3:] for g in got]
        images = [value for _, _, value, _ in got if isinstance(value, bytes)]
        assert sorted(images) == sorted(_inverted(f) for f in frames)  # every frame, inverted byte for byte
        seqs = [seq for _, seq, _, _ in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(frames)
        camera, negative = _stats_of(run, "camera"), _stats_of(run, "negative")
        assert camera.received == len(frames) + len(bad) and camera.dropped == 0, camera
        assert (negative.errors, negative.dropped, negative.emitted) == (len(bad), len(bad), len(frames)), negative
        assert not list(frames_dir.iterdir())  # the directory was consumed
        assert not run.framework.done.is_set() and not run.framework.moves
        await run.stop()
        assert run.exit_code == 0
        await eventually(lambda: not agent_containers(box.agent_id), what="the operator's container removed")
    finally:
        await asyncio.to_thread(remove_containers, await asyncio.to_thread(agent_containers, box.agent_id))
