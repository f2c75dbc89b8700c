"""``edgerm``: print a master's agents, frameworks or tasks as tables.

``edgerm logs TASK [-f]`` and ``edgerm task TASK`` (a task's output and
status history) are in :mod:`edgerm.cli_logs`.

``edgerm [--master URL] [--json] agents|frameworks|tasks`` fetches
``GET /api/v1/state`` and renders one of its lists as an aligned text table
(``--json`` prints that list as JSON instead). The master defaults to
``$EDGERM_MASTER`` or ``http://127.0.0.1:5050``.

Rules: the renderer is tolerant of the snapshot's shape. Each column lists
the keys it may be found under, a column no row fills is left out, and a
list whose rows match none of the known keys is shown with its own keys.
Exit status: 0 on success, 2 when the master cannot be reached or answers
something that is not the state JSON (the message says which), as argparse
does for bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from edgerm.errors import EdgermError

DEFAULT_MASTER = "http://127.0.0.1:5050"
STATE_PATH = "/api/v1/state"
KINDS = ("agents", "frameworks", "tasks")
MAX_CELL = 60


class StateUnavailable(EdgermError):
    """The master could not be reached or did not answer with its state."""


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    keys: tuple[str, ...]  # where the value may be; "a.b" looks inside a mapping
    count: bool = False  # show a list's length rather than its items
    age: bool = False  # a time.time() stamp, shown as seconds ago


COLUMNS: Mapping[str, tuple[Column, ...]] = {
    "agents": (
        Column("ID", ("id", "agent_id")),
        Column("HOSTNAME", ("hostname", "name")),
        Column("STATE", ("state", "status", "connected", "active")),
        Column("RESOURCES", ("resources", "total")),
        Column("USED", ("used", "allocated")),
        Column("OFFERED", ("offered",)),
        Column("FREE", ("free", "available")),
        Column("EXECUTORS", ("attributes.executors", "executors")),
        Column("TASKS", ("tasks", "task_count"), count=True),
        Column("SEEN", ("last_seen",), age=True),
    ),
    "frameworks": (
        Column("ID", ("id", "framework_id")),
        Column("NAME", ("name",)),
        Column("ACTIVE", ("active", "connected", "subscribed", "state")),
        Column("SUPPRESSED", ("suppressed",)),
        Column("ALLOCATION", ("allocation",)),
        Column("OFFERS", ("offers", "offer_count"), count=True),
        Column("TASKS", ("tasks", "task_count"), count=True),
        Column("UNACKED", ("unacknowledged", "unacked"), count=True),
    ),
    "tasks": (
        Column("ID", ("id", "task_id")),
        Column("NAME", ("name",)),
        Column("STATE", ("state", "status")),
        Column("FRAMEWORK", ("framework_id", "framework")),
        Column("AGENT", ("agent_id", "agent")),
        Column("EXECUTOR", ("executor",)),
        Column("RESOURCES", ("resources",)),
        Column("REASON", ("reason",)),
        Column("MESSAGE", ("message",)),
    ),
}


# -- fetching ------------------------------------------------------------------


def fetch_state(master: str, timeout: float = 5.0) -> Mapping[str, object]:
    """``GET /api/v1/state`` as a mapping; raises :class:`StateUnavailable`."""
    url = master.rstrip("/") + STATE_PATH
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        raise StateUnavailable(f"{url} answered HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise StateUnavailable(f"cannot reach the master at {master}: {e.reason}") from None
    except (OSError, ValueError) as e:  # timeouts, resets, a malformed URL
        raise StateUnavailable(f"cannot reach the master at {master}: {e}") from None
    try:
        state = json.loads(body)
    except ValueError:
        raise StateUnavailable(f"{url} did not answer JSON") from None
    if not isinstance(state, dict):
        raise StateUnavailable(f"{url} answered JSON that is not an object")
    return state


# -- rendering -----------------------------------------------------------------


def _lookup(row: Mapping[str, object], key: str) -> object:
    value: object = row
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def format_value(value: object) -> str:
    """One cell: text as is, numbers short, mappings ``k:v;k:v``, lists ``a,b``."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return ";".join(f"{k}:{format_value(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(format_value(v) for v in value) or "-"
    text = str(value).removeprefix("TASK_")
    return "-" if text in ("UNSPECIFIED", "REASON_UNSPECIFIED") else text


def _cell(row: Mapping[str, object], column: Column, now: float) -> str | None:
    for key in column.keys:
        value = _lookup(row, key)
        if value is None:
            continue
        if column.count and isinstance(value, list | tuple | dict):
            return str(len(value))
        if column.age and isinstance(value, int | float) and not isinstance(value, bool):
            return f"{max(0.0, now - value):.1f}s ago" if value > 0 else "-"
        text = format_value(value)
        return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"
    return None


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An aligned plain-text table, two spaces between columns."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def render(state: Mapping[str, object], kind: str, now: float | None = None) -> str:
    """The table of ``state[kind]``, or a one-line note when it is empty.
    ``now`` (default: the clock) is what ages such as ``last_seen`` count from."""
    now = time.time() if now is None else now
    items = [i for i in _items(state, kind) if isinstance(i, Mapping)]
    if not items:
        return f"no {kind}"
    cells = [[_cell(i, c, now) for c in COLUMNS[kind]] for i in items]
    used = [n for n, _ in enumerate(COLUMNS[kind]) if any(r[n] is not None for r in cells)]
    if len(used) >= 2:
        headers = [COLUMNS[kind][n].header for n in used]
        rows = [[r[n] or "-" for n in used] for r in cells]
    else:  # an unexpected shape: show what is there
        keys = list(dict.fromkeys(k for i in items for k in i))
        headers = [k.upper() for k in keys]
        rows = [[_cell(i, Column(k, (k,)), now) or "-" for k in keys] for i in items]
    return table(headers, rows)


def _items(state: Mapping[str, object], kind: str) -> list[object]:
    items = state.get(kind)
    if isinstance(items, Mapping):  # keyed by id
        return [{"id": k, **v} if isinstance(v, Mapping) else {"id": k, "value": v} for k, v in items.items()]
    return list(items) if isinstance(items, list) else []


# -- entry point -----------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="edgerm", description="Show what an edgerm master knows.")
    p.add_argument(
        "--master",
        default=os.environ.get("EDGERM_MASTER") or DEFAULT_MASTER,
        help="master URL (default: $EDGERM_MASTER or %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print the list as JSON instead of a table")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the master (default: 5)")
    p.add_argument("what", choices=KINDS, help="which list to show")
    return p.parse_args(argv)


def _command(argv: Sequence[str]) -> str:
    """The first word that is not an option or an option's value."""
    words = iter(argv)
    for word in words:
        if word in ("--master", "--timeout"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return ""


def main(
    argv: Sequence[str] | None = None,
    fetch: Callable[[str, float], Mapping[str, object]] = fetch_state,
) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if _command(words) in ("logs", "task"):  # a task's output and history: edgerm.cli_logs
        from edgerm import cli_logs

        return cli_logs.main(words, os.environ.get("EDGERM_MASTER") or DEFAULT_MASTER, 10.0)
    args = parse_args(argv)
    try:
        state = fetch(args.master, args.timeout)
    except StateUnavailable as e:
        print(f"edgerm: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(state.get(args.what, []), indent=2, sort_keys=True))
    else:
        print(render(state, args.what))
    return 0


if __name__ == "__main__":
    sys.exit(main())
