"""The Resources value type: parsing, arithmetic, containment."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgerm.resources import EMPTY, Device, Range, Resources, total


def test_parse_all_kinds() -> None:
    r = Resources.parse(
        "cpus:2;mem:1024;ports:[8000-8100,9000-9000];z:{a,b};t:device(sim:sine);c:device(/dev/v,shared)"
    )
    assert r.cpus == 2 and r.mem == 1024
    assert r.ranges["ports"] == (Range(8000, 8100), Range(9000, 9000))
    assert r.sets["z"] == frozenset({"a", "b"})
    assert r.devices == {"t": Device("sim:sine"), "c": Device("/dev/v", shared=True)}


@pytest.mark.parametrize(
    "text",
    ["cpus", "cpus:", "cpus:x", "cpus:-1", "ports:[1-]", "ports:[5-3]", "z:{a", "t:device(x,weird)", "1x:2"],
)
def test_parse_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError):
        Resources.parse(text)


def test_subtract_consumes_exclusive_devices_only() -> None:
    total = Resources.parse("cpus:1;t:device(sim:sine);c:device(/dev/v,shared)")
    used = Resources.parse("cpus:0.25;t:device(sim:sine);c:device(/dev/v,shared)")
    left = total - used
    assert left == Resources.parse("cpus:0.75;c:device(/dev/v,shared)")
    assert used <= total and not total <= used


def test_ranges_subtract_and_merge() -> None:
    a = Resources.parse("ports:[100-200]")
    b = Resources.parse("ports:[150-160]")
    assert a - b == Resources.parse("ports:[100-149,161-200]")
    assert (a - b) + b == a


def test_scalars_do_not_drift() -> None:
    r = Resources()
    for _ in range(10):
        r = r + Resources.parse("cpus:0.1")
    assert r == Resources.parse("cpus:1")
    for _ in range(10):
        r = r - Resources.parse("cpus:0.1")
    assert r.is_empty()


def test_missing_names_what_does_not_fit() -> None:
    want = Resources.parse("cpus:2;mem:10;gpu:device(0)")
    have = Resources.parse("cpus:1;mem:100")
    assert want.missing(have) == ["cpus", "gpu"]


amounts = st.integers(0, 10**6).map(lambda n: n / 1000)


@given(
    st.dictionaries(st.sampled_from(["cpus", "mem", "disk"]), amounts),
    st.dictionaries(st.sampled_from(["cpus", "mem", "disk"]), amounts),
)
def test_add_then_subtract_is_identity(a: dict[str, float], b: dict[str, float]) -> None:
    ra, rb = Resources(a), Resources(b)
    assert (ra + rb) - rb == ra
    assert rb <= ra + rb


def test_total_is_the_sum_built_once() -> None:
    bags = [Resources.parse("cpus:0.05;mem:16;ports:[8000-8001]"), Resources.parse("cpus:0.05;ports:[8002-8002]")]
    bags += [Resources.parse("cpus:0.1;zone:{a}"), Resources.parse("gpu:device(/dev/g0)")] * 7
    by_adding = EMPTY
    for bag in bags:
        by_adding = by_adding + bag
    assert total(bags) == by_adding
    assert total(Resources.parse("cpus:0.05") for _ in range(20)) == Resources.parse("cpus:1")
    assert total([]) is EMPTY
