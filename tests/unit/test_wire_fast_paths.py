"""The decoder's memo of checked names and the encoder's cache of attribute bytes change no result."""

from __future__ import annotations

import math

import pytest

from edgerm import errors, wire
from edgerm import messages as m
from edgerm.ids import AgentId, FrameworkId, OfferId
from edgerm.model import Offer
from edgerm.resources import Resources
from edgerm.v1 import common_pb2

R = common_pb2.Resource


def _offer(i: int, attrs: dict[str, str | frozenset[str]]) -> Offer:
    res = Resources.parse(f"cpus:{i % 4 + 1};mem:512;ports:[3{i:04d}-3{i:04d}];zones:{{a,b}}")
    return Offer(OfferId(f"o-{i}"), FrameworkId("f"), AgentId(f"a-{i % 3}"), f"h{i}", res, attrs, 10.0 + i)


def test_offers_round_trip_with_shared_and_distinct_attributes() -> None:
    shared: dict[str, str | frozenset[str]] = {"os": "linux", "executors": frozenset({"wasm", "docker"})}
    offers = (*(_offer(i, shared if i % 2 else {"zone": f"z{i}"}) for i in range(12)), _offer(99, {}))
    for _ in range(2):  # the second time from the cache
        assert wire.decode_event(wire.encode_event(m.Offers(offers))) == m.Offers(offers)


def test_attribute_bytes_follow_a_changed_mapping() -> None:
    attrs: dict[str, str | frozenset[str]] = {"zone": "a"}
    first = wire.decode_event(wire.encode_event(m.Offers((_offer(1, attrs),))))
    attrs["zone"] = "b"  # the same object, changed: the cached bytes are stale and must not be used
    second = wire.decode_event(wire.encode_event(m.Offers((_offer(1, attrs),))))
    assert isinstance(first, m.Offers) and isinstance(second, m.Offers)
    assert first.offers[0].attributes == {"zone": "a"}
    assert second.offers[0].attributes == {"zone": "b"}


def test_a_name_checked_as_text_is_still_checked_as_a_resource_name() -> None:
    # "a b" is fine as an attribute's text or set item, never as a resource or attribute name.
    ok = [common_pb2.Attribute(name="tags", set=["a b"]), common_pb2.Attribute(name="note", text="a b")]
    assert wire.attributes_from_pb(ok) == {"tags": frozenset({"a b"}), "note": "a b"}
    with pytest.raises(errors.MalformedMessage, match="resource name"):
        wire.resources_from_pb([R(name="a b", type=R.SCALAR, scalar=1.0)])
    with pytest.raises(errors.MalformedMessage, match="attribute name"):
        wire.attributes_from_pb([common_pb2.Attribute(name="a b", text="x")])


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0, 2e12])
def test_out_of_range_scalars_are_refused_after_good_ones(value: float) -> None:
    good = [R(name="cpus", type=R.SCALAR, scalar=1.0)]
    assert wire.resources_from_pb(good) == Resources.scalar(cpus=1)
    with pytest.raises(errors.MalformedMessage, match="cpus must be a finite number"):
        wire.resources_from_pb([R(name="cpus", type=R.SCALAR, scalar=value)])
    with pytest.raises(errors.MalformedMessage, match="cpus must be a finite number"):  # a sum over the limit
        wire.resources_from_pb([R(name="cpus", type=R.SCALAR, scalar=9e11)] * 2)


def test_the_memo_is_bounded() -> None:
    for i in range(wire._GOOD_MAX + 10):
        wire.attributes_from_pb([common_pb2.Attribute(name=f"n{i}", text=f"t{i}")])
    assert len(wire._GOOD_NAMES) <= wire._GOOD_MAX
    assert len(wire._GOOD_TEXT) <= wire._GOOD_MAX


def test_an_attributes_text_is_checked_even_when_it_has_a_set() -> None:
    bad = common_pb2.Attribute(name="zone", text="bad\x01", set=["a"])
    with pytest.raises(errors.MalformedMessage, match="control character"):
        wire.attributes_from_pb([bad])
