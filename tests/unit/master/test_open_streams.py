"""HttpSecurity's open streams: a stream for the same principal and id replaces the older one, found by index."""

from __future__ import annotations

import random

from edgerm.auth.credentials import CredentialStore
from edgerm.auth.limits import Limits
from edgerm.auth.principal import Principal, Role
from edgerm.ids import AgentId
from edgerm.master.http_auth import HttpSecurity


def _agent(i: int) -> Principal:
    return Principal(f"agent-{i}", Role.AGENT, AgentId(f"a{i}"))


async def test_a_stream_for_the_same_key_replaces_the_older_one_and_others_stay() -> None:
    security = HttpSecurity(CredentialStore(), limits=Limits(streams=2))
    handles = {i: security.open_stream(_agent(i), f"a{i}") for i in range(1000)}
    again = security.open_stream(_agent(7), "a7")  # its connection dropped: re-subscribing is never refused
    assert security.streams_of("agent-7") == 1
    security.close_stream(handles[7])  # the old handle is gone already: nothing more is closed
    assert security.streams_of("agent-7") == 1
    security.close_stream(again)
    assert security.streams_of("agent-7") == 0
    assert all(security.streams_of(f"agent-{i}") == 1 for i in range(1000) if i != 7)
    # Another principal's stream for the same id does not replace it.
    admin = Principal("admin", Role.ADMIN)
    security.open_stream(admin, "a3")
    assert security.streams_of("agent-3") == 1 and security.streams_of("admin") == 1


async def test_the_index_agrees_with_a_scan_of_every_stream() -> None:
    """Random opens, id assignments and closes: what the index replaces is what a scan of every stream would
    (opening a stream for an id, or naming a stream's id, replaces the principal's older stream for it)."""
    rng = random.Random(7)
    security = HttpSecurity(CredentialStore(), limits=Limits(streams=0))
    principals = [_agent(i) for i in range(4)] + [Principal("fw", Role.FRAMEWORK)]
    model: dict[int, tuple[str, str]] = {}
    for _ in range(2000):
        op = rng.random()
        principal = rng.choice(principals)
        key = rng.choice(["", "x", "y", "z"])
        if op < 0.5:
            for handle, (name, k) in list(model.items()):  # the scan the index replaced
                if key and k == key and name == principal.name:
                    del model[handle]
            model[security.open_stream(principal, key)] = (principal.name, key)
        elif op < 0.7 and model:
            handle = rng.choice(list(model))
            security.stream_serves(handle, key)
            name = model[handle][0]
            for other, (n, k) in list(model.items()):
                if key and other != handle and (n, k) == (name, key):
                    del model[other]
            model[handle] = (name, key)
        elif model:
            handle = rng.choice(list(model))
            security.close_stream(handle)
            del model[handle]
        for p in principals:
            assert security.streams_of(p.name) == sum(1 for name, _ in model.values() if name == p.name)
