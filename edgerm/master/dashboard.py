"""The master's web dashboard: server-rendered pages that update themselves.

Routes (all GET; :func:`add_routes` registers them in one place)::

    /                      home: cluster totals, utilisation, agents by state, recent failures
    /ui/agents             agents with resources, attributes and transport (lost ones kept a while)
    /ui/frameworks         active and completed frameworks
    /ui/tasks              tasks with filters (?state=&framework=&agent=&q=) and paging (?page=)
    /ui/tasks/{id}         one task: details, status history, stdout/stderr through the master
    /ui/dataflows          the dataflows the master has launched tasks for
    /ui/dataflows/{name}   one dataflow: operator graph with placements, rates, drops and moves

Each page is complete HTML without JavaScript. Asked with ``Accept:
application/json`` the same URL answers the page's content as JSON
(:mod:`edgerm.master.views`), which the inline script polls to update the
page in place (:mod:`edgerm.master.webui`).

Rules: every value is escaped (:func:`~edgerm.master.webui.esc`); inputs
from the query string are bounded (:class:`~edgerm.master.views.TaskQuery`);
an unknown task or dataflow is a 404 page; no external assets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from aiohttp import web

from edgerm.ids import TaskId
from edgerm.master import views
from edgerm.master.webui import Col, Json, Table, bar, esc, page, pick, state_badge, when

if TYPE_CHECKING:
    from edgerm.master.handlers import Handlers

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# -- tables -------------------------------------------------------------------------------

AGENTS_BRIEF = Table(
    "agents-brief",
    (
        Col("Agent", "hostname", link="/ui/tasks?agent={id}"),
        Col("State", "state", "state"),
        Col("Transport", "transport"),
        Col("CPUs", "cpus", "bar", bar="cpus_pct"),
        Col("Memory", "mem", "bar", bar="mem_pct"),
        Col("Tasks", "tasks", cls="num"),
        Col("Last heard", "last_seen", "time"),
    ),
    "no agents have registered",
)
AGENTS = Table(
    "agents",
    (
        Col("Agent", "hostname", link="/ui/tasks?agent={id}"),
        Col("Id", "id", "code"),
        Col("State", "state", "state"),
        Col("Transport", "transport"),
        Col("CPUs", "cpus", "bar", bar="cpus_pct"),
        Col("Memory", "mem", "bar", bar="mem_pct"),
        Col("Disk", "disk"),
        Col("Devices", "devices"),
        Col("Attributes", "attributes", cls="wrap attrs"),
        Col("Tasks", "tasks", cls="num"),
        Col("Last heard", "last_seen", "time"),
    ),
    "no agents have registered",
)
TASKS = Table(
    "tasks",
    (
        Col("Task", "id", "code", link="/ui/tasks/{id}"),
        Col("Name", "name"),
        Col("State", "state", "state"),
        Col("Reason", "reason"),
        Col("Message", "message", cls="wrap"),
        Col("Framework", "framework", link="/ui/tasks?framework={framework_id}"),
        Col("Agent", "hostname", link="/ui/tasks?agent={agent_id}"),
        Col("Executor", "executor"),
        Col("Resources", "resources", cls="wrap"),
        Col("Updated", "updated_at", "time"),
    ),
    "no tasks match",
)
FAILURES = Table(
    "failures",
    (
        Col("Task", "id", "code", link="/ui/tasks/{id}"),
        Col("Name", "name"),
        Col("State", "state", "state"),
        Col("Reason", "reason"),
        Col("Message", "message", cls="wrap"),
        Col("Agent", "hostname"),
        Col("When", "updated_at", "time"),
    ),
    "no failed tasks",
)
FRAMEWORKS = Table(
    "frameworks",
    (
        Col("Framework", "name", link="/ui/tasks?framework={id}"),
        Col("Id", "id", "code"),
        Col("State", "state", "state"),
        Col("Live tasks", "tasks", cls="num"),
        Col("Offers held", "offers", cls="num"),
        Col("DRF share %", "share_pct", cls="num"),
        Col("Subscribed", "subscribed_at", "time"),
    ),
    "no frameworks are subscribed",
)
COMPLETED = Table(
    "completed",
    (
        Col("Framework", "name", link="/ui/tasks?framework={id}"),
        Col("Id", "id", "code"),
        Col("State", "state", "state"),
        Col("Subscribed", "subscribed_at", "time"),
        Col("Ended", "ended_at", "time"),
    ),
    "no framework has ended recently",
)
HISTORY = Table(
    "history",
    (
        Col("When", "at", "time"),
        Col("State", "state", "state"),
        Col("Reason", "reason"),
        Col("Message", "message", cls="wrap"),
        Col("Source", "source"),
        Col("Exit", "exit_code", cls="num"),
    ),
    "no status recorded",
)
DATAFLOWS = Table(
    "dataflows",
    (
        Col("Dataflow", "name", link="/ui/dataflows/{name}"),
        Col("Instances", "instances", cls="num"),
        Col("Running", "running", cls="num"),
        Col("Moves", "moves", cls="num"),
        Col("First seen", "first_seen", "time"),
    ),
    "no dataflow tasks have been launched",
)
OPERATORS = Table(
    "operators",
    (
        Col("Operator", "name"),
        Col("Role", "role"),
        Col("In /s", "in_per_s_text", cls="num"),
        Col("Out /s", "out_per_s_text", cls="num"),
        Col("Dropped", "dropped_text", cls="num"),
        Col("Errors", "errors", cls="num"),
        Col("Moves", "moves", cls="num"),
        Col("Placed on", "placed", cls="wrap"),
    ),
)


# -- pages ----------------------------------------------------------------------------------


def _card(label: str, key: str, data: Json, sub: str = "", cls: str = "") -> str:
    value = pick(data, key)
    klass = f"card {cls}{' zero' if value == 0 else ''}".strip()
    return (
        f'<div class="{esc(klass)}"><div class="l">{esc(label)}</div><div class="n" data-k="{esc(key)}">'
        f"{esc(value)}</div>{f'<div class=sub>{sub}</div>' if sub else ''}</div>"
    )


def home_body(data: Json) -> str:
    now = float(data["now"])  # type: ignore[arg-type]
    totals = "totals"
    cards = "".join(
        (
            _card("Agents active", f"{totals}.agents_active", data),
            _card("Agents silent", f"{totals}.agents_silent", data, "a heartbeat is overdue", "warn"),
            _card("Agents lost", f"{totals}.agents_lost", data, "recently departed", "bad"),
            _card("Frameworks", f"{totals}.frameworks_active", data, "active"),
            _card("Tasks running", f"{totals}.tasks_running", data),
            _card("Tasks failed", f"{totals}.tasks_failed", data, "failed, lost or errored", "bad"),
            _card("Offers outstanding", f"{totals}.offers", data),
            _card("Dataflows", f"{totals}.dataflows", data),
        )
    )
    util = []
    resources = data.get("resources")
    for i, r in enumerate(resources if isinstance(resources, list) else []):
        util.append(
            f'<div class="util"><b>{esc(r["name"])}</b>'
            f"{bar(r['used_pct'], r['offered_pct'], f'resources.{i}.used_pct', f'resources.{i}.offered_pct')}"
            f'<span data-k="resources.{i}.text">{esc(r["text"])}</span></div>'
        )
    legend = (
        '<div class="legend note"><span style="background:#3b82f6"></span>used'
        '<span style="background:#a5c8fb"></span>offered</div>'
    )
    return (
        f'<section data-scope><div class="cards">{cards}</div>'
        f'<h2>Utilisation</h2><div class="panel">{"".join(util)}{legend}</div></section>'
        f"<h2>Agents</h2>{AGENTS_BRIEF.render(_list(data, 'agents'), now, 'agents')}"
        f"<h2>Recent failures</h2>{FAILURES.render(_list(data, 'failures'), now, 'failures')}"
    )


def _list(data: Json, key: str) -> list[Json]:
    items = data.get(key)
    return [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []


def agents_body(data: Json) -> str:
    now = float(data["now"])  # type: ignore[arg-type]
    return AGENTS.render(_list(data, "agents"), now, "agents") + (
        '<p class="note">Lost agents stay listed for a while after the master gave up on them, '
        "and leave the list when they register again.</p>"
    )


def frameworks_body(data: Json) -> str:
    now = float(data["now"])  # type: ignore[arg-type]
    return (
        f"{FRAMEWORKS.render(_list(data, 'active'), now, 'active')}"
        f"<h2>Completed</h2>{COMPLETED.render(_list(data, 'completed'), now, 'completed')}"
    )


def _option(value: str, label: str, chosen: str) -> str:
    return f'<option value="{esc(value)}"{" selected" if value == chosen else ""}>{esc(label)}</option>'


def tasks_body(data: Json) -> str:
    now = float(data["now"])  # type: ignore[arg-type]
    f = data.get("filters")
    filters: Mapping[str, object] = f if isinstance(f, Mapping) else {}
    state, fw = str(filters.get("state", "")), str(filters.get("framework", ""))
    states = data.get("states")
    state_opts = _option("", "any", state) + "".join(
        _option(s, s.lower(), state) for s in (states if isinstance(states, list) else [])
    )
    fw_opts = _option("", "any", fw) + "".join(
        _option(str(x["id"]), f"{x['name']} ({str(x['id'])[:8]})", fw) for x in _list(data, "frameworks")
    )
    form = (
        '<form class="filters" method="get" action="/ui/tasks">'
        f'<label>State<select name="state">{state_opts}</select></label>'
        f'<label>Framework<select name="framework">{fw_opts}</select></label>'
        f'<label>Agent id<input name="agent" value="{esc(filters.get("agent", ""))}" size="20"></label>'
        f'<label>Id or name<input name="q" value="{esc(filters.get("q", ""))}" size="20"></label>'
        '<button type="submit">Filter</button> <a href="/ui/tasks">clear</a></form>'
    )
    page_no, pages, total = data.get("page", 1), data.get("pages", 1), data.get("total", 0)
    base = {k: str(v) for k, v in filters.items() if v}
    links = []
    if isinstance(page_no, int) and isinstance(pages, int):
        if page_no > 1:
            links.append(f'<a href="/ui/tasks?{esc(urlencode({**base, "page": page_no - 1}))}">&larr; newer</a>')
        if page_no < pages:
            links.append(f'<a href="/ui/tasks?{esc(urlencode({**base, "page": page_no + 1}))}">older &rarr;</a>')
    pager = (
        f'<div class="pager" data-scope><span data-k="total">{esc(total)}</span> task(s) · page '
        f'<span data-k="page">{esc(page_no)}</span> of <span data-k="pages">{esc(pages)}</span> {" ".join(links)}</div>'
    )
    return form + pager + TASKS.render(_list(data, "tasks"), now, "tasks")


def task_body(data: Json) -> str:
    now = float(data["now"])  # type: ignore[arg-type]
    fields = (
        ("Task id", "id", "code"),
        ("Name", "name", ""),
        ("State", "state", "state"),
        ("Reason", "reason", ""),
        ("Message", "message", ""),
        ("Framework", "framework", ""),
        ("Agent", "hostname", ""),
        ("Executor", "executor", ""),
        ("Image / module", "image", "code"),
        ("Arguments", "args", ""),
        ("Resources", "resources", ""),
        ("Updated", "updated_at", "time"),
    )
    rows = []
    for label, key, kind in fields:
        value = data.get(key)
        if kind == "state":
            inner = state_badge(value, key)
        elif kind == "time":
            inner = when(value if isinstance(value, int | float) else None, now, key)
        elif kind == "code":
            inner = f'<code data-k="{esc(key)}" title="{esc(value)}" style="max-width:none">{esc(value)}</code>'
        else:
            inner = f'<span data-k="{esc(key)}">{esc(value)}</span>'
        rows.append(f"<dt>{esc(label)}</dt><dd>{inner}</dd>")
    task_id = str(data.get("id", ""))
    logs = "".join(
        f'<h2>{name}</h2><pre class="log" id="log-{name}" data-task="{esc(task_id)}" data-stream="{name}" '
        f'data-offset="{esc(data.get(f"{name}_end", 0))}">{esc(data.get(name, ""))}</pre>'
        for name in ("stdout", "stderr")
    )
    note = data.get("logs_note")
    return (
        f'<section data-scope class="panel"><dl class="kv">{"".join(rows)}</dl></section>'
        f"<h2>Status history</h2>{HISTORY.render(_list(data, 'history'), now, 'history')}"
        f"{logs}<p class='note' id='log-note'>{esc(note or '')}</p><script>{LOG_SCRIPT}</script>"
    )


LOG_SCRIPT = r"""
"use strict";
(function(){
for(const pre of document.querySelectorAll("pre.log")){
  let offset=Number(pre.dataset.offset||0),busy=false;
  async function more(){
    if(busy)return;busy=true;
    try{const u="/api/v1/tasks/"+encodeURIComponent(pre.dataset.task)+"/logs?stream="+pre.dataset.stream+
      "&offset="+(offset<0?0:offset)+"&limit=65536";
      const r=await fetch(u,{cache:"no-store"});
      if(r.ok){const d=await r.json();if(d.offset<offset){pre.textContent="";}
        if(d.data){const end=pre.scrollTop+pre.clientHeight>=pre.scrollHeight-4;
          pre.textContent=(offset?pre.textContent:"")+d.data;if(end)pre.scrollTop=pre.scrollHeight;}
        offset=d.offset+d.length;document.getElementById("log-note").textContent="";}
      else{const t=await r.text();document.getElementById("log-note").textContent="logs: "+t.slice(0,200);}}
    catch(e){}
    busy=false;}
  more();setInterval(more,3000);}
})();
"""


def _placed(op: Mapping[str, object]) -> str:
    replicas = op.get("replicas")
    parts = []
    for r in replicas if isinstance(replicas, list) else []:
        if isinstance(r, Mapping):
            parts.append(f"#{r.get('index')} {r.get('hostname')} ({r.get('state')})")
    return ", ".join(parts)


def _fmt_rate(value: object) -> str:
    return "-" if value is None else f"{float(value):.1f}"  # type: ignore[arg-type]


def _span(key: str, value: object) -> str:
    return f'<tspan data-k="{esc(key)}">{esc(value)}</tspan>'


def graph_svg(data: Json) -> str:
    """The operator graph: one column per depth, a box per operator, a curve per edge."""
    ops = _list(data, "operators")
    width, gap_x, gap_y = 230, 70, 26
    boxes: dict[str, tuple[float, float, float]] = {}
    columns: dict[int, float] = {}
    parts: list[str] = []
    for i, op in enumerate(ops):
        level = int(op.get("level", 0))  # type: ignore[call-overload]
        replicas = [r for r in op.get("replicas", []) if isinstance(r, Mapping)]  # type: ignore[attr-defined]
        height = 70 + 16 * max(1, len(replicas))
        x = 10 + level * (width + gap_x)
        y = columns.get(level, 10.0)
        columns[level] = y + height + gap_y
        boxes[str(op.get("name"))] = (x, y, height)
        states = {r.get("state") for r in replicas}
        cls = (
            "op bad"
            if states & {"FAILED", "LOST", "ERROR", "UNKNOWN"}
            else ("op ok" if states == {"RUNNING"} else "op")
        )
        k = f"operators.{i}"
        lines = [
            f'<rect class="{cls}" x="{x}" y="{y}" width="{width}" height="{height}" rx="8"/>',
            f'<text class="title" x="{x + 10}" y="{y + 18}">{esc(op.get("name"))} '
            f'<tspan class="dim">{esc(op.get("role"))}</tspan></text>',
            f'<text x="{x + 10}" y="{y + 36}">in {_span(f"{k}.in_per_s_text", _fmt_rate(op.get("in_per_s")))}/s'
            f" · out {_span(f'{k}.out_per_s_text', _fmt_rate(op.get('out_per_s')))}/s</text>",
            f'<text x="{x + 10}" y="{y + 52}">dropped {_span(f"{k}.dropped_text", op.get("dropped_text"))}'
            f" · moves {_span(f'{k}.moves', op.get('moves'))}</text>",
        ]
        for j, r in enumerate(replicas):
            rk = f"{k}.replicas.{j}"
            lines.append(
                f'<text class="dim" x="{x + 10}" y="{y + 70 + 16 * j}">#{esc(r.get("index"))} on '
                f'<tspan data-k="{rk}.hostname">{esc(r.get("hostname"))}</tspan> · '
                f'<tspan data-k="{rk}.state">{esc(r.get("state"))}</tspan></text>'
            )
        parts.append("".join(lines))
    edges = []
    for op in ops:
        target = boxes.get(str(op.get("name")))
        ups = op.get("upstream")
        for up in ups if isinstance(ups, list) else []:
            source = boxes.get(str(up))
            if source is None or target is None:
                continue
            x1, y1 = source[0] + width, source[1] + source[2] / 2
            x2, y2 = target[0], target[1] + target[2] / 2
            mid = (x1 + x2) / 2
            edges.append(
                f'<path class="edge" d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2 - 6},{y2}" marker-end="url(#arrow)"/>'
            )
    w = 20 + max((b[0] for b in boxes.values()), default=0) + width
    h = 20 + max(columns.values(), default=40)
    marker = (
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="5" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#64748b"/></marker></defs>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="operator graph">{marker}{"".join(edges)}{"".join(parts)}</svg>'
    )


def dataflow_view(data: Json) -> Json:
    """The dataflow's view plus display strings and the graph's shape (a reload when it changes)."""
    ops = []
    shape = []
    for op in _list(data, "operators"):
        extra = {
            "in_per_s_text": _fmt_rate(op.get("in_per_s")),
            "out_per_s_text": _fmt_rate(op.get("out_per_s")),
            "dropped_text": "-" if op.get("dropped") is None else str(op.get("dropped")),
            "placed": _placed(op),
        }
        ops.append({**op, **extra})
        replicas = op.get("replicas")
        shape.append(f"{op.get('name')}:{op.get('level')}:{len(replicas) if isinstance(replicas, list) else 0}")
    return {**data, "operators": ops, "shape": "|".join(shape)}


def dataflow_body(data: Json) -> str:
    now = float(data["now"])  # type: ignore[arg-type]
    stats = (
        ""
        if data.get("stats")
        else '<p class="note">No stats heard from its operators yet (the master listens on its broker).</p>'
    )
    summary = (
        '<section data-scope class="cards">'
        + _card("Instances", "instances", data)
        + _card("Running", "running", data)
        + _card("Moves", "moves", data, "re-placements seen by the master")
        + "</section>"
    )
    return (
        f'{summary}<h2>Operator graph</h2><div class="graph" data-scope>{graph_svg(data)}</div>{stats}'
        f"<h2>Operators</h2>{OPERATORS.render(_list(data, 'operators'), now, 'operators')}"
    )


def dataflows_body(data: Json) -> str:
    now = float(data["now"])  # type: ignore[arg-type]
    return DATAFLOWS.render(_list(data, "dataflows"), now, "dataflows")


# -- routes ------------------------------------------------------------------------------------


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _answer(request: web.Request, title: str, active: str, data: Json, body: Callable[[Json], str]) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    if _wants_json(request):
        return web.json_response(dict(data), headers=headers)
    return web.Response(text=page(title, active, body(data), data), content_type="text/html", headers=headers)


def _not_found(request: web.Request, what: str) -> web.Response:
    if _wants_json(request):
        return web.json_response({"error": what}, status=404)
    body = f'<p>{esc(what)}</p><p><a href="/">back to the cluster</a></p>'
    return web.Response(text=page("Not found", "", body, {}, live=False), content_type="text/html", status=404)


def add_routes(app: web.Application, handlers: Handlers, guard: Callable[[Handler], Handler]) -> None:
    """Register every dashboard page on ``app`` (through the adapter's ``guard``)."""
    service = handlers.service

    async def home(request: web.Request) -> web.StreamResponse:
        now = service.now()
        return _answer(request, "Cluster", "/", views.home(service, now), home_body)

    async def agents(request: web.Request) -> web.StreamResponse:
        now = service.now()
        return _answer(request, "Agents", "/ui/agents", {"now": now, "agents": views.agents(service, now)}, agents_body)

    async def frameworks(request: web.Request) -> web.StreamResponse:
        return _answer(
            request, "Frameworks", "/ui/frameworks", views.frameworks(service, service.now()), frameworks_body
        )

    async def tasks(request: web.Request) -> web.StreamResponse:
        query = views.TaskQuery.parse(request.query)
        return _answer(request, "Tasks", "/ui/tasks", views.tasks(service, service.now(), query), tasks_body)

    async def task(request: web.Request) -> web.StreamResponse:
        task_id = TaskId(request.match_info["id"])
        data = views.task(service, service.now(), task_id)
        if data is None:
            return _not_found(request, f"The master does not remember a task {task_id!r}.")
        if not _wants_json(request):
            data = {**data, **(await handlers.log_tails(task_id))}
        return _answer(request, f"Task {task_id}", "/ui/tasks", data, task_body)

    async def dataflows(request: web.Request) -> web.StreamResponse:
        return _answer(request, "Dataflows", "/ui/dataflows", views.dataflows(service, service.now()), dataflows_body)

    async def dataflow(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        data = views.dataflow(service, service.now(), name)
        if data is None:
            return _not_found(request, f"The master has launched no task of a dataflow {name!r}.")
        return _answer(request, f"Dataflow {name}", "/ui/dataflows", dataflow_view(data), dataflow_body)

    app.router.add_get("/", guard(home))
    app.router.add_get("/ui/agents", guard(agents))
    app.router.add_get("/ui/frameworks", guard(frameworks))
    app.router.add_get("/ui/tasks", guard(tasks))
    app.router.add_get("/ui/tasks/{id}", guard(task))
    app.router.add_get("/ui/dataflows", guard(dataflows))
    app.router.add_get("/ui/dataflows/{name}", guard(dataflow))
