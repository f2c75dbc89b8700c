"""Docs that run: every Python and shell block of README.md and docs/*.md is executed.

How a block runs is set by its info string (tests/docs/blocks.py has the table): plain ``python``/``sh``
blocks run on their own, ``session=NAME`` blocks of one file run together in one bash (``file=F`` blocks are
written to F first), ``no-run`` blocks do not run, ``requires=docker`` ones only where Docker answers.

Where: README.md blocks run from the repository root (they are the source checkout's instructions);
docs/*.md blocks run in a fresh empty directory, so they must work from the installed package alone.

Against what: blocks talk to the one test cluster (tests/docs/cluster.py: a real master and three agents
on ephemeral ports), reached through ``EDGERM_MASTER`` and the docs' default URLs rewritten to its own. A
session that starts ``edgerm-master`` itself (the "by hand" recipe) gets fresh free ports instead of the
docs' 5050/5683/1883, and its ``/tmp/edgerm-*`` work dirs in a temporary directory; it must stop every
process it started: one left running fails the test (and is then killed with its process group).

"With more tasks": the README's framework (``Hello(3)``) and the tutorial's first framework
(``--tasks 3``) run again with 25 tasks, the case that used to hang.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.blocks import SHELL, Block, blocks, sessions
from tests.docs.cluster import REPO, DocsCluster
from tests.docs.runner import run_blocks

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
ALL = [b for path in DOCS for b in blocks(path)]
SINGLE = [b for b in ALL if b.runnable and not b.session]
SESSIONS = [(path, name, bs) for path in DOCS for name, bs in sessions(blocks(path)).items()]
MORE_TASKS = 25
# What "more tasks" changes, per file: the text the doc uses for 3 tasks, and its N-task form.
MORE = {"README.md": ("Hello(3)", "Hello({n})"), "tutorial.md": ("--tasks 3", "--tasks {n}")}


def test_every_fence_says_what_it_is() -> None:
    untagged = [b.where for b in ALL if not b.lang]
    assert not untagged, f"code fences without an info string (say python, sh, text, ...): {untagged}"
    assert SINGLE and SESSIONS, "no runnable blocks found"


def test_session_files_are_used() -> None:
    for _path, name, bs in SESSIONS:
        files = [b.attrs["file"] for b in bs if "file" in b.attrs]
        commands = "".join(b.code for b in bs if b.lang in SHELL)
        for f in files:
            assert f in commands, f"session {name}: {f} is written but no shell block uses it"


@pytest.mark.parametrize("block", SINGLE, ids=[b.where for b in SINGLE])
def test_block_runs(block: Block, docs_cluster: DocsCluster, tmp_path: Path) -> None:
    run_blocks([block], docs_cluster, tmp_path)


@pytest.mark.parametrize(("path", "name", "bs"), SESSIONS, ids=[f"{p.name}:{n}" for p, n, _ in SESSIONS])
def test_session_runs(path: Path, name: str, bs: list[Block], docs_cluster: DocsCluster, tmp_path: Path) -> None:
    run_blocks(bs, docs_cluster, tmp_path)


def _more_tasks_cases() -> list[tuple[str, list[Block], tuple[str, str]]]:
    cases = []
    for b in SINGLE:
        old, new = MORE.get(b.path.name, ("", ""))
        if old and old in b.code:
            cases.append((b.where, [b], (old, new.format(n=MORE_TASKS))))
    for path, name, bs in SESSIONS:
        old, new = MORE.get(path.name, ("", ""))
        if old and any(old in b.code for b in bs):
            cases.append((f"{path.name}:{name}", bs, (old, new.format(n=MORE_TASKS))))
    return cases


MORE_CASES = _more_tasks_cases()


def test_more_tasks_cover_both_tutorials() -> None:
    assert {w.split(":")[0] for w, _, _ in MORE_CASES} == set(MORE), MORE_CASES


@pytest.mark.parametrize(("where", "bs", "vary"), MORE_CASES, ids=[f"{w}-x{MORE_TASKS}" for w, _, _ in MORE_CASES])
def test_more_tasks(
    where: str, bs: list[Block], vary: tuple[str, str], docs_cluster: DocsCluster, tmp_path: Path
) -> None:
    run_blocks(bs, docs_cluster, tmp_path, vary)


# -- the harness itself --------------------------------------------------------------------


def _doc(tmp: Path, text: str) -> list[Block]:
    path = tmp / "docs" / "sample.md"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return blocks(path)


def test_the_harness_fails_a_failing_block_and_skips_norun_blocks(tmp_path: Path) -> None:
    fence = "`" * 3
    bs = _doc(
        tmp_path,
        f"{fence}sh\necho fine\n{fence}\n\n{fence}sh no-run\nexit 3\n{fence}\n\n"
        f"{fence}python\nraise SystemExit(4)\n{fence}\n",
    )
    assert [b.runnable for b in bs] == [True, False, True]
    cluster = DocsCluster("http://127.0.0.1:9", "coap://127.0.0.1:9", "mqtt://127.0.0.1:9")
    run_blocks([bs[0]], cluster, tmp_path / "a")
    with pytest.raises(pytest.fail.Exception, match="exit status 4"):
        run_blocks([bs[2]], cluster, tmp_path / "b")


def test_the_harness_fails_a_recipe_that_leaves_a_daemon_running(tmp_path: Path) -> None:
    fence = "`" * 3
    [b] = _doc(tmp_path, f"{fence}sh\nsleep 300 &\necho started\n{fence}\n")
    cluster = DocsCluster("http://127.0.0.1:9", "coap://127.0.0.1:9", "mqtt://127.0.0.1:9")
    with pytest.raises(pytest.fail.Exception, match=r"left processes running: .*sleep 300"):
        run_blocks([b], cluster, tmp_path / "c")


def test_the_readme_names_every_task_status_field_state_and_reason() -> None:
    """The "what a framework hears" tables stay complete as the model grows."""
    import dataclasses

    from edgerm.model import Reason, TaskState, TaskStatus

    text = (REPO / "README.md").read_text()
    section = text[text.index("### What a framework hears about a task") :]
    section = section[: section.index("\n## ")]
    missing = [f.name for f in dataclasses.fields(TaskStatus) if f"| `{f.name}` |" not in section]
    missing += [s.value for s in TaskState if f"`{s.value}`" not in section]
    missing += [r.value for r in Reason if f"`{r.value}`" not in section]
    assert not missing, f"README's TaskStatus tables do not mention: {missing}"
