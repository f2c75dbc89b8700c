"""``edgerm-dataflow``: validate, plan, run and serve dataflow DAGs.

::

    edgerm-dataflow validate FILE
    edgerm-dataflow plan FILE [--master URL] [--wait S] [--policy P]
    edgerm-dataflow run FILE [--master URL] [--broker URL] [--deadline S] [--duration S]
                             [--status-interval S] [--records all|sample|none] [--policy P]
    edgerm-dataflow serve [--master URL] [--broker URL] [--host H] [--port P]

``--master`` defaults to ``$EDGERM_MASTER``, else http://127.0.0.1:5050; the
broker to what the master advertises. ``run`` shows live status until
Ctrl-C (or ``--duration``), then kills every task it launched and tears the
framework down.

Exit status: 0 fine (``validate``: valid; ``plan``: every instance placed;
``run``: ran and stopped cleanly); 1 invalid DAG, unplaced instances, a
run that failed (the deadline passed: the scheduler's reasons are printed),
or fewer records at the sinks than ``--min-records``;
2 the master could not be reached or refused.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import sys
from collections.abc import Callable

from edgerm.errors import ConfigError, WireError
from edgerm.frameworks.dataflow.probe import plan_against
from edgerm.frameworks.dataflow.runner import DataflowRun, RecordsMode, RunOptions
from edgerm.frameworks.dataflow.server import start_server
from edgerm.frameworks.dataflow.validate import DagError, load
from edgerm.logs import add_log_arguments, configure_logging, version_argument
from edgerm.scheduler import POLICIES, Dag

DEFAULT_MASTER = "http://127.0.0.1:5050"
MASTER_ENV = "EDGERM_MASTER"


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(
        prog="edgerm-dataflow", description="Validate, plan, run and serve dataflow DAGs.", formatter_class=fmt
    )
    version_argument(p)
    add_log_arguments(p, level="WARNING")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", formatter_class=fmt, help="check a DAG file offline")
    v.add_argument("file")

    def master(q: argparse.ArgumentParser) -> None:
        q.add_argument("--master", metavar="URL", help=f"master URL (default ${MASTER_ENV} or {DEFAULT_MASTER})")
        q.add_argument("--policy", choices=sorted(POLICIES), default="locality", help="placement policy")

    pl = sub.add_parser("plan", formatter_class=fmt, help="print the plan the master's offers allow, launching nothing")
    pl.add_argument("file")
    master(pl)
    pl.add_argument("--wait", type=float, default=3.0, help="seconds to collect offers (default 3)")

    r = sub.add_parser("run", formatter_class=fmt, help="place and run a DAG, show live status until Ctrl-C")
    r.add_argument("file")
    master(r)
    r.add_argument("--broker", metavar="URL", help="MQTT broker to watch (default: the one the master names)")
    r.add_argument("--deadline", type=float, default=60.0, help="seconds to wait for a placement (0: forever)")
    r.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: at Ctrl-C)")
    r.add_argument("--status-interval", type=float, default=2.0, help="seconds between status blocks (0: none)")
    r.add_argument("--records", choices=RecordsMode.CHOICES, default=RecordsMode.SAMPLE, help="sink records shown")
    r.add_argument("--watch", choices=["all", "sinks"], default="all", help="topics watched for losses")
    r.add_argument("--min-records", type=int, default=0, metavar="N", help="exit 1 unless N records reached the sinks")
    quality_hold(r)

    s = sub.add_parser("serve", formatter_class=fmt, help="accept DAGs over HTTP (POST/GET/DELETE /dags)")
    master(s)
    s.add_argument("--broker", metavar="URL", help="MQTT broker to watch (default: the one the master names)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=5060)
    s.add_argument("--deadline", type=float, default=60.0, help="seconds each DAG may wait for a placement")
    quality_hold(s)
    return p


def quality_hold(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quality-hold",
        type=_positive,
        default=30.0,
        metavar="S",
        help="seconds a variant that broke a quality condition is held off before main is probed (doubling; 30)",
    )


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _master(args: argparse.Namespace) -> str:
    return str(args.master or os.environ.get(MASTER_ENV) or DEFAULT_MASTER)


def _print(text: str) -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(f"edgerm-dataflow: {text}", file=sys.stderr, flush=True)


def cmd_validate(args: argparse.Namespace) -> int:
    dag = load(args.file)
    ops = ", ".join(
        f"{op.name} ({op.kind.value}, {len(op.variants)} variant{'s' * (len(op.variants) > 1)})" for op in dag.operators
    )
    _print(f"{args.file}: valid DAG {dag.name!r}: {ops}; {len(dag.edges)} edge(s)")
    return 0


async def cmd_plan(args: argparse.Namespace, dag: Dag) -> int:
    plan = await plan_against(dag, _master(args), wait=args.wait, policy=POLICIES[args.policy])
    _print(plan.explain())
    return 0 if plan.complete else 1


async def _until_signal(stop: asyncio.Event) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def remove() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    return remove


async def cmd_run(args: argparse.Namespace, dag: Dag) -> int:
    options = RunOptions(
        deadline=args.deadline or None,
        status_interval=args.status_interval,
        records=args.records,
        watch_all=args.watch == "all",
        policy=POLICIES[args.policy],
        quality_hold=args.quality_hold,
    )
    run = DataflowRun(dag, _master(args), broker_url=args.broker, options=options, out=_print)
    stop = asyncio.Event()
    remove = await _until_signal(stop)
    try:
        await run.start()
        waiting = asyncio.create_task(run.wait(args.duration or None))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([waiting, stopping], return_when=asyncio.FIRST_COMPLETED)
        for t in (waiting, stopping):
            t.cancel()
        await asyncio.wait([waiting, stopping])
    finally:
        remove()
        await run.stop()
    if run.failure:
        _err(run.failure)
    moves = run.moves
    fw, watch, _ = run.views()
    summary = f"{dag.name}: {fw.phase.value}; {len(moves)} move(s)"
    if watch is not None:
        summary += f"; {watch.sink_records} record(s) at the sinks; {watch.lost_in_moves} lost in moves"
        summary += f"; {sum(o.dropped for o in watch.operators)} dropped"
    _print(summary)
    if run.exit_code == 0 and args.min_records and (watch is None or watch.sink_records < args.min_records):
        _err(f"fewer than {args.min_records} record(s) reached the sinks")
        return 1
    return run.exit_code


async def cmd_serve(args: argparse.Namespace) -> int:
    options = RunOptions(deadline=args.deadline or None, policy=POLICIES[args.policy], quality_hold=args.quality_hold)
    server = await start_server(_master(args), args.host, args.port, broker_url=args.broker, options=options)
    _print(f"edgerm-dataflow serving on {server.url} (master {_master(args)})")
    stop = asyncio.Event()
    remove = await _until_signal(stop)
    try:
        await stop.wait()
    finally:
        remove()
        await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "serve":
            return asyncio.run(cmd_serve(args))
        dag = load(args.file)
        if args.command == "plan":
            return asyncio.run(cmd_plan(args, dag))
        return asyncio.run(cmd_run(args, dag))
    except DagError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return 1
    except WireError as e:
        _err(f"{type(e).__name__}: {e}")
        return 2
    except OSError as e:
        if args.command == "serve" and (e.errno == errno.EADDRINUSE or "address already in use" in str(e).lower()):
            _err(f"port {args.host}:{args.port} is already in use; choose another with --port")
        else:
            _err(str(e))
        return 2
    except ConfigError as e:
        _err(str(e))
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
