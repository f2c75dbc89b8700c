"""``GET /api/v1/state`` filters and pages over real HTTP, against a real master with real peers.

Four agents, framework A (principal alice) with two tasks on one agent, B
(principal bob) with one task on another. Paging to the end gives exactly the
unpaged state; filters narrow the lists they name; a framework principal
sees only its own frameworks and tasks, filtered or paged; a bad parameter is
a typed 400 in JSON and changes nothing; a cursor stays valid while agents
come and go between pages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from edgerm import messages as m
from edgerm.auth.principal import Role
from edgerm.ids import TaskId
from edgerm.master.main import RunningMaster
from edgerm.master.state_api import MAX_LIMIT
from edgerm.model import Filters, Offer, TaskInfo, TaskState, WasmSpec
from edgerm.resources import Resources
from tests.integration.master.conftest import FakeAgent, FakeFramework, agent_token
from tests.support import admin_headers

MODULE = b"\0asm\1\0\0\0"
AGENTS = ("e1", "e2", "e3", "e4")


@dataclass
class Cluster:
    master: RunningMaster
    session: aiohttp.ClientSession
    agents: dict[str, FakeAgent]
    a: FakeFramework
    b: FakeFramework
    a_agent: str  # where A's tasks run
    b_agent: str

    async def get(self, params: dict[str, str] | None = None, as_: FakeFramework | None = None) -> tuple[int, Any]:
        headers = {"Authorization": as_.headers["Authorization"]} if as_ else admin_headers(self.master.url)
        async with self.session.get(self.master.url + "/api/v1/state", params=params or {}, headers=headers) as r:
            assert r.content_type == "application/json"
            return r.status, await r.json()

    async def state(self, params: dict[str, str] | None = None, as_: FakeFramework | None = None) -> Any:
        status, body = await self.get(params, as_)
        assert status == 200, body
        return body

    async def all_pages(
        self, limit: int, params: dict[str, str] | None = None, as_: FakeFramework | None = None
    ) -> Any:
        """Every page from the first, concatenated (and each page checked against ``limit``)."""
        got: dict[str, list[Any]] = {"agents": [], "frameworks": [], "tasks": []}
        query = {**(params or {}), "limit": str(limit)}
        for _ in range(50):
            page = await self.state(query, as_)
            for key in got:
                assert len(page[key]) <= limit
                got[key] += page[key]
            if page["next"] is None:
                return got
            query["after"] = page["next"]
        raise AssertionError("paging did not end")


def task(task_id: str, offer: Offer) -> TaskInfo:
    return TaskInfo(TaskId(task_id), task_id, offer.agent_id, Resources.parse("cpus:1;mem:64"), WasmSpec(MODULE))


@pytest.fixture
async def cluster(master: RunningMaster, session: aiohttp.ClientSession) -> AsyncIterator[Cluster]:
    agents = {
        aid: FakeAgent(session, master.url, aid, resources="cpus:4;mem:4096", token=agent_token(master, aid))
        for aid in AGENTS
    }
    a = FakeFramework(session, master.url, "a", master.issue_token(Role.FRAMEWORK, "alice"))
    b = FakeFramework(session, master.url, "b", master.issue_token(Role.FRAMEWORK, "bob"))
    try:
        for agent in agents.values():
            await agent.register()
        await a.subscribe()
        offers = list((await a.next_event(m.Offers)).offers)
        while len(offers) < len(AGENTS):
            offers += (await a.next_event(m.Offers)).offers
        first, rest = offers[0], offers[1:]
        await a.call(m.Accept(a.framework_id, (first.id,), (task("a-1", first), task("a-2", first)), Filters(60)))
        await a.call(m.Decline(a.framework_id, tuple(o.id for o in rest), Filters(60)))
        await b.subscribe()
        b_offers = (await b.next_event(m.Offers)).offers
        b_offer = next(o for o in b_offers if o.agent_id != first.agent_id)
        await b.call(m.Accept(b.framework_id, (b_offer.id,), (task("b-1", b_offer),), Filters(60)))
        await agents[first.agent_id].update("a-1", TaskState.RUNNING, uuid="u-a1")
        await agents[b_offer.agent_id].update("b-1", TaskState.RUNNING, uuid="u-b1")
        yield Cluster(master, session, agents, a, b, first.agent_id, b_offer.agent_id)
    finally:
        await a.close()
        await b.close()
        for agent in agents.values():
            await agent.close()


def ids(rows: list[Any]) -> list[str]:
    return [r["id"] for r in rows]


async def test_paging_to_the_end_gives_the_whole_state(cluster: Cluster) -> None:
    whole = await cluster.state()
    assert whole["next"] is None
    assert ids(whole["agents"]) == list(AGENTS)
    assert ids(whole["tasks"]) == ["a-1", "a-2", "b-1"]
    assert whole["master"]["agents"] == 4 and whole["master"]["tasks"] == 3
    for limit in (1, 2, 3, MAX_LIMIT):
        paged = await cluster.all_pages(limit)
        assert paged == {k: whole[k] for k in ("agents", "frameworks", "tasks")}, limit
    first = await cluster.state({"limit": "2"})
    assert ids(first["agents"]) == ["e1", "e2"] and first["next"]
    assert first["master"] == whole["master"]  # the cluster's counts, not the page's


async def test_filters_narrow_the_lists_they_name(cluster: Cluster) -> None:
    running = await cluster.state({"state": "RUNNING"})
    assert ids(running["tasks"]) == ["a-1", "b-1"]
    assert ids(running["agents"]) == list(AGENTS)  # a task filter leaves agents as they are
    staging = await cluster.state({"state": "staging"})  # case does not matter
    assert ids(staging["tasks"]) == ["a-2"]
    on_a = await cluster.state({"agent": cluster.a_agent})
    assert ids(on_a["agents"]) == [cluster.a_agent] and ids(on_a["tasks"]) == ["a-1", "a-2"]
    assert on_a["agents"][0]["tasks"] == ["a-1", "a-2"]
    of_b = await cluster.state({"framework": cluster.b.framework_id})
    assert ids(of_b["frameworks"]) == [cluster.b.framework_id] and ids(of_b["tasks"]) == ["b-1"]
    both = await cluster.state({"framework": cluster.a.framework_id, "state": "RUNNING", "agent": cluster.a_agent})
    assert ids(both["tasks"]) == ["a-1"]
    assert (await cluster.state({"agent": "nobody"}))["agents"] == []
    assert ids((await cluster.state({"agent_state": "ACTIVE"}))["agents"]) == list(AGENTS)
    assert (await cluster.state({"agent_state": "UNREACHABLE"}))["agents"] == []
    paged = await cluster.all_pages(1, {"state": "RUNNING"})
    assert ids(paged["tasks"]) == ["a-1", "b-1"]


async def test_a_framework_principal_sees_only_its_own(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    mine = await cluster.state(as_=b)
    assert ids(mine["frameworks"]) == [b.framework_id] and ids(mine["tasks"]) == ["b-1"]
    assert {agent["id"]: agent["tasks"] for agent in mine["agents"]}[cluster.a_agent] == []  # A's tasks hidden
    assert mine["master"]["frameworks"] == 1 and mine["master"]["tasks"] == 1
    assert "outstanding_offers" not in mine["master"]
    # Filters cannot reach past the scope: naming A's framework, agent or tasks' state shows none of A's.
    theirs = await cluster.state({"framework": a.framework_id}, as_=b)
    assert theirs["frameworks"] == [] and theirs["tasks"] == []
    assert (await cluster.state({"agent": cluster.a_agent}, as_=b))["tasks"] == []
    assert ids((await cluster.state({"state": "RUNNING"}, as_=b))["tasks"]) == ["b-1"]
    paged = await cluster.all_pages(1, as_=b)
    assert paged == {k: mine[k] for k in ("agents", "frameworks", "tasks")}
    assert ids((await cluster.state(as_=a))["tasks"]) == ["a-1", "a-2"]


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": str(MAX_LIMIT + 1)}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"after": "not a cursor!"}, "after"),
        ({"after": "WzFd"}, "after"),  # base64 of "[1]": JSON, but not a cursor
        ({"state": "SLEEPING"}, "state"),
        ({"agent_state": "RUNNING"}, "agent_state"),
        ({"agent": "x" * 300}, "agent"),
        ({"framwork": "f"}, "framwork"),
    ],
)
async def test_a_bad_parameter_is_a_typed_400(cluster: Cluster, params: dict[str, str], says: str) -> None:
    before = await cluster.state()
    status, body = await cluster.get(params)
    assert status == 400
    assert body["error"] == "MalformedMessage" and says in body["message"], body
    after = await cluster.state()
    assert after["agents"] == before["agents"] and after["tasks"] == before["tasks"]


async def test_a_cursor_survives_agents_coming_and_going(cluster: Cluster) -> None:
    first = await cluster.state({"limit": "2"})
    assert ids(first["agents"]) == ["e1", "e2"]
    early = FakeAgent(cluster.session, cluster.master.url, "e0", token=agent_token(cluster.master, "e0"))
    late = FakeAgent(cluster.session, cluster.master.url, "e9", token=agent_token(cluster.master, "e9"))
    try:
        await early.register()  # sorts before the cursor: not in this pass
        await late.register()  # after it: in this pass
        second = await cluster.state({"limit": "2", "after": first["next"]})
        third = await cluster.state({"limit": "2", "after": second["next"]})
        assert ids(second["agents"]) + ids(third["agents"]) == ["e3", "e4", "e9"]
        assert third["next"] is None
    finally:
        await early.close()
        await late.close()
