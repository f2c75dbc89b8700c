"""Logging for every edgerm console script: one setup, text or JSON lines, ids as fields.

Every command line (``edgerm-master``, ``edgerm-agent``, ``edgerm``, ``edgerm-dataflow``) takes
``--log-level`` and ``--log-format text|json`` (:func:`add_log_arguments`) and calls
:func:`configure_logging` once. ``json`` writes one JSON object per line::

    {"ts": "2026-12-02T01:02:03.456Z", "level": "INFO", "logger": "edgerm.master.events",
     "message": "task finished ...", "event": "task_finished", "task_id": "...", "framework_id": "...",
     "agent_id": "...", "state": "FINISHED", "reason": "COMMAND_EXITED"}

Rules:
- Ids and other facts travel as ``extra=`` fields (:func:`ids`); the JSON formatter lifts every field in
  :data:`FIELDS` that a record carries to the top level, so logs can be filtered by ``task_id`` without
  parsing messages. The text format keeps the message alone (which names the ids too).
- A traceback is printed only for records logged with ``exc_info`` (bugs at a boundary); expected
  conditions are one line (:func:`fail`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import TextIO

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Fields lifted from ``extra=`` into JSON lines, when a record carries them.
FIELDS = (
    "event",
    "agent_id",
    "framework_id",
    "task_id",
    "task_name",
    "hostname",
    "framework_name",
    "state",
    "reason",
    "message_detail",
    "exit_code",
    "executor",
    "resources",
    "transport",
    "port",
)


def ids(**fields: object) -> dict[str, object]:
    """``extra=`` for a log call: the given fields, empty ones left out."""
    return {k: v for k, v in fields.items() if v not in (None, "")}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, the known fields, and exc (a traceback) if any."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        out: dict[str, object] = {
            "ts": ts,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                out[key] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def add_log_arguments(parser: argparse.ArgumentParser, level: str = "INFO") -> None:
    parser.add_argument("--log-level", default=level, choices=LEVELS, type=str.upper, help="logging level")
    parser.add_argument(
        "--log-format", default="text", choices=FORMATS, help="text lines, or one JSON object per line with ids"
    )


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at each record (as logging's last-resort handler does), so a
    handler installed by an in-process ``main()`` (tests) never holds a stream that was since closed."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """Send every log record to ``stream`` (default: stderr) in ``fmt``.

    Replaces the handler an earlier call installed; other handlers of the root logger (a test
    framework's) are left alone.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler._edgerm = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_edgerm", False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    return handler


def fail(prog: str, message: str, extra: Mapping[str, object] | None = None) -> None:
    """An expected failure at start-up: one ERROR line (JSON when so configured), no traceback."""
    logging.getLogger(f"edgerm.{prog.removeprefix('edgerm-') or 'cli'}").error(
        "%s: %s", prog, message, extra=dict(extra or {})
    )


def version_argument(parser: argparse.ArgumentParser) -> None:
    from edgerm import __version__

    parser.add_argument("--version", action="version", version=f"{parser.prog} {__version__}")
