"""The agent's journal on a real file: replay, torn tails, compaction, what a launch record keeps."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from edgerm.agent import journal as journal_mod
from edgerm.agent.journal import Journal, ModuleStore, launch_record
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.model import RestartPolicy, TaskInfo, TaskState, TaskStatus, WasmSpec
from edgerm.resources import Resources

AGENT = AgentId("agent-1")
MODULE = b"\0asm\1\0\0\0"


def task(task_id: str, policy: RestartPolicy = RestartPolicy.NEVER) -> TaskInfo:
    return TaskInfo(
        TaskId(task_id),
        f"name-{task_id}",
        AGENT,
        Resources.parse("cpus:0.5;mem:32"),
        WasmSpec(module=MODULE, time_limit=4.0),
        args=("a", "b"),
        env={"K": "v"},
        framework_id=FrameworkId("fw"),
        restart_policy=policy,
        secret_env={"TOKEN": "s3cret"},
        labels={"l": "x"},
    )


def status(task_id: str, state: TaskState, uuid: str) -> TaskStatus:
    return TaskStatus(TaskId(task_id), AGENT, state, uuid=uuid, timestamp=1.5)


async def test_replay_gives_live_tasks_and_unacknowledged_updates_in_order(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    assert j.load() == []
    j.launch(task("a"))
    j.launch(task("b", RestartPolicy.ON_AGENT_RESTART))
    j.update(status("a", TaskState.RUNNING, "a1"), "wasm")
    j.update(status("b", TaskState.RUNNING, "b1"), "wasm")
    j.update(status("a", TaskState.FINISHED, "a2"), "wasm")
    j.ack(TaskId("b"), "b1")
    j.update(status("ghost", TaskState.KILLED, "g1"), "")
    await j.durable()
    await j.close()

    again = Journal(tmp_path)
    found = {t.task_id: t for t in again.load()}
    assert set(found) == {"a", "b", "ghost"}
    assert [s.uuid for s in found[TaskId("a")].pending] == ["a1", "a2"]
    assert found[TaskId("a")].pending[1] == status("a", TaskState.FINISHED, "a2")
    assert found[TaskId("b")].pending == ()
    assert found[TaskId("b")].info == launch_record(task("b", RestartPolicy.ON_AGENT_RESTART))
    assert found[TaskId("ghost")].info is None and found[TaskId("ghost")].executor == ""
    assert again.live() == (2, 3)


async def test_forgotten_and_acknowledged_ended_tasks_are_gone_after_replay(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.load()
    for name in ("done", "no-forget"):
        j.launch(task(name))
        j.update(status(name, TaskState.FINISHED, f"{name}-end"), "wasm")
        j.ack(TaskId(name), f"{name}-end")
    j.forget(TaskId("done"))  # "no-forget": a crash came between the ack and the forget
    await j.durable()
    await j.close()
    assert Journal(tmp_path).load() == []


async def test_a_torn_last_line_is_dropped_and_a_bad_middle_line_skipped(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.load()
    j.launch(task("a"))
    j.update(status("a", TaskState.RUNNING, "a1"), "wasm")
    await j.durable()
    await j.close()
    with (tmp_path / journal_mod.JOURNAL_FILE).open("a") as f:
        f.write('{"op": "bogus", "task": "x"}\nnot json at all\n{"op": "update", "task": "a", "uu')
    found = Journal(tmp_path).load()
    assert [(t.task_id, [s.uuid for s in t.pending]) for t in found] == [("a", ["a1"])]
    # Replay compacted the file: only the live records remain.
    lines = (tmp_path / journal_mod.JOURNAL_FILE).read_text().splitlines()
    assert [json.loads(line)["op"] for line in lines] == ["launch", "update"]


async def test_the_file_is_compacted_while_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_mod, "COMPACT_AT", 20)
    j = Journal(tmp_path, fsync=False)
    j.load()
    for n in range(50):
        name = f"t{n}"
        j.launch(task(name))
        j.update(status(name, TaskState.FINISHED, f"{name}-end"), "wasm")
        j.ack(TaskId(name), f"{name}-end")
        j.forget(TaskId(name))
        await j.durable()
    j.launch(task("live"))
    await j.durable()
    lines = (tmp_path / journal_mod.JOURNAL_FILE).read_text().splitlines()
    assert len(lines) <= 24, len(lines)
    await j.close()
    assert [t.task_id for t in Journal(tmp_path).load()] == ["live"]


def test_a_launch_record_keeps_secrets_only_for_a_task_that_must_run_again() -> None:
    never = launch_record(task("a"))
    assert never.env == {} and never.secret_env == {} and never.args == () and never.labels == {}
    assert isinstance(never.container, WasmSpec) and never.container.module == b""
    assert never.container.module_sha256 == WasmSpec(module=MODULE).sha256 and never.container.time_limit == 4.0
    assert (never.framework_id, never.resources, never.name) == ("fw", task("a").resources, "name-a")
    again = launch_record(task("b", RestartPolicy.ON_AGENT_RESTART))
    assert again == replace(task("b", RestartPolicy.ON_AGENT_RESTART), container=never.container)


async def test_records_are_private_to_the_agent(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.load()
    j.launch(task("b", RestartPolicy.ON_AGENT_RESTART))
    await j.durable()
    await j.close()
    assert (tmp_path / journal_mod.JOURNAL_FILE).stat().st_mode & 0o077 == 0


def test_module_store_keeps_bytes_by_hash_and_prunes_the_unnamed(tmp_path: Path) -> None:
    store = ModuleStore(tmp_path)
    sha = WasmSpec(module=MODULE).sha256
    assert store.load(sha) is None
    store.save(sha, MODULE)
    store.save(sha, MODULE)  # idempotent
    store.save("ab" * 32, b"other")
    assert store.load(sha) == MODULE and store.has("ab" * 32)
    store.prune([sha])
    assert store.has(sha) and not store.has("ab" * 32)


async def test_a_corrupt_record_is_skipped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / journal_mod.JOURNAL_FILE
    path.parent.mkdir(parents=True)
    good = Journal(tmp_path)
    good.load()
    good.launch(task("a"))
    await good.durable()
    await good.close()
    with path.open("a") as f:
        f.write(json.dumps({"op": "launch", "task": "b", "executor": "wasm", "info": "bm90IHByb3RvYnVm"}) + "\n")
        f.write(json.dumps({"op": "update", "task": "c", "executor": "wasm", "status": "!!"}) + "\n")
        f.write(json.dumps({"op": "launch", "task": "d"}) + "\n")
    assert [t.task_id for t in Journal(tmp_path).load()] == ["a"]


async def test_a_disk_that_fails_is_logged_once_and_does_not_block_updates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    j = Journal(tmp_path)
    j.load()

    def broken(batch: list[str], live: list[str] | None) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(j, "_write", broken)
    for n in range(3):
        j.update(status(f"t{n}", TaskState.RUNNING, f"u{n}"), "wasm")
        await j.durable()  # returns: the update goes out from memory
    warnings = [r for r in caplog.records if "cannot write the journal" in r.getMessage()]
    assert len(warnings) == 1 and "No space left" in warnings[0].getMessage()
    assert j.live() == (0, 3)
    await j.close()


def test_records_are_the_json_lines_json_dumps_writes() -> None:
    odd = TaskId('t "1" \\ é\n')
    info = replace(task("x"), task_id=odd)
    s = replace(status("x", TaskState.RUNNING, "u-é"), task_id=odd)
    launch = json.loads(journal_mod._launch_line(info))
    assert journal_mod._launch_line(info) == json.dumps(launch)
    assert launch["task"] == odd and launch["executor"] == "wasm"
    update = journal_mod._update_line(s, "wasm")
    assert update == json.dumps(json.loads(update)) and json.loads(update)["uuid"] == "u-é"
    assert json.loads(journal_mod._ack_line(odd, "u")) == {"op": "ack", "task": odd, "uuid": "u"}
    assert json.loads(journal_mod._forget_line(odd)) == {"op": "forget", "task": odd}
    assert journal_mod._forget_line(odd) == json.dumps({"op": "forget", "task": odd})
