"""The dashboard's read model: what each page shows, as JSON-ready dicts.

Role: one function per dashboard page builds its content from the core's
read views, the service's :class:`~edgerm.master.history.ClusterHistory`,
the metrics' transports and the dataflow stats the master hears. The HTML
renderer (:mod:`edgerm.master.dashboard`) and the pages' live updates
(``Accept: application/json`` on the same URL) both use these dicts, so
what the page shows without JavaScript and after an update is the same.

Rules: read only; values are plain str/int/float/bool/None/list/dict;
times are Unix seconds (the page formats them); nothing here escapes HTML
(the renderer does, always). Lists are bounded: tasks are paged, histories
are bounded where they are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import edgerm
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master.history import Dataflow
from edgerm.master.metrics import SILENT_AFTER_INTERVALS
from edgerm.master.service import MasterService
from edgerm.master.state import AgentRecord
from edgerm.master.tasks import TaskRecord
from edgerm.model import AgentInfo, TaskState
from edgerm.resources import EMPTY, Resources

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
RECENT_FAILURES = 10
_FAILED = frozenset({TaskState.FAILED, TaskState.LOST, TaskState.ERROR, TaskState.DROPPED})
_UNITS = {"cpus": "cores", "mem": "MiB", "disk": "MiB"}

Json = dict[str, object]


def _num(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def _attrs(info: AgentInfo) -> str:
    parts = []
    for key, value in sorted(info.attributes.items()):
        parts.append(f"{key}={value if isinstance(value, str) else ','.join(sorted(value))}")
    return " ".join(parts)


def _pct(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 1) if whole > 0 else 0.0


def _share(used: Resources, total: Resources, name: str) -> str:
    unit = _UNITS.get(name, "")
    return f"{_num(used.get(name))} / {_num(total.get(name))}" + (f" {unit}" if unit == "MiB" else "")


def _agent_row(service: MasterService, record: AgentRecord, now: float) -> Json:
    info = record.info
    core = service.core
    used = core.used_on(info.id)
    offered = core.offered_on(info.id)
    interval = info.heartbeat_interval if info.heartbeat_interval > 0 else 1.0
    silent = now - record.last_seen > SILENT_AFTER_INTERVALS * interval
    return {
        "id": info.id,
        "hostname": info.hostname,
        "state": "SILENT" if silent else "ACTIVE",
        "transport": service.metrics.agent_transport.get(info.id, "http"),
        "cpus": _share(used, info.resources, "cpus"),
        "mem": _share(used, info.resources, "mem"),
        "disk": _share(used, info.resources, "disk"),
        "cpus_pct": _pct(used.cpus, info.resources.cpus),
        "mem_pct": _pct(used.mem, info.resources.mem),
        "offered": str(offered) if not offered.is_empty() else "",
        "devices": " ".join(sorted(info.resources.devices)),
        "attributes": _attrs(info),
        "heartbeat": info.heartbeat_interval,
        "last_seen": record.last_seen,
        "registered_at": service.history.registered_at(info.id) or record.registered_at,
        "tasks": 0,  # filled in by the caller, which counts every agent's tasks in one pass
        "lost_at": None,
    }


def agents(service: MasterService, now: float) -> list[Json]:
    """Registered agents (by hostname), then agents lost within the history's window (latest first)."""
    records = sorted(service.core.agent_records(), key=lambda a: (a.info.hostname, a.info.id))
    live_by_agent: dict[AgentId, int] = {}
    for r in service.core.tasks():
        if r.live:
            live_by_agent[r.agent_id] = live_by_agent.get(r.agent_id, 0) + 1
    rows = []
    for record in records:
        row = _agent_row(service, record, now)
        row["tasks"] = live_by_agent.get(record.info.id, 0)
        rows.append(row)
    for gone in service.history.departed_agents(now):
        info = gone.info
        rows.append(
            {
                "id": info.id,
                "hostname": info.hostname,
                "state": "LOST",
                "transport": "",
                "cpus": f"- / {_num(info.resources.cpus)}",
                "mem": f"- / {_num(info.resources.mem)} MiB",
                "disk": f"- / {_num(info.resources.get('disk'))} MiB",
                "cpus_pct": 0.0,
                "mem_pct": 0.0,
                "offered": "",
                "devices": " ".join(sorted(info.resources.devices)),
                "attributes": _attrs(info),
                "heartbeat": info.heartbeat_interval,
                "last_seen": gone.lost_at,
                "registered_at": gone.registered_at,
                "tasks": 0,
                "lost_at": gone.lost_at,
            }
        )
    return rows


def _resources(service: MasterService) -> list[Json]:
    total = used = offered = EMPTY
    core = service.core
    for record in core.agent_records():
        total = total + record.info.resources
        used = used + core.used_on(record.info.id)
        offered = offered + core.offered_on(record.info.id)
    out: list[Json] = []
    for name in ("cpus", "mem", "disk"):
        t, u, o = total.get(name), used.get(name), offered.get(name)
        unit = _UNITS[name]
        out.append(
            {
                "name": name,
                "total": t,
                "used": u,
                "offered": o,
                "used_pct": _pct(u, t),
                "offered_pct": _pct(o, t),
                "text": f"{_num(u)} used, {_num(o)} offered of {_num(t)} {unit}",
            }
        )
    devices_total = len(total.devices)
    devices_used = devices_total - len((total - used).devices)
    out.append(
        {
            "name": "devices",
            "total": devices_total,
            "used": devices_used,
            "offered": 0,
            "used_pct": _pct(devices_used, devices_total),
            "offered_pct": 0.0,
            "text": f"{devices_used} in use of {devices_total} devices",
        }
    )
    return out


def _framework_names(service: MasterService) -> dict[FrameworkId, str]:
    names = {f.info.id: f.info.name for f in service.core.framework_records()}
    for done in service.history.completed_frameworks(service.now()):
        names.setdefault(done.info.id, done.info.name)
    return names


def _hostnames(service: MasterService, now: float) -> dict[AgentId, str]:
    names = {a.info.id: a.info.hostname for a in service.core.agent_records()}
    for gone in service.history.departed_agents(now):
        names.setdefault(gone.info.id, gone.info.hostname)
    return names


def _task_row(record: TaskRecord, frameworks: Mapping[FrameworkId, str], hosts: Mapping[AgentId, str]) -> Json:
    s = record.status
    return {
        "id": record.task_id,
        "name": record.info.name,
        "state": s.state.value,
        "reason": "" if s.reason.value == "UNSPECIFIED" else s.reason.value,
        "message": s.message,
        "framework_id": record.framework_id,
        "framework": frameworks.get(record.framework_id, record.framework_id),
        "agent_id": record.agent_id,
        "hostname": hosts.get(record.agent_id, record.agent_id),
        "executor": record.info.executor,
        "resources": str(record.info.resources),
        "updated_at": s.timestamp,
    }


def home(service: MasterService, now: float) -> Json:
    agent_rows = agents(service, now)
    by_state: dict[str, int] = {"ACTIVE": 0, "SILENT": 0, "LOST": 0}
    for row in agent_rows:
        by_state[str(row["state"])] = by_state.get(str(row["state"]), 0) + 1
    records = service.core.tasks()
    tasks_by_state: dict[str, int] = {}
    for r in records:
        tasks_by_state[r.state.value] = tasks_by_state.get(r.state.value, 0) + 1
    frameworks = service.core.framework_records()
    names, hosts = _framework_names(service), _hostnames(service, now)
    failed = sorted((r for r in records if r.state in _FAILED), key=lambda r: -r.status.timestamp)
    return {
        "now": now,
        "master": {"id": service.config.master_id, "version": edgerm.__version__},
        "totals": {
            "agents_active": by_state["ACTIVE"],
            "agents_silent": by_state["SILENT"],
            "agents_lost": by_state["LOST"],
            "frameworks_active": sum(1 for f in frameworks if f.active),
            "frameworks_inactive": sum(1 for f in frameworks if not f.active),
            "frameworks_completed": len(service.history.completed_frameworks(now)),
            "tasks_live": sum(1 for r in records if r.live),
            "tasks_running": tasks_by_state.get("RUNNING", 0),
            "tasks_failed": sum(1 for r in records if r.state in _FAILED),
            "tasks_finished": tasks_by_state.get("FINISHED", 0),
            "offers": service.metrics.offers_outstanding(),
            "dataflows": len(service.history.dataflows()),
        },
        "resources": _resources(service),
        "agents": agent_rows,
        "failures": [_task_row(r, names, hosts) for r in failed[:RECENT_FAILURES]],
    }


def frameworks(service: MasterService, now: float) -> Json:
    live_tasks: dict[FrameworkId, int] = {}
    for r in service.core.tasks():
        if r.live:
            live_tasks[r.framework_id] = live_tasks.get(r.framework_id, 0) + 1
    shares = service.core.dominant_shares()
    active = [
        {
            "id": f.info.id,
            "name": f.info.name,
            "state": "ACTIVE" if f.active else "DISCONNECTED",
            "suppressed": f.suppressed,
            "tasks": live_tasks.get(f.info.id, 0),
            "offers": len(service.core.offers_of(f.info.id)),
            "share_pct": round(100 * shares.get(f.info.id, 0.0), 1),
            "subscribed_at": service.history.subscribed_at(f.info.id),
        }
        for f in sorted(service.core.framework_records(), key=lambda f: (f.info.name, f.info.id))
    ]
    completed = [
        {
            "id": c.info.id,
            "name": c.info.name,
            "state": "COMPLETED",
            "subscribed_at": c.subscribed_at,
            "ended_at": c.ended_at,
        }
        for c in service.history.completed_frameworks(now)
    ]
    return {"now": now, "active": active, "completed": completed}


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """The task list's filters and page (from the query string; every field bounded)."""

    state: str = ""  # a TaskState name, "live", "ended" or "" (all)
    framework: str = ""
    agent: str = ""
    q: str = ""  # a substring of the id or name
    page: int = 1
    size: int = PAGE_SIZE

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> TaskQuery:
        def text(key: str) -> str:
            return query.get(key, "").strip()[:200]

        def number(key: str, default: int, top: int) -> int:
            try:
                return max(1, min(top, int(query.get(key, default))))
            except ValueError:
                return default

        return cls(
            text("state").upper(),
            text("framework"),
            text("agent"),
            text("q"),
            number("page", 1, 1_000_000),
            number("size", PAGE_SIZE, MAX_PAGE_SIZE),
        )

    def matches(self, record: TaskRecord) -> bool:
        state = self.state
        if (state == "LIVE" and not record.live) or (state == "ENDED" and record.live):
            return False
        if state not in ("", "LIVE", "ENDED") and record.state.value != state:
            return False
        if self.framework and record.framework_id != self.framework:
            return False
        if self.agent and record.agent_id != self.agent:
            return False
        return not self.q or self.q.lower() in record.task_id.lower() or self.q.lower() in record.info.name.lower()


def tasks(service: MasterService, now: float, query: TaskQuery) -> Json:
    """One page of tasks, most recently updated first."""
    names, hosts = _framework_names(service), _hostnames(service, now)
    chosen = sorted(
        (r for r in service.core.tasks() if query.matches(r)), key=lambda r: (-r.status.timestamp, r.task_id)
    )
    pages = max(1, -(-len(chosen) // query.size))
    page = min(query.page, pages)
    rows = chosen[(page - 1) * query.size : page * query.size]
    return {
        "now": now,
        "filters": {"state": query.state, "framework": query.framework, "agent": query.agent, "q": query.q},
        "page": page,
        "pages": pages,
        "total": len(chosen),
        "tasks": [_task_row(r, names, hosts) for r in rows],
        "states": ["LIVE", "ENDED", *(s.value for s in TaskState)],
        "frameworks": sorted(({"id": k, "name": v} for k, v in names.items()), key=lambda f: f["name"]),
    }


def task(service: MasterService, now: float, task_id: TaskId) -> Json | None:
    """One task with its status history; None if the master does not remember it."""
    record = service.core.task(task_id)
    history = service.history.statuses(task_id)
    if record is None and not history:
        return None
    names, hosts = _framework_names(service), _hostnames(service, now)
    row: Json
    if record is not None:
        row = _task_row(record, names, hosts)
        row["args"] = " ".join(record.info.args)
        row["kill_grace"] = record.info.kill_grace
        container = record.info.container
        row["image"] = getattr(container, "image", "") or getattr(container, "sha256", "")
    else:
        last = history[-1]
        row = {
            "id": task_id,
            "name": "",
            "state": last.state.value,
            "reason": last.reason.value,
            "message": last.message,
            "framework_id": "",
            "framework": "",
            "agent_id": last.agent_id,
            "hostname": hosts.get(last.agent_id, last.agent_id),
            "executor": "",
            "resources": "",
            "updated_at": last.timestamp,
            "args": "",
            "kill_grace": 0.0,
            "image": "",
        }
    row["history"] = [
        {
            "state": s.state.value,
            "reason": "" if s.reason.value == "UNSPECIFIED" else s.reason.value,
            "message": s.message,
            "source": s.source.value,
            "at": s.timestamp,
            "exit_code": s.exit_code,
        }
        for s in reversed(history)
    ]
    row["now"] = now
    return row


def _flow_json(service: MasterService, flow: Dataflow, now: float) -> Json:
    hosts = _hostnames(service, now)
    stats = service.history.stats.operators(flow.name)
    depth: dict[str, int] = {}

    def level(op: str, seen: frozenset[str] = frozenset()) -> int:
        if op not in depth:
            ups = [u for u in flow.upstream(op) if u not in seen]
            depth[op] = 1 + max((level(u, seen | {op}) for u in ups), default=-1)
        return depth[op]

    operators: list[Json] = []
    running = instances = moves = 0
    for op in sorted(flow.roles, key=lambda o: (level(o), o)):
        replicas: list[Json] = []
        for (name, index), places in sorted(flow.placements.items()):
            if name != op or not places:
                continue
            current = places[-1]
            record = service.core.task(current.task_id)
            state = record.state.value if record is not None else "UNKNOWN"
            running += state == "RUNNING"
            replicas.append(
                {
                    "index": index,
                    "task_id": current.task_id,
                    "agent_id": current.agent_id,
                    "hostname": hosts.get(current.agent_id, current.agent_id),
                    "state": state,
                    "placements": len(places),
                }
            )
        instances += len(replicas)
        moved = flow.moves(op)
        moves += moved
        figures = stats.get(op)
        operators.append(
            {
                "name": op,
                "role": flow.roles.get(op, ""),
                "level": level(op),
                "upstream": flow.upstream(op),
                "replicas": replicas,
                "moves": moved,
                "in_per_s": figures.in_rate if figures else None,
                "out_per_s": figures.out_rate if figures else None,
                "dropped": figures.dropped if figures else None,
                "errors": figures.errors if figures else None,
            }
        )
    return {
        "name": flow.name,
        "framework_id": flow.framework_id,
        "first_seen": flow.first_seen,
        "operators": operators,
        "running": running,
        "instances": instances,
        "moves": moves,
        "stats": bool(stats),
    }


def dataflows(service: MasterService, now: float) -> Json:
    return {"now": now, "dataflows": [_flow_json(service, f, now) for f in service.history.dataflows()]}


def dataflow(service: MasterService, now: float, name: str) -> Json | None:
    flow = service.history.dataflow(name)
    if flow is None:
        return None
    return {"now": now, **_flow_json(service, flow, now)}
