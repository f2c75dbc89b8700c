"""The master's CoAP caches are bounded: by count, bytes and time, and dropped once a transfer completes."""

from __future__ import annotations

import aiocoap
import pytest
from aiocoap import blockwise

from edgerm.master.coap_state import BoundedBlock1Spool, BoundedBlock2Cache, DedupCache, idempotent


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Remote:
    """What aiocoap's block-wise code reads from a request's remote."""

    blockwise_key = "peer"
    maximum_payload_size = 1024
    maximum_block_size_exp = 6


def test_the_agent_calls_and_plain_reads_keep_no_deduplication_state() -> None:
    assert idempotent(aiocoap.Message(code=aiocoap.POST, uri_path=("agent",)))
    assert idempotent(aiocoap.Message(code=aiocoap.POST, uri_path=("agents", "a1", "commands")))
    assert idempotent(aiocoap.Message(code=aiocoap.GET, uri_path=("modules", "x")))
    assert not idempotent(aiocoap.Message(code=aiocoap.GET, uri_path=("agents", "a1", "commands"), observe=0))
    assert not idempotent(aiocoap.Message(code=aiocoap.POST, uri_path=("agent",), block1=(1, True, 6)))
    assert not idempotent(aiocoap.Message(code=aiocoap.PUT, uri_path=("agent",)))


def test_dedup_entries_expire_without_timers_and_are_bounded_by_count_and_bytes() -> None:
    clock = Clock()
    cache = DedupCache(lifetime=10, max_entries=3, max_bytes=10_000, clock=clock)
    for mid in range(5):
        cache.add(("r", mid))
    assert len(cache) == 3 and cache.get(("r", 0)) is None and cache.get(("r", 4)) is not None
    cache.store(("r", 4), b"x" * 9_500)
    assert len(cache) <= 2 and cache.bytes <= 10_000  # bytes evict the oldest first
    entry = cache.get(("r", 4))
    assert entry is not None and entry.raw == b"x" * 9_500
    clock.now = 11
    assert cache.get(("r", 4)) is None and len(cache) == 0 and cache.bytes == 0


async def test_block2_state_is_dropped_with_the_last_block() -> None:
    cache = BoundedBlock2Cache()
    full = aiocoap.Message(code=aiocoap.CONTENT, payload=b"m" * 3000)

    async def build() -> aiocoap.Message:
        return full

    def request(number: int | None) -> aiocoap.Message:
        req = aiocoap.Message(code=aiocoap.GET, uri_path=("modules", "x"))
        if number is not None:
            req.opt.block2 = (number, False, 6)
        req.remote = Remote()
        return req

    first = await cache.extract_or_insert(request(None), build)
    assert first.opt.block2.more and len(cache.completes) == 1
    second = await cache.extract_or_insert(request(1), build)
    assert second.opt.block2.more and len(cache.completes) == 1
    last = await cache.extract_or_insert(request(2), build)
    assert not last.opt.block2.more and len(cache.completes) == 0 and cache.completes.bytes == 0
    with pytest.raises(blockwise.IncompleteException):
        await cache.extract_or_insert(request(1), build)


def test_block1_assembly_is_dropped_when_complete_and_bounded() -> None:
    spool = BoundedBlock1Spool(max_entries=1)

    def block(number: int, more: bool, peer: str = "peer") -> aiocoap.Message:
        req = aiocoap.Message(code=aiocoap.POST, uri_path=("agent",), payload=b"p" * 64)
        req.opt.block1 = (number, more, 2)
        remote = Remote()
        remote.blockwise_key = peer
        req.remote = remote
        return req

    with pytest.raises(blockwise.ContinueException):
        spool.feed_and_take(block(0, True))
    assert len(spool.assemblies) == 1
    done = spool.feed_and_take(block(1, False))
    assert done.payload == b"p" * 128 and len(spool.assemblies) == 0
    with pytest.raises(blockwise.ContinueException):
        spool.feed_and_take(block(0, True, "a"))
    with pytest.raises(blockwise.ContinueException):
        spool.feed_and_take(block(0, True, "b"))  # evicts a's assembly: at most one
    with pytest.raises(blockwise.IncompleteException):
        spool.feed_and_take(block(1, False, "a"))
