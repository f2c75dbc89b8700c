"""``GET /api/v1/state``: the cluster state from the core's read views, filtered and paged.

Role: parse the query (:meth:`StateQuery.parse`, a typed
:class:`~edgerm.errors.MalformedMessage` for anything wrong) and build the
JSON page (:func:`state_page`) from :mod:`edgerm.master.readviews`. The
rows have the fields of :meth:`edgerm.master.state.MasterCore.snapshot`, so
a call without parameters answers exactly what it always did (plus
``next``).

Parameters (docs/protocol.md, "Cluster state"):

- ``agent=ID``: ``agents`` is that agent only, ``tasks`` only its tasks;
- ``framework=ID``: ``frameworks`` is that framework only, ``tasks`` only its tasks;
- ``state=S`` (a task state): ``tasks`` only in that state;
- ``agent_state=S`` (ACTIVE, UNREACHABLE, RECOVERING): ``agents`` only in that state;
- ``limit=N`` (1..:data:`MAX_LIMIT`) and ``after=CURSOR``: at most N rows of
  each list, each after the position the cursor names; ``next`` is the
  cursor for the following page, null once every list is exhausted. With
  ``after`` and no ``limit``, the limit is :data:`DEFAULT_LIMIT`; with
  neither, every matching row (as before paging existed).

Rules:
- Keyset paging: a cursor names the last id returned of each list, so rows
  added or removed between pages never shift the others (none is skipped
  or repeated; a row added before the cursor is not seen in this pass).
  Lists are ordered by id, as they always were.
- The work per call is the rows returned: the lists are kept sorted and
  indexed by agent, framework and state; when several filters apply, the
  smallest index is walked and the others are checked per row.
- ``scope`` (a framework principal's own frameworks, from
  :meth:`edgerm.auth.policy.Policy.state_scope`) narrows ``frameworks`` and
  ``tasks`` to those frameworks, agents' ``tasks`` to their tasks, and the
  master's counts to its own; ``outstanding_offers`` is left out.
- The ``master`` summary counts the whole cluster (or the scope), not the page.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

from edgerm.errors import MalformedMessage
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master.readviews import AgentView, FrameworkView, ReadViews, SortedIds
from edgerm.master.state import AgentState, MasterCore, task_json
from edgerm.model import TaskState

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_PARAM = 256  # characters of an id or state parameter
MAX_CURSOR = 2048
PARAMS = ("agent", "framework", "state", "agent_state", "limit", "after")

Json = dict[str, object]


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last id returned of each list ("" before the first)."""

    agent: str = ""
    framework: str = ""
    task: str = ""

    def encode(self) -> str:
        raw = json.dumps([self.agent, self.framework, self.task], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        if len(text) > MAX_CURSOR:
            raise MalformedMessage(f"after: a cursor has at most {MAX_CURSOR} characters")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            parts = json.loads(raw)
        except (binascii.Error, ValueError) as e:
            raise MalformedMessage(f"after: {text[:40]!r} is not a cursor from a previous page") from e
        if not (isinstance(parts, list) and len(parts) == 3 and all(isinstance(p, str) for p in parts)):
            raise MalformedMessage(f"after: {text[:40]!r} is not a cursor from a previous page")
        return cls(*parts)


@dataclass(frozen=True, slots=True)
class StateQuery:
    """What a ``GET /api/v1/state`` asked for (every field checked and bounded)."""

    agent: AgentId | None = None
    framework: FrameworkId | None = None
    state: TaskState | None = None
    agent_state: AgentState | None = None
    limit: int | None = None  # None: every matching row
    after: Cursor = Cursor()

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> StateQuery:
        """From a query string; MalformedMessage names the first bad parameter."""
        unknown = sorted(set(query) - set(PARAMS))
        if unknown:
            raise MalformedMessage(f"unknown parameter {unknown[0]!r}; /api/v1/state takes {', '.join(PARAMS)}")
        for key in ("agent", "framework", "state", "agent_state"):
            if key in query and not 0 < len(query[key]) <= MAX_PARAM:
                raise MalformedMessage(f"{key}: 1 to {MAX_PARAM} characters")
        state = _enum(TaskState, "state", query.get("state"))
        agent_state = _enum(AgentState, "agent_state", query.get("agent_state"))
        limit: int | None = None
        if "limit" in query:
            text = query["limit"]
            if not (text.isascii() and text.isdigit() and len(text) <= 7 and 1 <= int(text) <= MAX_LIMIT):
                raise MalformedMessage(f"limit: an integer from 1 to {MAX_LIMIT}, not {text[:20]!r}")
            limit = int(text)
        after = Cursor()
        if "after" in query:
            after = Cursor.decode(query["after"])
            limit = limit or DEFAULT_LIMIT
        agent = query.get("agent")
        framework = query.get("framework")
        return cls(
            AgentId(agent) if agent is not None else None,
            FrameworkId(framework) if framework is not None else None,
            state,
            agent_state,
            limit,
            after,
        )


E = TypeVar("E", TaskState, AgentState)
T = TypeVar("T")


def _enum(kind: type[E], key: str, text: str | None) -> E | None:
    if text is None:
        return None
    try:
        return kind(text.upper())
    except ValueError:
        names = ", ".join(s.value for s in kind)
        raise MalformedMessage(f"{key}: {text[:40]!r} is not one of {names}") from None


# -- selection ---------------------------------------------------------------------------


def _agents(views: ReadViews, q: StateQuery) -> Iterator[AgentId]:
    after = q.after.agent
    if q.agent is not None:
        known = q.agent in views.agent_ids and q.agent > after
        state_ok = q.agent_state is None or views.agent_state(q.agent) == q.agent_state.value
        return iter([q.agent] if known and state_ok else [])
    if q.agent_state is not None:
        return views.agents_in(q.agent_state).after(after)
    return views.agent_ids.after(after)


def _frameworks(views: ReadViews, q: StateQuery, scope: frozenset[FrameworkId] | None) -> Iterator[FrameworkId]:
    after = q.after.framework
    if q.framework is not None:
        ok = q.framework in views.framework_ids and q.framework > after and (scope is None or q.framework in scope)
        return iter([q.framework] if ok else [])
    if scope is not None:
        return iter(sorted(f for f in scope if f > after and f in views.framework_ids))
    return views.framework_ids.after(after)


def _tasks(views: ReadViews, q: StateQuery, scope: frozenset[FrameworkId] | None) -> Iterator[TaskId]:
    """Task ids after the cursor matching every filter, walking the smallest index that applies."""
    after = q.after.task
    allowed: frozenset[FrameworkId] | None = scope  # the frameworks whose tasks may be listed (None: any)
    if q.framework is not None:
        allowed = frozenset({q.framework}) & scope if scope is not None else frozenset({q.framework})
    by_framework = None if allowed is None else [views.tasks_of(f) for f in sorted(allowed)]
    candidates: list[tuple[int, list[SortedIds[TaskId]]]] = [(len(views.task_ids), [views.task_ids])]
    if by_framework is not None:
        candidates.append((sum(len(s) for s in by_framework), by_framework))
    if q.agent is not None:
        candidates.append((len(views.tasks_on(q.agent)), [views.tasks_on(q.agent)]))
    if q.state is not None:
        candidates.append((len(views.tasks_in(q.state)), [views.tasks_in(q.state)]))
    _, sources = min(candidates, key=lambda c: c[0])
    ids = heapq.merge(*(s.after(after) for s in sources)) if len(sources) != 1 else sources[0].after(after)
    for task_id in ids:
        record = views.task(task_id)
        if record is None:
            continue
        if allowed is not None and record.framework_id not in allowed:
            continue
        if q.agent is not None and record.agent_id != q.agent:
            continue
        if q.state is not None and record.state is not q.state:
            continue
        yield task_id


def _page(ids: Iterator[T], limit: int | None) -> tuple[list[T], bool]:
    if limit is None:
        return list(ids), False
    rows = list(islice(ids, limit + 1))
    return rows[:limit], len(rows) > limit


# -- the page ------------------------------------------------------------------------------


def state_page(core: MasterCore, q: StateQuery, scope: frozenset[FrameworkId] | None = None) -> Json:
    """The JSON page for ``q`` as a principal limited to ``scope`` (None: everything) may see it."""
    views = core.views
    agent_ids, more_agents = _page(_agents(views, q), q.limit)
    framework_ids, more_frameworks = _page(_frameworks(views, q, scope), q.limit)
    task_ids, more_tasks = _page(_tasks(views, q, scope), q.limit)
    agents = []
    for aid in agent_ids:
        agent = views.agent(aid)
        if agent is not None:
            agents.append(agent_json(agent, None if scope is None else views, scope))
    frameworks = [framework_json(f) for f in map(views.framework, framework_ids) if f is not None]
    tasks = [task_json(r) for r in map(views.task, task_ids) if r is not None]
    nxt = None
    if more_agents or more_frameworks or more_tasks:
        nxt = Cursor(
            agent_ids[-1] if agent_ids else q.after.agent,
            framework_ids[-1] if framework_ids else q.after.framework,
            task_ids[-1] if task_ids else q.after.task,
        ).encode()
    return {"master": _master(core, scope), "agents": agents, "frameworks": frameworks, "tasks": tasks, "next": nxt}


def _master(core: MasterCore, scope: frozenset[FrameworkId] | None) -> Json:
    c = core.config
    views = core.views
    totals = views.totals()
    master: Json = {
        "id": c.master_id,
        "offer_timeout": c.offer_timeout,
        "agent_timeout_factor": c.agent_timeout_factor,
        "agents": totals.agents,
        "frameworks": totals.frameworks,
        "tasks": totals.tasks,
        "outstanding_offers": totals.offers,
        "settling_until": core.settling_until,
        "unreachable_timeout": c.unreachable_timeout,
    }
    if scope is not None:
        owned = [f for f in scope if f in views.framework_ids]
        master["frameworks"] = len(owned)
        master["tasks"] = sum(len(views.tasks_of(f)) for f in scope)
        del master["outstanding_offers"]
    return master


def agent_json(agent: AgentView, views: ReadViews | None = None, scope: frozenset[FrameworkId] | None = None) -> Json:
    """An agent row; with ``scope``, its ``tasks`` lists only tasks of those frameworks."""
    info = agent.record.info
    load = agent.load
    tasks: list[TaskId] = list(agent.tasks)
    if views is not None and scope is not None:
        tasks = [t for t in tasks if (r := views.task(t)) is not None and r.framework_id in scope]
    return {
        "id": info.id,
        "hostname": info.hostname,
        "resources": str(info.resources),
        "used": str(load.used),
        "offered": str(load.offered),
        "free": str(load.free),
        "attributes": {k: v if isinstance(v, str) else sorted(v) for k, v in sorted(info.attributes.items())},
        "heartbeat_interval": info.heartbeat_interval,
        "state": agent.record.state.value,
        "unreachable_since": agent.record.unreachable_since,
        "registered_at": agent.record.registered_at,
        "last_seen": agent.record.last_seen,
        "tasks": tasks,
    }


def framework_json(framework: FrameworkView) -> Json:
    record = framework.record
    return {
        "id": record.info.id,
        "name": record.info.name,
        "active": record.active,
        "suppressed": record.suppressed,
        "disconnected_at": record.disconnected_at,
        "failover_timeout": framework.failover_timeout,
        "allocation": str(framework.allocation),
        "offers": [
            {"id": o.id, "agent_id": o.agent_id, "resources": str(o.resources), "expires_at": o.expires_at}
            for o in framework.offers
        ],
        "filters": dict(framework.filters),
        "unacknowledged": [
            {"uuid": p.status.uuid, "task_id": p.status.task_id, "next_retry": p.next_retry}
            for p in framework.unacknowledged
        ],
        "tasks": framework.live_tasks,
    }
