"""OfferBook: an agent's offered sum, cached between changes, always equals the sum of its offers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgerm.ids import AgentId, FrameworkId
from edgerm.master.offers import OfferBook
from edgerm.model import AgentInfo
from edgerm.resources import EMPTY, Resources, total

AGENTS = [AgentInfo(AgentId(f"a{i}"), f"a{i}", Resources.parse("cpus:8;mem:8192")) for i in range(3)]

steps = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.integers(0, 2), st.integers(1, 40)),
        st.tuples(st.just("remove"), st.integers(0, 2), st.integers(0, 9)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(steps)
def test_offered_on_follows_every_create_and_remove(plan: list[tuple[str, int, int]]) -> None:
    book = OfferBook("m")
    for kind, agent, n in plan:
        info = AGENTS[agent]
        if kind == "create":
            book.create(FrameworkId(f"f{n % 2}"), info, Resources.scalar(cpus=n / 10, mem=n), expires_at=60.0)
        else:
            held = book.on_agent(info.id)
            if held:
                book.remove(held[n % len(held)].id)
        for a in AGENTS:  # read after every step: a stale cached sum would show
            offers = book.on_agent(a.id)
            assert book.offered_on(a.id) == (total(o.resources for o in offers) if offers else EMPTY)
