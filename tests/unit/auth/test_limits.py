"""Per-principal limits: a token bucket each, stream counts, the task limit; one principal's limit spares others."""

from __future__ import annotations

import pytest

from edgerm.auth.limits import Limits, RateLimiter, StreamCounter, check_tasks
from edgerm.errors import LimitExceeded


def test_the_bucket_refills_at_the_rate_and_is_per_principal() -> None:
    limiter = RateLimiter(Limits(calls_per_second=10, burst=3))
    for _ in range(3):
        limiter.take("a", 0.0)
    with pytest.raises(LimitExceeded, match="10 calls/s"):
        limiter.take("a", 0.0)
    limiter.take("b", 0.0)  # others are served
    limiter.take("a", 0.1)  # one call's worth refilled after 0.1 s
    with pytest.raises(LimitExceeded):
        limiter.take("a", 0.1)
    for _ in range(3):
        limiter.take("a", 100.0)  # never more than the burst
    with pytest.raises(LimitExceeded):
        limiter.take("a", 100.0)


def test_zero_means_no_limit_and_buckets_are_bounded() -> None:
    free = RateLimiter(Limits(calls_per_second=0))
    for _ in range(10_000):
        free.take("a", 0.0)
    bounded = RateLimiter(Limits(calls_per_second=1, burst=1, max_principals=2))
    for name in ("a", "b", "c"):
        bounded.take(name, 0.0)
    assert len(bounded._buckets) == 2


def test_streams_are_counted_per_principal() -> None:
    streams = StreamCounter(Limits(streams=2))
    streams.open("a")
    streams.open("a")
    with pytest.raises(LimitExceeded, match="2 streams open"):
        streams.open("a")
    streams.open("b")
    streams.close("a")
    streams.open("a")
    assert streams.count("a") == 2 and streams.count("b") == 1


def test_the_task_limit() -> None:
    limits = Limits(tasks=3)
    check_tasks("a", 1, 2, limits)
    with pytest.raises(LimitExceeded, match="limit of 3 tasks"):
        check_tasks("a", 2, 2, limits)
    check_tasks("a", 5, 0, limits)  # an ACCEPT without tasks is never refused


def test_bad_limits() -> None:
    with pytest.raises(ValueError):
        Limits(streams=-1)
    with pytest.raises(ValueError):
        Limits(calls_per_second=5, burst=0)
