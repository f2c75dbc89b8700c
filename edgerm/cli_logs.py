"""``edgerm logs TASK [-f]`` and the log tail of ``edgerm task ID``: a task's output through the master.

::

    edgerm logs TASK [--stderr] [-f] [--tail BYTES]     print (and follow) a task's stdout or stderr
    edgerm task TASK [--lines N]                         a task's status history and the end of its output

Both ask the master (``GET /api/v1/tasks/{id}`` and ``GET /api/v1/tasks/{id}/logs``),
which fetches the output from the task's agent over the agent's own channel, so
this works for agents behind NAT. ``-f`` keeps reading new output every
second until the task has ended and everything was printed (Ctrl-C stops).

Exit status: 0 on success, 1 when the master answers with an error (the
message says why: no such task, agent not connected, agent did not answer),
2 when the master cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

from edgerm.auth.client import bearer, client_ssl, resolve_token
from edgerm.auth.principal import Role
from edgerm.errors import ConfigError, EdgermError

CHUNK = 64 * 1024
TERMINAL = frozenset({"FINISHED", "FAILED", "KILLED", "LOST", "ERROR", "DROPPED", "UNKNOWN"})


class MasterUnreachable(EdgermError):
    """The master could not be reached (exit 2)."""


class MasterRefused(EdgermError):
    """The master answered with an error (exit 1)."""


Getter = Callable[[str, float], Mapping[str, object]]


def get_json(url: str, timeout: float) -> Mapping[str, object]:
    """GET ``url`` as JSON, with the CLI's credentials (``$EDGERM_TOKEN``, ``$EDGERM_CA``); the master's
    JSON errors become :class:`MasterRefused` with its message."""
    parts = urllib.parse.urlsplit(url)
    master = f"{parts.scheme}://{parts.netloc}"
    headers = {"Accept": "application/json", **bearer(resolve_token(None, master, Role.ADMIN))}
    request = urllib.request.Request(url, headers=headers)
    try:
        context = client_ssl(master, None)
    except ConfigError as e:
        raise MasterUnreachable(str(e)) from None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read())
            message = detail.get("message") or detail.get("error") or e.reason
        except (ValueError, AttributeError):
            message = e.reason
        raise MasterRefused(f"{message} (HTTP {e.code})") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise MasterUnreachable(f"cannot reach the master: {reason}") from None
    try:
        data = json.loads(body)
    except ValueError:
        raise MasterUnreachable(f"{url} did not answer JSON") from None
    if not isinstance(data, dict):
        raise MasterUnreachable(f"{url} answered JSON that is not an object")
    return data


def _task_url(master: str, task_id: str) -> str:
    return f"{master.rstrip('/')}/api/v1/tasks/{urllib.parse.quote(task_id, safe='')}"


def fetch_logs(
    master: str, task_id: str, stream: str, offset: int, limit: int, timeout: float, get: Getter = get_json
) -> Mapping[str, object]:
    query = urllib.parse.urlencode({"stream": stream, "offset": offset, "limit": limit})
    return get(f"{_task_url(master, task_id)}/logs?{query}", timeout)


def log_tail(master: str, task_id: str, lines: int = 10, timeout: float = 10.0, get: Getter = get_json) -> str:
    """The last ``lines`` lines of a task's stdout and stderr, for ``edgerm task ID`` (a note when unavailable)."""
    out = []
    for stream in ("stdout", "stderr"):
        try:
            piece = fetch_logs(master, task_id, stream, -CHUNK, CHUNK, timeout, get)
        except MasterRefused as e:
            out.append(f"--- {stream}: not available: {e}")
            continue
        text = str(piece.get("data", ""))
        kept = text.splitlines()[-lines:] if lines > 0 else []
        head = f"--- {stream} (last {len(kept)} line(s) of {piece.get('size', 0)} bytes)"
        out.append("\n".join([head, *kept]) if kept else f"--- {stream}: empty")
    return "\n".join(out)


def task_text(master: str, task_id: str, lines: int, timeout: float, get: Getter = get_json) -> str:
    """A task's fields, its status history and the end of its output."""
    task = get(_task_url(master, task_id), timeout)
    out = [f"{k:<10} {task.get(k, '')}" for k in ("id", "name", "state", "reason", "message", "framework", "hostname")]
    history = task.get("history")
    out.append("")
    out.append(f"{'WHEN (UTC)':<20} {'STATE':<9} {'REASON':<20} MESSAGE")
    for h in reversed(history) if isinstance(history, list) else []:
        if isinstance(h, Mapping):
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(h.get("at") or 0)))
            out.append(f"{at:<20} {h.get('state', '')!s:<9} {h.get('reason', '')!s:<20} {h.get('message', '')}")
    out.append("")
    out.append(log_tail(master, task_id, lines, timeout, get))
    return "\n".join(out)


def follow(
    master: str,
    task_id: str,
    stream: str,
    tail: int | None,
    keep_following: bool,
    out: TextIO,
    timeout: float,
    *,
    get: Getter = get_json,
    interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Print the stream (its last ``tail`` bytes when given); with ``keep_following``, until the task ended."""
    offset = -tail if tail is not None else 0
    while True:
        piece = fetch_logs(master, task_id, stream, offset, CHUNK, timeout, get)
        data = str(piece.get("data", ""))
        start, length, size = (int(piece.get(k, 0)) for k in ("offset", "length", "size"))  # type: ignore[call-overload]
        if data:
            out.write(data)
            out.flush()
        offset = start + length
        if offset < size:
            continue  # more is there already
        if not keep_following:
            return
        state = str(get(_task_url(master, task_id), timeout).get("state", ""))
        if state in TERMINAL:
            last = fetch_logs(master, task_id, stream, offset, CHUNK, timeout, get)
            out.write(str(last.get("data", "")))
            out.flush()
            return
        sleep(interval)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``logs`` (and ``task``) to an ``edgerm`` subcommand parser."""
    p = sub.add_parser("logs", help="print a task's output (fetched from its agent through the master)")
    p.add_argument("task_id", metavar="TASK")
    p.add_argument("--stderr", action="store_true", help="print stderr instead of stdout")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output until the task ends")
    p.add_argument("--tail", type=int, metavar="BYTES", help="start this many bytes before the end")
    t = sub.add_parser("task", help="a task's status history and the end of its output")
    t.add_argument("task_id", metavar="TASK")
    t.add_argument("--lines", type=int, default=10, help="lines of output to show (default: %(default)s)")


def run(args: argparse.Namespace, out: TextIO = sys.stdout, get: Getter = get_json) -> int:
    """Run ``logs`` or ``task``; returns the exit status."""
    try:
        if args.command == "logs":
            stream = "stderr" if args.stderr else "stdout"
            follow(args.master, args.task_id, stream, args.tail, args.follow, out, args.timeout, get=get)
        else:
            print(task_text(args.master, args.task_id, args.lines, args.timeout, get), file=out)
    except MasterRefused as e:
        print(f"edgerm: {e}", file=sys.stderr)
        return 1
    except MasterUnreachable as e:
        print(f"edgerm: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: Sequence[str], master: str, timeout: float) -> int:
    """``edgerm [--master URL] logs|task ...`` (called by :func:`edgerm.cli.main`)."""
    parser = argparse.ArgumentParser(prog="edgerm")
    parser.add_argument("--master", default=master)
    parser.add_argument("--timeout", type=float, default=timeout)
    sub = parser.add_subparsers(dest="command", required=True)
    add_parsers(sub)
    return run(parser.parse_args(argv))
