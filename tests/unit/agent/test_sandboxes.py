"""Task sandboxes: kept, retired in batches, recycled as spares when they hold only stdout/stderr."""

from __future__ import annotations

import os
from pathlib import Path

from edgerm.agent import sandboxes
from edgerm.agent.sandboxes import SPARE_PREFIX, Sandboxes, sandbox_name
from edgerm.ids import TaskId


def test_the_last_ones_are_kept_and_older_ones_retired_in_batches(tmp_path: Path) -> None:
    boxes = Sandboxes(tmp_path, kept=3, batch=2)
    retired = [boxes.finished(TaskId(f"t{i}")) for i in range(7)]
    assert retired[:4] == [[], [], [], []]
    assert retired[4] == [tmp_path / "t0", tmp_path / "t1"]
    assert retired[5:] == [[], [tmp_path / "t2", tmp_path / "t3"]]


def test_a_sandbox_with_only_its_output_becomes_an_empty_spare_for_the_next_task(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "stdout").write_text("the old task's secret\n")
    (old / "stderr").write_text("")
    inode = old.stat().st_ino
    [spare] = sandboxes.retire([old])
    assert not old.exists() and spare.name.startswith(SPARE_PREFIX)
    assert (spare / "stdout").read_bytes() == b"" and (spare / "stderr").read_bytes() == b""
    new = tmp_path / sandbox_name(TaskId("new"))
    assert sandboxes.make(new, spare) is True
    assert new.stat().st_ino == inode and not spare.exists()
    assert sorted(os.listdir(new)) == ["stderr", "stdout"]


def test_a_sandbox_holding_anything_else_is_removed(tmp_path: Path) -> None:
    other = tmp_path / "docker-task"
    (other / "data").mkdir(parents=True)
    (other / "stdout").write_text("x")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "stdout").symlink_to(tmp_path / "elsewhere")
    assert sandboxes.retire([other, linked, tmp_path / "gone"]) == []
    assert not other.exists() and not linked.exists()


def test_a_spare_is_not_used_when_the_sandbox_already_exists(tmp_path: Path) -> None:
    spare = tmp_path / (SPARE_PREFIX + "1")
    spare.mkdir()
    existing = tmp_path / "t"
    existing.mkdir()
    (existing / "stdout").write_text("kept")
    assert sandboxes.make(existing, spare) is False
    assert spare.is_dir() and (existing / "stdout").read_text() == "kept"
    assert sandboxes.make(tmp_path / "fresh", None) is True and (tmp_path / "fresh").is_dir()
    assert sandboxes.make(tmp_path / "again", tmp_path / "no-such-spare") is True
    assert (tmp_path / "again").is_dir()


def test_spares_are_bounded_and_found_again_at_start(tmp_path: Path) -> None:
    made = []
    for i in range(sandboxes.MAX_SPARES + 2):
        (tmp_path / f"{SPARE_PREFIX}{i}").mkdir()
        made.append(tmp_path / f"{SPARE_PREFIX}{i}")
    (tmp_path / "a-task").mkdir()
    found = sandboxes.find_spares(tmp_path)
    assert sorted(found) == sorted(made)
    boxes = Sandboxes(tmp_path)
    extra = boxes.add_spares(found)
    assert len(extra) == 2 and boxes.spares == sandboxes.MAX_SPARES
    assert boxes.take_spare() in found
    assert sandboxes.find_spares(tmp_path / "missing") == []


def test_claiming_a_spare_renames_it_or_says_it_did_not(tmp_path: Path) -> None:
    spare = tmp_path / (SPARE_PREFIX + "2")
    spare.mkdir()
    assert sandboxes.claim(spare, tmp_path / "t") is True
    assert (tmp_path / "t").is_dir() and not spare.exists()
    assert sandboxes.claim(spare, tmp_path / "u") is False and not (tmp_path / "u").exists()
