"""``edgerm-dataflow serve``: accept DAGs over HTTP and run each until it is deleted.

::

    POST   /dags        body: a DAG (YAML, or JSON)  -> 201 {"id", "name", "status"}
                        400 {"error", "problems": [{line, column, path, message}]} for an invalid DAG
                        409 when a DAG of that name already runs (their topics would collide)
                        503 when the master cannot be reached
    GET    /dags        -> 200 [{"id", "name", "phase"}]
    GET    /dags/{id}   -> 200 the run's status (as `run` shows it, in JSON); 404 if unknown
    DELETE /dags/{id}   -> 200 the final status, after every task of the DAG was stopped
    GET    /metrics     -> 200 every DAG's figures, Prometheus text (edgerm.frameworks.dataflow.metrics)

Each DAG runs as its own framework (``dataflow:<name>``) through
:class:`~edgerm.frameworks.dataflow.runner.DataflowRun`. A run whose DAG
could not be placed in time stays listed (phase ``failed``, with the
scheduler's reasons) until it is deleted. Stopping the server stops every
run first.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from edgerm.errors import WireError
from edgerm.frameworks.dataflow.metrics import render_dataflow_metrics
from edgerm.frameworks.dataflow.runner import DataflowRun, RunOptions
from edgerm.frameworks.dataflow.validate import DagError, detect_format, loads, problems_json
from edgerm.promtext import CONTENT_TYPE

MAX_DAG_BYTES = 1024 * 1024


class DagService:
    """The runs a server holds, by id."""

    def __init__(self, master_url: str, broker_url: str | None, options: RunOptions) -> None:
        self.master_url = master_url
        self.broker_url = broker_url
        self.options = replace(options, status_interval=0)
        self.runs: dict[str, DataflowRun] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    async def create(self, text: str, content_type: str) -> tuple[str, DataflowRun]:
        fmt = "json" if content_type == "application/json" else detect_format(text)
        dag = loads(text, source="<request>", fmt=fmt)
        async with self._lock:
            if any(r.dag.name == dag.name and not r.framework.done.is_set() for r in self.runs.values()):
                raise _Conflict(f"a DAG named {dag.name!r} is already running")
            run = DataflowRun(dag, self.master_url, broker_url=self.broker_url, options=self.options)
            try:
                await run.start()
            except BaseException:
                await run.stop()
                raise
            run_id = f"{dag.name}-{next(self._ids)}"
            self.runs[run_id] = run
            return run_id, run

    async def delete(self, run_id: str) -> dict[str, Any]:
        run = self.runs.pop(run_id)
        await run.stop()
        return {"id": run_id, **run.status()}

    async def close(self) -> None:
        runs, self.runs = list(self.runs.values()), {}
        for run in runs:
            await run.stop()


class _Conflict(Exception):
    pass


def make_app(service: DagService) -> web.Application:
    app = web.Application(client_max_size=MAX_DAG_BYTES)

    async def post(request: web.Request) -> web.Response:
        try:
            text = (await request.read()).decode("utf-8")
        except UnicodeDecodeError:
            return web.json_response({"error": "the body is not UTF-8 text"}, status=400)
        try:
            run_id, run = await service.create(text, request.content_type)
        except DagError as e:
            return web.json_response({"error": "invalid DAG", "problems": problems_json(e)}, status=400)
        except _Conflict as e:
            return web.json_response({"error": str(e)}, status=409)
        except WireError as e:
            return web.json_response({"error": f"{type(e).__name__}: {e}"}, status=503)
        return web.json_response({"id": run_id, "name": run.dag.name, "status": f"/dags/{run_id}"}, status=201)

    async def index(request: web.Request) -> web.Response:
        return web.json_response(
            [{"id": k, "name": r.dag.name, "phase": r.framework.phase.value} for k, r in service.runs.items()]
        )

    async def get(request: web.Request) -> web.Response:
        run_id = request.match_info["id"]
        run = service.runs.get(run_id)
        if run is None:
            return web.json_response({"error": f"no DAG {run_id!r}"}, status=404)
        return web.json_response({"id": run_id, **run.status()})

    async def delete(request: web.Request) -> web.Response:
        run_id = request.match_info["id"]
        if run_id not in service.runs:
            return web.json_response({"error": f"no DAG {run_id!r}"}, status=404)
        return web.json_response(await service.delete(run_id))

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=render_dataflow_metrics(service.runs).encode(), headers={"Content-Type": CONTENT_TYPE})

    app.router.add_post("/dags", post)
    app.router.add_get("/dags", index)
    app.router.add_get("/dags/{id}", get)
    app.router.add_delete("/dags/{id}", delete)
    app.router.add_get("/metrics", metrics)
    return app


@dataclass
class RunningServer:
    service: DagService
    runner: web.AppRunner
    url: str

    async def stop(self) -> None:
        try:
            await self.service.close()
        finally:
            await self.runner.cleanup()


async def start_server(
    master_url: str,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    broker_url: str | None = None,
    options: RunOptions | None = None,
) -> RunningServer:
    """Serve the DAG API on ``host:port`` (0: an ephemeral port); ``url`` names the bound one."""
    service = DagService(master_url, broker_url, options or RunOptions())
    runner = web.AppRunner(make_app(service), shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    return RunningServer(service, runner, f"http://{host}:{bound}")
