"""``DataflowRuntime``: the agent's ``wasm`` runtime, hosting dataflow operators itself.

A WebAssembly task whose env holds ``EDGERM_DF_ROLE`` is a dataflow operator
instance (docs/dataflow.md): instead of running its module once as a command,
this runtime hosts it in an :class:`~edgerm.agent.dataflow.host.OperatorHost`
that feeds it micro-batches from MQTT (or a device) until the task is
killed. Every other task goes to the plain runtime it wraps (WasmRuntime),
so the agent advertises one ``wasm`` executor. Rules:

- Launch checks everything first (the env contract, the broker URL, the
  device, the module compiles and is a WASI command); a mistake ends the
  task FAILED with reason INVALID_TASK (IMAGE_UNAVAILABLE for a module the
  agent cannot get) before it reports RUNNING.
- ``WasmSpec.time_limit`` is the limit per batch here (default
  :data:`DEFAULT_BATCH_TIME_LIMIT`); the task itself runs until killed.
  Linear memory is capped by the task's ``mem`` (MiB) or the agent default.
- Batches of all instances run in one thread pool (``threads``); batches of
  one instance run one at a time, in order.
- The broker URL comes from the task's ``EDGERM_BROKER``, which the agent
  service fills in from REGISTERED (``contract.with_broker``).
- aiomqtt is imported only when the first dataflow task arrives.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from edgerm.agent.dataflow.contract import OperatorConfig, Role, is_dataflow, parse_operator, resolve_device
from edgerm.agent.dataflow.executor import MIB, BatchExecutor, ExecutorSpec, ModuleCache, ModuleInvalid, argv_for
from edgerm.agent.dataflow.readers import check_handle
from edgerm.agent.runtime import RecoveredTask, ReportCallback, Runtime, TaskEnded, TaskStarted
from edgerm.agent.wasm import ModuleFetcher
from edgerm.errors import ConfigError, EdgermError
from edgerm.ids import AgentId, TaskId
from edgerm.model import Reason, TaskInfo, TaskState, WasmSpec

if TYPE_CHECKING:
    from edgerm.agent.dataflow.host import OperatorHost

log = logging.getLogger(__name__)

DEFAULT_BATCH_TIME_LIMIT = 10.0  # seconds one batch may run
DEFAULT_MEMORY = 64.0  # MiB of linear memory per instance
FETCHED_MODULES = 16  # module bytes fetched from the master, kept for further instances


class DataflowRuntime:
    """Hosts dataflow operator tasks; passes every other wasm task to ``inner``."""

    executor = "wasm"

    def __init__(
        self,
        agent_id: AgentId,
        inner: Runtime | None = None,
        *,
        devices: Mapping[str, str] | None = None,
        fetch_module: ModuleFetcher | None = None,
        threads: int = 4,
        default_memory: float = DEFAULT_MEMORY,
        batch_time_limit: float = DEFAULT_BATCH_TIME_LIMIT,
    ) -> None:
        self.agent_id = agent_id
        self.inner = inner
        self._devices = dict(devices or {})
        self._fetch = fetch_module
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="edgerm-df")
        self._cache = ModuleCache()
        self._modules: OrderedDict[str, bytes] = OrderedDict()  # fetched module bytes by sha256
        self._default_memory = default_memory
        self._batch_time_limit = batch_time_limit
        self._hosts: dict[TaskId, OperatorHost] = {}
        self._jobs: dict[TaskId, asyncio.Task[None]] = {}
        self._preparing: set[TaskId] = set()
        self._killed_early: set[TaskId] = set()  # killed while being prepared
        self._closed = False

    # -- Runtime protocol --------------------------------------------------------------

    async def available(self) -> bool:
        if self._closed:
            return False
        return True if self.inner is None else await self.inner.available()

    async def launch(self, task: TaskInfo, workdir: Path, report: ReportCallback) -> None:
        if not (is_dataflow(task.env) and isinstance(task.container, WasmSpec)):
            if self.inner is None:
                report(TaskEnded(task.task_id, TaskState.FAILED, Reason.INVALID_TASK, "not a dataflow task"))
                return
            await self.inner.launch(task, workdir, report)
            return
        if task.task_id in self._hosts or task.task_id in self._jobs or task.task_id in self._preparing:
            return  # LAUNCH is idempotent
        if self._closed:
            report(TaskEnded(task.task_id, TaskState.FAILED, Reason.RUNTIME_ERROR, "the runtime is shut down"))
            return
        self._preparing.add(task.task_id)
        try:
            host = await self._prepare(task, task.container, workdir)
        except ConfigError as e:
            report(TaskEnded(task.task_id, TaskState.FAILED, Reason.INVALID_TASK, str(e)))
            return
        except ModuleInvalid as e:
            report(TaskEnded(task.task_id, TaskState.FAILED, Reason.INVALID_TASK, str(e)))
            return
        except EdgermError as e:  # the module could not be fetched
            report(TaskEnded(task.task_id, TaskState.FAILED, Reason.IMAGE_UNAVAILABLE, str(e)))
            return
        finally:
            self._preparing.discard(task.task_id)
        if task.task_id in self._killed_early or self._closed:
            self._killed_early.discard(task.task_id)
            report(TaskEnded(task.task_id, TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK, "killed before it started"))
            return
        self._hosts[task.task_id] = host
        report(TaskStarted(task.task_id))
        job = asyncio.create_task(self._run(host, report), name=f"df-task-{task.task_id}")
        self._jobs[task.task_id] = job
        cfg = host.config
        log.info(
            "dataflow %s/%s.%d (%s) started as task %s", cfg.dag, cfg.operator, cfg.index, cfg.role.value, task.task_id
        )

    async def kill(self, task_id: TaskId, grace: float) -> None:
        host = self._hosts.get(task_id)
        if host is None and task_id in self._preparing:
            self._killed_early.add(task_id)  # launch reports KILLED once preparing ends
            return
        if host is None:
            if self.inner is not None:
                await self.inner.kill(task_id, grace)
            return
        host.stop()
        job = self._jobs.get(task_id)
        if job is not None and not job.done():
            try:
                await asyncio.wait_for(asyncio.shield(job), timeout=max(grace, 0.5))
            except TimeoutError:
                log.warning("dataflow task %s did not stop within %.1fs; cancelling it", task_id, grace)
                job.cancel()

    async def recover(self, report: ReportCallback) -> list[RecoveredTask]:
        # Operator instances live in the agent's process: none survive a restart.
        return await self.inner.recover(report) if self.inner is not None else []

    async def cleanup(self, task_id: TaskId) -> None:
        if self._hosts.pop(task_id, None) is not None:
            self._jobs.pop(task_id, None)
            return
        if self.inner is not None:
            await self.inner.cleanup(task_id)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for host in self._hosts.values():
            host.stop()
        jobs = [j for j in self._jobs.values() if not j.done()]
        if jobs:
            _, pending = await asyncio.wait(jobs, timeout=5.0)
            for job in pending:
                job.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
        if self.inner is not None:
            await self.inner.close()

    # -- helpers ------------------------------------------------------------------------

    def running(self) -> list[TaskId]:
        """Dataflow tasks hosted and not yet ended."""
        return [t for t, job in self._jobs.items() if not job.done()]

    def host(self, task_id: TaskId) -> OperatorHost | None:
        """The host of a dataflow task (for tests and metrics)."""
        return self._hosts.get(task_id)

    async def _prepare(self, task: TaskInfo, spec: WasmSpec, workdir: Path) -> OperatorHost:
        config = parse_operator(task.environment())  # the broker login is in secret_env
        device = ""
        if config.role is Role.SOURCE:
            device = resolve_device(config, task.resources, self._devices)
            check_handle(device)
        module = spec.module or self._cache_hit(spec.module_sha256) or await self._fetch_module(spec.module_sha256)
        mem = task.resources.mem or self._default_memory
        exec_spec = ExecutorSpec(
            module=module,
            # replicas each name their own records (an aggregate's src): a sink tells them apart
            argv=argv_for(config.operator if config.replicas == 1 else config.source_id, task.args),
            env=task.environment(),  # env and secret_env
            workdir=workdir,
            memory_bytes=int(mem * MIB),
        )
        executor = await asyncio.to_thread(BatchExecutor, exec_spec, self._cache)
        return self._host(task, config, executor, device, spec)

    def _host(
        self, task: TaskInfo, config: OperatorConfig, executor: BatchExecutor, device: str, spec: WasmSpec
    ) -> OperatorHost:
        # Imported here: an agent that runs no dataflow never loads MQTT.
        from edgerm.agent.dataflow.host import OperatorHost
        from edgerm.agent.dataflow.sinks import sink_for

        return OperatorHost(
            task,
            config,
            executor,
            self._pool,
            self.agent_id,
            device=device,
            sink=sink_for(config.sink) if config.role is Role.SINK else None,
            batch_time_limit=spec.time_limit if spec.time_limit > 0 else self._batch_time_limit,
        )

    def _cache_hit(self, sha256: str) -> bytes:
        return self._modules.get(sha256, b"")

    async def _fetch_module(self, sha256: str) -> bytes:
        if self._fetch is None:
            raise EdgermError(f"module {sha256} is not on this agent and there is no master to ask")
        data = await self._fetch(sha256)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise EdgermError(f"module {sha256}: the master sent other bytes")
        self._modules[sha256] = data
        while len(self._modules) > FETCHED_MODULES:
            self._modules.popitem(last=False)
        return data

    async def _run(self, host: OperatorHost, report: ReportCallback) -> None:
        task_id = host.task.task_id
        try:
            end = await host.run()
        except asyncio.CancelledError:
            report(TaskEnded(task_id, TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK, "stopped"))
            raise
        if end.state is TaskState.FAILED:
            log.warning("dataflow task %s failed: %s", task_id, end.message)
        report(end)
