#!/usr/bin/env python3
"""hello_framework: launch N tasks on an edgerm cluster and wait for them.

    python examples/hello_framework.py --master http://127.0.0.1:5050 --tasks 3
    python -m edgerm.examples.hello_framework --tasks 3      # from an installed package; master: $EDGERM_MASTER
    python examples/hello_framework.py --master http://127.0.0.1:5050 --tasks 3 --docker edgerm-test/busybox:latest

The tasks are WebAssembly modules (``--module``, default examples/wasm/hello.wat)
or, with ``--docker IMAGE``, containers of that image running
``sh -c "echo hello from edgerm"``. Offers of agents that lack the executor
are declined (``supports``). Prints each status change (``task hello-3 on
agent a1b2c3d4: RUNNING``) and exits 0 when every task FINISHED, 1 if any
failed, was lost, killed or errored (or ``--timeout`` passed), 2 if the
master refused or stayed unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from edgerm.errors import ConfigError, WireError
from edgerm.frameworks import Framework, FrameworkDriver, docker_task, load_module, run, supports, wasm_task
from edgerm.model import Offer, TaskInfo, TaskState, TaskStatus
from edgerm.resources import Resources

NEED = Resources.parse("cpus:0.1;mem:32")
DEFAULT_MODULE = Path(__file__).resolve().parent / "wasm" / "hello.wat"
DOCKER_COMMAND = ("sh", "-c", "echo hello from edgerm")


class Hello(Framework):
    name = "hello"

    def __init__(self, tasks: int, module: bytes = b"", docker_image: str = "") -> None:
        self.module, self.image = module, docker_image  # a docker image, else the WASM module
        self.executor = "docker" if docker_image else "wasm"
        self.waiting = [f"hello-{i}" for i in range(1, tasks + 1)]  # not launched yet
        self.names: dict[str, str] = {}  # task id -> name, for launched tasks
        self.ended: dict[str, TaskState] = {}  # name -> final state

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        for offer in offers:
            tasks, free = [], offer.resources
            while self.waiting and supports(offer, self.executor) and free >= NEED:
                tasks.append(self.task(offer, self.waiting.pop(0)))
                free -= NEED
            if not tasks:
                await driver.decline([offer.id], refuse_seconds=60)
                continue
            try:
                await driver.accept([offer.id], tasks)
                self.names.update({t.task_id: t.name for t in tasks})
            except WireError:  # the offer went away meanwhile: use the next one
                self.waiting[:0] = [t.name for t in tasks]
        if not self.waiting:
            await driver.suppress()

    def task(self, offer: Offer, name: str) -> TaskInfo:
        if self.image:
            return docker_task(offer, name, self.image, NEED, args=DOCKER_COMMAND)
        return wasm_task(offer, name, self.module, NEED)

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        name = self.names.get(status.task_id, status.task_id)
        print(f"task {name} on agent {status.agent_id[:8]}: {status.state.value}", flush=True)
        if status.state.terminal and status.task_id in self.names:
            self.ended[name] = status.state
            if not self.waiting and len(self.ended) == len(self.names):
                await driver.stop()

    @property
    def all_finished(self) -> bool:
        return bool(self.ended) and all(s is TaskState.FINISHED for s in self.ended.values())


async def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument(
        "--master",
        default=os.environ.get("EDGERM_MASTER") or "http://127.0.0.1:5050",
        help="master URL (default: $EDGERM_MASTER or %(default)s)",
    )
    p.add_argument("--tasks", type=int, default=3, help="how many tasks to run (default: 3)")
    p.add_argument("--module", type=Path, default=DEFAULT_MODULE, help="a .wat or .wasm WASI module")
    p.add_argument("--docker", metavar="IMAGE", help="run the tasks as containers of IMAGE instead of WASM modules")
    p.add_argument("--timeout", type=float, default=0.0, help="give up after this many seconds (0: never)")
    p.add_argument("--token", help="framework (or admin) token (default: $EDGERM_TOKEN)")
    p.add_argument("--ca", metavar="FILE", help="CA certificate of an https master (default: $EDGERM_CA)")
    args = p.parse_args(argv)
    if args.tasks < 1:
        p.error("--tasks must be at least 1")
    try:
        module = b"" if args.docker else load_module(args.module)
        framework = Hello(args.tasks, module, docker_image=args.docker or "")
    except ConfigError as e:
        print(f"hello: {e}", file=sys.stderr)
        return 2
    try:
        async with asyncio.timeout(args.timeout or None):
            await run(framework, args.master, max_retries=5, token=args.token, ca=args.ca)
    except TimeoutError:
        print(f"hello: timed out after {args.timeout:g}s", file=sys.stderr)
        return 1
    except WireError as e:
        print(f"hello: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    return 0 if framework.all_finished else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
