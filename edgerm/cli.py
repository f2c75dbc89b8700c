"""``edgerm``: what a master knows, as tables an operator can read, and a kill.

``edgerm logs TASK [-f]`` (a task's output) is in :mod:`edgerm.cli_logs`.

::

    edgerm [--master URL] [-o table|wide|json] agents|frameworks|tasks|dataflows
    edgerm task ID [--wait STATE]      one task: state, reason, message, agent, framework, times
    edgerm kill ID                     kill a task (on behalf of its framework)
    edgerm dataflows [--serve URL]     the DAGs running now, from their tasks (or an edgerm-dataflow serve)

Lists come from ``GET /api/v1/state``; ``kill`` is ``POST /api/v1/tasks/{id}/kill``. The master defaults to
``$EDGERM_MASTER`` or ``http://127.0.0.1:5050``. ``-o json`` (or ``--json``) prints machine-readable JSON;
``-o wide`` (or ``--wide``) shows every column uncut. Tables otherwise fit the terminal (80 columns when
it cannot be told, ``$COLUMNS`` when set): narrow columns are kept and the widest cut with ``…``.

Rules: the renderer is tolerant of the snapshot's shape. Each column lists the keys it may be found
under, a column no row fills is left out, and a list whose rows match none of the known keys is shown
with its own keys. Exit status: 0 on success; 1 a task not found, or ``--wait`` timed out; 2 when the
master cannot be reached or answers something that is not the state JSON (the message says which), as
argparse does for bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from edgerm import __version__
from edgerm.auth.client import bearer, client_ssl, resolve_token
from edgerm.auth.principal import Role
from edgerm.errors import ConfigError, EdgermError
from edgerm.logs import add_log_arguments, configure_logging

DEFAULT_MASTER = "http://127.0.0.1:5050"
STATE_PATH = "/api/v1/state"
KINDS = ("agents", "frameworks", "tasks")
MAX_CELL = 60
MIN_CELL = 6  # a cut column keeps at least this many characters
ID_CUT, TEXT_CUT, NAME_CUT, NO_CUT = 0, 1, 2, 3  # ids go first (their start tells them apart), names last
ID_CELL = 9  # a cut id keeps 8 characters and the ellipsis
DATAFLOW_PREFIX = "dataflow"  # frameworks named dataflow or dataflow:<dag> run DAGs


class StateUnavailable(EdgermError):
    """The master could not be reached or did not answer with its state."""


class TaskNotFound(EdgermError):
    """The master knows no task of that id."""


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    keys: tuple[str, ...]  # where the value may be; "a.b" looks inside a mapping
    count: bool = False  # show a list's length rather than its items
    age: bool = False  # a time.time() stamp, shown as time ago
    wide: bool = False  # only with -o wide
    cut: int = 2  # which columns shorten first to fit the terminal: ID_CUT, TEXT_CUT, NAME_CUT or NO_CUT


COLUMNS: Mapping[str, tuple[Column, ...]] = {
    "agents": (
        Column("ID", ("id", "agent_id"), cut=ID_CUT),
        Column("HOSTNAME", ("hostname", "name")),
        Column("STATE", ("state", "status", "connected", "active"), cut=NO_CUT),
        Column("RESOURCES", ("resources", "total"), cut=TEXT_CUT),
        Column("USED", ("used", "allocated"), cut=TEXT_CUT),
        Column("OFFERED", ("offered",), wide=True),
        Column("FREE", ("free", "available"), wide=True),
        Column("EXECUTORS", ("attributes.executors", "executors"), cut=TEXT_CUT),
        Column("TRANSPORT", ("transport",), wide=True),
        Column("TASKS", ("tasks", "task_count"), count=True, cut=NO_CUT),
        Column("SEEN", ("last_seen",), age=True, cut=NO_CUT),
    ),
    "frameworks": (
        Column("ID", ("id", "framework_id"), cut=ID_CUT),
        Column("NAME", ("name",)),
        Column("ACTIVE", ("active", "connected", "subscribed", "state"), cut=NO_CUT),
        Column("SUPPRESSED", ("suppressed",), wide=True),
        Column("ALLOCATION", ("allocation",), cut=TEXT_CUT),
        Column("OFFERS", ("offers", "offer_count"), count=True, cut=NO_CUT),
        Column("TASKS", ("tasks", "task_count"), count=True, cut=NO_CUT),
        Column("UNACKED", ("unacknowledged", "unacked"), count=True, wide=True),
    ),
    "tasks": (
        Column("ID", ("id", "task_id"), cut=ID_CUT),
        Column("NAME", ("name",)),
        Column("STATE", ("state", "status"), cut=NO_CUT),
        Column("FRAMEWORK", ("framework_id", "framework"), cut=ID_CUT),
        Column("AGENT", ("agent_id", "agent"), cut=ID_CUT),
        Column("EXECUTOR", ("executor",), wide=True),
        Column("RESOURCES", ("resources",), wide=True),
        Column("REASON", ("reason",)),
        Column("UPDATED", ("updated_at",), age=True, wide=True),
        Column("MESSAGE", ("message",), cut=TEXT_CUT),
    ),
    "dataflows": (
        Column("DAG", ("dag",)),
        Column("FRAMEWORK", ("framework_id",), cut=ID_CUT),
        Column("TASKS", ("tasks",), cut=NO_CUT),
        Column("RUNNING", ("running",), cut=NO_CUT),
        Column("OPERATORS", ("operators",), cut=TEXT_CUT),
        Column("AGENTS", ("agents",)),
        Column("PHASE", ("phase",), cut=NO_CUT),
    ),
}


# -- talking to the master -----------------------------------------------------------


@dataclass(slots=True)
class Credentials:
    """What every request presents: ``--token`` (else an in-process master's or ``$EDGERM_TOKEN``,
    :func:`edgerm.auth.client.resolve_token`) and ``--ca`` for an https master."""

    token: str | None = None
    ca: str | None = None


CREDENTIALS = Credentials()  # set by main() from the command line


def _request(url: str, timeout: float, method: str = "GET", token: str | None = None, ca: str | None = None) -> bytes:
    """The one place the CLI talks HTTP: it adds the bearer token and verifies TLS
    (``token``/``ca`` when given, else :data:`CREDENTIALS`)."""
    parts = urllib.parse.urlsplit(url)
    master = f"{parts.scheme}://{parts.netloc}"
    headers = bearer(resolve_token(token or CREDENTIALS.token, master, Role.ADMIN))
    try:
        context = client_ssl(master, ca or CREDENTIALS.ca)
    except ConfigError as e:
        raise StateUnavailable(str(e)) from None
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
        body: bytes = resp.read()
        return body


def _unreachable(what: str, e: BaseException) -> StateUnavailable:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        return StateUnavailable(f"cannot reach {what}: {e.reason}")
    return StateUnavailable(f"cannot reach {what}: {e}")


def fetch_json(url: str, timeout: float = 5.0) -> object:
    """``GET url`` as JSON; raises :class:`StateUnavailable`."""
    try:
        body = _request(url, timeout)
    except urllib.error.HTTPError as e:
        raise StateUnavailable(f"{url} answered HTTP {e.code} {e.reason}") from None
    except (OSError, ValueError) as e:  # refused, timeouts, resets, a malformed URL
        raise _unreachable(url, e) from None
    try:
        return json.loads(body)
    except ValueError:
        raise StateUnavailable(f"{url} did not answer JSON") from None


def fetch_state(
    master: str, timeout: float = 5.0, token: str | None = None, ca: str | None = None
) -> Mapping[str, object]:
    """``GET /api/v1/state`` as a mapping; raises :class:`StateUnavailable`.

    ``token``: the explicit one, else in-process or ``$EDGERM_TOKEN``
    (:func:`edgerm.auth.client.resolve_token`); ``ca`` verifies an https master.
    """
    url = master.rstrip("/") + STATE_PATH
    try:
        body = _request(url, timeout, token=token, ca=ca)
    except urllib.error.HTTPError as e:
        hint = " (give a valid --token or $EDGERM_TOKEN)" if e.code in (401, 403) else ""
        raise StateUnavailable(f"{url} answered HTTP {e.code} {e.reason}{hint}") from None
    except (OSError, ValueError) as e:
        raise _unreachable(f"the master at {master}", e) from None
    try:
        state = json.loads(body)
    except ValueError:
        raise StateUnavailable(f"{url} did not answer JSON") from None
    if not isinstance(state, dict):
        raise StateUnavailable(f"{url} answered JSON that is not an object")
    return state


def post_kill(master: str, task_id: str, timeout: float = 5.0) -> Mapping[str, object]:
    """``POST /api/v1/tasks/{id}/kill``: the task as it was; raises TaskNotFound or StateUnavailable."""
    url = f"{master.rstrip('/')}/api/v1/tasks/{urllib.parse.quote(task_id, safe='')}/kill"
    try:
        body = _request(url, timeout, method="POST")
    except urllib.error.HTTPError as e:
        message = _error_message(e.read())
        if e.code == 404:
            raise TaskNotFound(message or f"the master knows no task {task_id!r}") from None
        raise StateUnavailable(f"{url} answered HTTP {e.code}: {message or e.reason}") from None
    except (OSError, ValueError) as e:
        raise _unreachable(f"the master at {master}", e) from None
    task = json.loads(body)
    return task if isinstance(task, dict) else {}


def _error_message(body: bytes) -> str:
    """The message of a typed ``edgerm.v1.Error`` reply, or ''."""
    try:
        from edgerm import wire

        return wire.decode_error(body).message
    except Exception:  # not a typed error: the caller falls back to the HTTP reason
        return ""


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


def format_age(seconds: float) -> str:
    """``4.2s``, ``3m10s``, ``2h05m``, ``3d04h`` ago."""
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.1f}s ago"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s ago"
    if s < 86400:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m ago"
    return f"{int(s // 86400)}d{int(s % 86400 // 3600):02d}h ago"


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def _cell(row: Mapping[str, object], column: Column, now: float, wide: bool = False) -> str | None:
    for key in column.keys:
        value = _lookup(row, key)
        if value is None:
            continue
        if column.count and isinstance(value, list | tuple | dict):
            return str(len(value))
        if column.age and isinstance(value, int | float) and not isinstance(value, bool):
            return format_age(now - value) if value > 0 else "-"
        text = format_value(value)
        return text if wide else cut(text, MAX_CELL)
    return None


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An aligned plain-text table, two spaces between columns."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def fit(headers: Sequence[str], rows: list[list[str]], width: int, cut_order: Sequence[int]) -> list[list[str]]:
    """Cut columns until the table is at most ``width`` characters wide: ids first (down to 8 characters),
    then long text, then names, the widest of each kind first; NO_CUT columns never."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    floor = [
        w if c == NO_CUT else max(ID_CELL if c == ID_CUT else MIN_CELL, len(h))
        for h, w, c in zip(headers, widths, cut_order, strict=True)
    ]
    for level in (ID_CUT, TEXT_CUT, NAME_CUT):
        while sum(widths) + 2 * (len(widths) - 1) > width:
            candidates = [i for i, w in enumerate(widths) if cut_order[i] == level and w > floor[i]]
            if not candidates:
                break
            i = max(candidates, key=lambda n: widths[n])
            widths[i] -= 1
    return [[cut(c, widths[i]) for i, c in enumerate(r)] for r in rows]


def render(
    state: Mapping[str, object], kind: str, now: float | None = None, width: int | None = None, wide: bool = False
) -> str:
    """The table of ``state[kind]``, or a one-line note when it is empty.

    ``now`` (default: the clock) is what ages such as ``last_seen`` count from; ``width`` (default: no
    limit) is the terminal's; ``wide`` shows every column uncut.
    """
    now = time.time() if now is None else now
    items = [i for i in _items(state, kind) if isinstance(i, Mapping)]
    if not items:
        return f"no {kind}"
    columns = [c for c in COLUMNS[kind] if wide or not c.wide]
    cells = [[_cell(i, c, now, wide) for c in columns] for i in items]
    used = [n for n, _ in enumerate(columns) if any(r[n] is not None for r in cells)]
    if len(used) >= 2:
        headers = [columns[n].header for n in used]
        rows = [[r[n] or "-" for n in used] for r in cells]
        cut_order = [columns[n].cut for n in used]
    else:  # an unexpected shape: show what is there
        keys = list(dict.fromkeys(k for i in items for k in i))
        headers = [k.upper() for k in keys]
        rows = [[_cell(i, Column(k, (k,)), now, wide) or "-" for k in keys] for i in items]
        cut_order = [NAME_CUT] * len(keys)
    if width is not None and not wide:
        rows = fit(headers, rows, width, cut_order)
    return table(headers, rows)


def _items(state: Mapping[str, object], kind: str) -> list[object]:
    items = state.get(kind)
    if isinstance(items, Mapping):  # keyed by id
        return [{"id": k, **v} if isinstance(v, Mapping) else {"id": k, "value": v} for k, v in items.items()]
    return list(items) if isinstance(items, list) else []


def find_task(state: Mapping[str, object], task_id: str) -> Mapping[str, object] | None:
    """The task of that id, or of a unique id prefix, or of that name (when unique)."""
    tasks = [t for t in _items(state, "tasks") if isinstance(t, Mapping)]
    for match in (
        lambda t: t.get("id") == task_id,
        lambda t: str(t.get("id", "")).startswith(task_id),
        lambda t: t.get("name") == task_id,
    ):
        found = [t for t in tasks if match(t)]
        if len(found) == 1:
            return found[0]
    return None


def render_task(task: Mapping[str, object], state: Mapping[str, object], now: float | None = None) -> str:
    """One task as ``field: value`` lines, with its agent's hostname and framework's name."""
    now = time.time() if now is None else now
    agents = {a.get("id"): a for a in _items(state, "agents") if isinstance(a, Mapping)}
    frameworks = {f.get("id"): f for f in _items(state, "frameworks") if isinstance(f, Mapping)}
    lines = []
    for key, value in task.items():
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            lines.append(f"{key + ':':<14}")  # e.g. a status history: one line per entry
            lines += [f"  {_history_line(v, now)}" for v in value if isinstance(v, Mapping)]
            continue
        text = format_value(value)
        if key == "updated_at" and isinstance(value, int | float) and value > 0:
            text = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(value))} ({format_age(now - value)})"
        elif key == "agent_id" and value in agents:
            text += f" ({format_value(agents[value].get('hostname'))})"
        elif key == "framework_id" and value in frameworks:
            text += f" ({format_value(frameworks[value].get('name'))})"
        lines.append(f"{key + ':':<14} {text}")
    return "\n".join(lines)


def _history_line(entry: Mapping[str, object], now: float) -> str:
    """One entry of a list inside a task (a status history): its time first, if it has one, then the rest."""
    stamp = next((entry[k] for k in ("timestamp", "updated_at", "time", "at") if k in entry), None)
    when = ""
    if isinstance(stamp, int | float) and not isinstance(stamp, bool) and stamp > 0:
        when = time.strftime("%H:%M:%S", time.localtime(stamp)) + f" ({format_age(now - stamp)})  "
    rest = "  ".join(
        format_value(v)
        for k, v in entry.items()
        if k not in ("timestamp", "updated_at", "time", "at") and v not in ("", None)
    )
    return when + rest


def dataflows(state: Mapping[str, object]) -> list[dict[str, object]]:
    """The DAGs running on the cluster, from the frameworks and tasks in the state.

    A dataflow framework is named ``dataflow`` or ``dataflow:<dag>``; its tasks are named
    ``<dag>.<operator>.<replica>`` (edgerm.frameworks.dataflow.contract.task_name).
    """
    names = {
        f.get("id"): str(f.get("name", ""))
        for f in _items(state, "frameworks")
        if isinstance(f, Mapping) and str(f.get("name", "")).startswith(DATAFLOW_PREFIX)
    }
    hosts = {a.get("id"): a.get("hostname") for a in _items(state, "agents") if isinstance(a, Mapping)}
    dags: dict[tuple[object, str], dict[str, object]] = {}
    for t in _items(state, "tasks"):
        if not isinstance(t, Mapping) or t.get("framework_id") not in names:
            continue
        fid = t.get("framework_id")
        dag, _, rest = str(t.get("name", "")).partition(".")
        operator = rest.rpartition(".")[0] or rest
        row = dags.setdefault(
            (fid, dag),
            {"dag": dag, "framework_id": fid, "tasks": 0, "running": 0, "operators": [], "agents": []},
        )
        row["tasks"] = int(str(row["tasks"])) + 1
        live = t.get("state") in ("STAGING", "STARTING", "RUNNING", "KILLING", "UNREACHABLE")
        if t.get("state") == "RUNNING":
            row["running"] = int(str(row["running"])) + 1
        for key, value in (("operators", operator), ("agents", hosts.get(t.get("agent_id"), t.get("agent_id")))):
            seen = row[key]
            assert isinstance(seen, list)
            if live and value not in seen:
                seen.append(value)
    return [d for d in dags.values() if d["running"] or d["operators"]]


# -- entry point -----------------------------------------------------------------


def _common(p: argparse.ArgumentParser, top: bool) -> None:
    """Options that work before the command (``edgerm --json tasks``) and after it (``edgerm tasks -o json``).

    Only the top-level parser holds their defaults: a subparser's would overwrite what was given before it.
    """

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    master = os.environ.get("EDGERM_MASTER") or DEFAULT_MASTER
    p.add_argument("--master", default=default(master), help="master URL ($EDGERM_MASTER when set)")
    p.add_argument("-o", "--output", choices=["table", "wide", "json"], default=default("table"), help="output format")
    p.add_argument("--json", action="store_true", default=default(False), help="same as -o json")
    p.add_argument("--wide", action="store_true", default=default(False), help="same as -o wide: all columns, uncut")
    p.add_argument("--timeout", type=float, default=default(5.0), help="seconds to wait for the master")
    p.add_argument("--token", default=default(None), help="the credential to present ($EDGERM_TOKEN when set)")
    p.add_argument("--ca", metavar="FILE", default=default(None), help="CA certificate of an https master ($EDGERM_CA)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(
        prog="edgerm", description="Show what an edgerm master knows; kill tasks.", formatter_class=fmt
    )
    p.add_argument("--version", action="version", version=f"edgerm {__version__}")
    add_log_arguments(p, level="WARNING")
    _common(p, top=True)
    sub = p.add_subparsers(dest="what", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help, description=help, formatter_class=fmt)
        _common(q, top=False)
        return q

    for kind in KINDS:
        command(kind, f"list the {kind}")
    t = command("task", "one task: its state, reason, message, agent and framework")
    t.add_argument("task_id", metavar="ID", help="task id (a unique prefix or the task's name will do)")
    t.add_argument("--wait", metavar="STATE", help="wait until the task is in STATE (e.g. KILLED, FINISHED)")
    t.add_argument("--wait-timeout", type=float, default=10.0, metavar="S", help="seconds --wait waits")
    t.add_argument("--lines", type=int, default=10, metavar="N", help="log tail: the last N lines of stdout/stderr")
    k = command("kill", "kill a task, on behalf of its framework")
    k.add_argument("task_id", metavar="ID", help="task id (a unique prefix or the task's name will do)")
    d = command("dataflows", "the DAGs running now, from their tasks")
    d.add_argument("--serve", metavar="URL", help="ask this edgerm-dataflow serve endpoint instead of the master")
    d.add_argument("--wait", type=float, default=0.0, metavar="S", help="wait up to S seconds for one to show up")
    args = p.parse_args(argv)
    if args.json:
        args.output = "json"
    elif args.wide and args.output == "table":
        args.output = "wide"
    return args


def _width() -> int:
    return shutil.get_terminal_size((80, 24)).columns


def _first_word(argv: Sequence[str]) -> str:
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
    fetch: Callable[..., Mapping[str, object]] = fetch_state,
) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["token"]:  # edgerm token create|revoke|list (edgerm.auth.cli)
        from edgerm.auth.cli import token_main

        return token_main(argv[1:])
    if _first_word(argv) == "logs":  # a task's output: edgerm.cli_logs
        from edgerm import cli_logs

        return cli_logs.main(argv, os.environ.get("EDGERM_MASTER") or DEFAULT_MASTER, 10.0)
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    CREDENTIALS.token, CREDENTIALS.ca = args.token, args.ca
    try:
        return _command(args, fetch)
    except StateUnavailable as e:
        print(f"edgerm: {e}", file=sys.stderr)
        return 2
    except TaskNotFound as e:
        print(f"edgerm: {e}", file=sys.stderr)
        return 1


def _print(args: argparse.Namespace, state: Mapping[str, object], kind: str, data: object) -> None:
    if args.output == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(render({kind: data} if kind == "dataflows" else state, kind, width=_width(), wide=args.output == "wide"))


def _command(args: argparse.Namespace, fetch: Callable[[str, float], Mapping[str, object]]) -> int:
    if args.what in KINDS:
        state = fetch(args.master, args.timeout)
        _print(args, state, args.what, state.get(args.what, []))
        return 0
    if args.what == "dataflows":
        return _dataflows(args, fetch)
    if args.what == "kill":
        state = fetch(args.master, args.timeout)
        task = find_task(state, args.task_id)
        task_id = str(task["id"]) if task is not None else args.task_id
        before = post_kill(args.master, task_id, args.timeout)
        if args.output == "json":
            print(json.dumps(before, indent=2, sort_keys=True))
        elif str(before.get("state")) in ("RUNNING", "STARTING", "STAGING", "KILLING", "UNREACHABLE"):
            print(f"kill sent to task {task_id} ({before.get('state')} on agent {before.get('agent_id')})")
        else:
            print(f"task {task_id} has already ended: {before.get('state')}")
        return 0
    # task ID
    deadline = time.monotonic() + (args.wait_timeout if args.wait else 0.0)
    while True:
        state = fetch(args.master, args.timeout)
        task = find_task(state, args.task_id)
        if task is None:
            raise TaskNotFound(f"the master knows no task {args.task_id!r}")
        if not args.wait or str(task.get("state")) == args.wait.upper() or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    task = _with_history(args, task)
    if args.output == "json":
        print(json.dumps(task, indent=2, sort_keys=True))
    else:
        print(render_task(task, state))
        if args.lines > 0:
            from edgerm import cli_logs  # the tail comes from the task's agent, through the master

            try:
                print(cli_logs.log_tail(args.master, str(task["id"]), args.lines, args.timeout))
            except EdgermError as e:
                print(f"--- output: not available: {e}")
    if args.wait and str(task.get("state")) != args.wait.upper():
        print(
            f"edgerm: task {task.get('id')} is {task.get('state')}, not {args.wait.upper()},"
            f" after {args.wait_timeout:g}s",
            file=sys.stderr,
        )
        return 1
    return 0


def _with_history(args: argparse.Namespace, task: Mapping[str, object]) -> Mapping[str, object]:
    """The task with its status history (``GET /api/v1/tasks/{id}``), when the master has one."""
    url = f"{args.master.rstrip('/')}/api/v1/tasks/{urllib.parse.quote(str(task['id']), safe='')}"
    try:
        detail = fetch_json(url, args.timeout)
    except StateUnavailable:
        return task
    return {**task, **detail} if isinstance(detail, Mapping) else task


def _dataflows(args: argparse.Namespace, fetch: Callable[[str, float], Mapping[str, object]]) -> int:
    deadline = time.monotonic() + args.wait
    while True:
        state: Mapping[str, object] = {}
        if args.serve:
            listed = fetch_json(args.serve.rstrip("/") + "/dags", args.timeout)
            rows = [dict(r) for r in listed if isinstance(r, Mapping)] if isinstance(listed, list) else []
            rows = [{"dag": r.get("name"), **r} for r in rows]
        else:
            state = fetch(args.master, args.timeout)
            rows = dataflows(state)
        if rows or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    _print(args, state, "dataflows", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
