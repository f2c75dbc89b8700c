"""Fenced code blocks of the Markdown docs, and how each one is meant to run.

The marker is the block's info string (the words after the opening fence)::

    ```python                      run on its own
    ```sh                          run on its own (bash -e)
    ```sh no-run                   not run; the text around it says why
    ```sh session=NAME             run together with the file's other NAME blocks, in order, in one bash
    ```python session=NAME file=F  written to F in the session's directory (a later sh block runs it)
    ```yaml session=NAME file=F    likewise, any language
    ```sh requires=docker          run only where a Docker engine holds the test image
    ```text / ```yaml / ```json    not code: output, formats, examples of files

Python and shell blocks (``python``, ``py``, ``sh``, ``bash``, ``shell``) run unless marked ``no-run``;
every fence must have an info string, so a command cannot slip through untagged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

RUNNABLE = frozenset({"python", "py", "sh", "bash", "shell"})
SHELL = frozenset({"sh", "bash", "shell"})
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")


@dataclass(frozen=True, slots=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    attrs: dict[str, str] = field(default_factory=dict)  # flags map to ""
    code: str = ""

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.lang in RUNNABLE and "no-run" not in self.attrs and "file" not in self.attrs

    @property
    def session(self) -> str | None:
        return self.attrs.get("session")


def parse_info(info: str) -> tuple[str, dict[str, str]]:
    words = info.split()
    if not words:
        return "", {}
    attrs: dict[str, str] = {}
    for word in words[1:]:
        key, _, value = word.partition("=")
        attrs[key] = value
    return words[0].lower(), attrs


def blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path``; an unclosed fence is a ValueError naming its line."""
    out: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.groups()
        lang, attrs = parse_info(info)
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence) and lines[j].strip().strip(fence[0]) == ""):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        if j == len(lines):
            raise ValueError(f"{path.name}:{i + 1}: unclosed code fence")
        out.append(Block(path, i + 1, lang, attrs, "\n".join(body) + "\n"))
        i = j + 1
    return out


def sessions(all_blocks: list[Block]) -> dict[str, list[Block]]:
    """The blocks of each session, in document order (``file=`` blocks included)."""
    out: dict[str, list[Block]] = {}
    for b in all_blocks:
        if b.session:
            out.setdefault(b.session, []).append(b)
    return out
