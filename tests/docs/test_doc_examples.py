"""The docs' examples that are not commands: every DAG shown in README.md, docs/*.md or a package README is a
valid DAG (``edgerm-dataflow validate`` would take it), and every Dockerfile shown is the one in the
example directory it names, instruction for instruction. A DAG or Dockerfile that drifts from the code
fails here, as a command that stops working fails tests/docs/test_docs_run.py.

The package READMEs (edgerm/*/README.md) hold module maps and fragments: their fences say what they are
too, and a Python block there is ``no-run`` with the reason in a comment above it (they need a master
or an event loop); every Python block, run or not, at least parses.
"""

from __future__ import annotations

import ast
import re

import pytest
import yaml

from edgerm.frameworks.dataflow.validate import loads
from tests.docs.blocks import Block, blocks
from tests.docs.cluster import REPO

PACKAGES = sorted((REPO / "edgerm").rglob("README.md"))
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *PACKAGES]
ALL = [b for path in DOCS for b in blocks(path)]


def _is_dag(block: Block) -> bool:
    if block.lang not in ("yaml", "yml", "json"):
        return False
    try:
        data = yaml.safe_load(block.code)
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and "operators" in data and "edges" in data


DAGS = [b for b in ALL if _is_dag(b)]
DOCKERFILES = [b for b in ALL if b.lang == "dockerfile"]


def test_the_docs_show_dags_and_dockerfiles() -> None:
    assert len(DAGS) >= 4 and DOCKERFILES, "the block selection found nothing: the docs or this test changed"


@pytest.mark.parametrize("block", DAGS, ids=lambda b: b.where)
def test_a_dag_in_the_docs_is_valid(block: Block) -> None:
    dag = loads(block.code, source=block.where, base_dir=str(REPO))
    assert dag.operators, block.where


def _instructions(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("block", DOCKERFILES, ids=lambda b: b.where)
def test_a_dockerfile_in_the_docs_is_the_examples_one(block: Block) -> None:
    # The text before the block names the directory it belongs to, as `examples/...`.
    before = "\n".join(block.path.read_text().splitlines()[: block.line - 1][-20:])
    named = re.findall(r"`(examples/[\w./-]+?)/?`", before)
    assert named, f"{block.where}: no examples/ directory named before the Dockerfile"
    dockerfile = REPO / named[-1] / "Dockerfile"
    assert dockerfile.is_file(), f"{block.where}: {dockerfile} does not exist"
    assert _instructions(block.code) == _instructions(dockerfile.read_text()), block.where


def test_python_blocks_parse() -> None:
    for b in ALL:
        if b.lang in ("python", "py"):
            ast.parse(b.code, filename=b.where)  # a fragment may use top-level await: parsed, not compiled


def test_package_readme_fences_say_what_they_are() -> None:
    package_blocks = [b for path in PACKAGES for b in blocks(path)]
    untagged = [f"{b.path.parent.name}/{b.where}" for b in package_blocks if not b.lang]
    assert not untagged, f"code fences without an info string: {untagged}"
    runnable = [f"{b.path.parent.name}/{b.where}" for b in package_blocks if b.runnable]
    assert not runnable, f"package READMEs are not run by tests/docs; mark these no-run and say why: {runnable}"
    for b in package_blocks:
        if "no-run" in b.attrs:
            above = b.path.read_text().splitlines()[b.line - 2]
            assert above.startswith("<!-- not run"), f"{b.where}: a no-run block says why in a comment above it"
