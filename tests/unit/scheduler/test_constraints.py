"""Constraint parsing, text form and evaluation against attributes."""

from __future__ import annotations

import pytest

from edgerm.model import Attributes
from edgerm.scheduler.constraints import Constraint, Op, version_key

LINUX: Attributes = {
    "os": "linux",
    "arch": "arm64",
    "executors": frozenset({"wasm", "docker"}),
    "agent_version": "0.3.1",
}


@pytest.mark.parametrize(
    ("text", "attr", "op", "value"),
    [
        ("os == linux", "os", Op.EQ, "linux"),
        ("os!=windows", "os", Op.NE, "windows"),
        ("arch in [arm64, amd64]", "arch", Op.IN, ("arm64", "amd64")),
        ("arch not  in [riscv64]", "arch", Op.NOT_IN, ("riscv64",)),
        ("@hostname =~ ^pi-", "@hostname", Op.MATCH, "^pi-"),
        ("zone !~ -test$", "zone", Op.NOT_MATCH, "-test$"),
        ("agent_version >= 0.3", "agent_version", Op.GE, "0.3"),
        ("kernel < 6", "kernel", Op.LT, "6"),
        ("label == 'two words'", "label", Op.EQ, "two words"),
    ],
)
def test_parse(text: str, attr: str, op: Op, value: object) -> None:
    c = Constraint.parse(text)
    assert (c.attribute, c.op, c.value) == (attr, op, value)
    assert Constraint.parse(str(c)) == c


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("os linux", "expected 'attribute op value'"),
        ("os ==", "non-empty value"),
        ("arch in []", "non-empty list"),
        ("name =~ (unclosed", "bad regular expression"),
        ("kernel >= banana", "is not a version"),
        ("@rack == 3", "unknown agent field"),
    ],
)
def test_parse_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        Constraint.parse(text)


def test_build_from_parts_and_unknown_operator() -> None:
    assert Constraint.build("arch", "in", ["arm64"]).value == ("arm64",)
    assert Constraint.build("os", "not in", "[a, b]").value == ("a", "b")
    with pytest.raises(ValueError, match="unknown constraint operator"):
        Constraint.build("os", "~~", "x")
    with pytest.raises(ValueError, match="single value"):
        Constraint.build("os", "==", ["a", "b"])


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ("os == linux", True),
        ("os == windows", False),
        ("os != windows", True),
        ("arch in [amd64, arm64]", True),
        ("arch not in [amd64, arm64]", False),
        ("executors == docker", True),  # a set holds the value
        ("executors != docker", False),
        ("executors in [gpu, wasm]", True),
        ("executors not in [gpu]", True),
        ("executors =~ ^dock", True),
        ("executors !~ ^dock", False),
        ("agent_version >= 0.3", True),
        ("agent_version > 0.3.1", False),
        ("agent_version <= 0.3.1", True),
        ("agent_version < 0.10", True),  # numeric, not text, order
        ("arch =~ ^arm", True),
        # a missing attribute fails positive operators and satisfies negative ones
        ("zone == eu", False),
        ("zone in [eu]", False),
        ("zone =~ .", False),
        ("zone >= 1", False),
        ("zone != eu", True),
        ("zone not in [eu]", True),
        ("zone !~ eu", True),
        ("os >= 1", False),  # a value that is not a version never compares
    ],
)
def test_holds(text: str, holds: bool) -> None:
    assert Constraint.parse(text).holds(LINUX) is holds


def test_identity_constraints_read_the_agent_itself() -> None:
    c = Constraint.parse("@hostname =~ ^pi-")
    assert c.per_agent
    assert c.holds({}, hostname="pi-kitchen")
    assert not c.holds({}, hostname="srv-1")
    assert Constraint.parse("@id == a7").holds({}, agent_id="a7")
    assert not Constraint.parse("os == linux").per_agent


def test_version_keys() -> None:
    assert version_key("1.2") == version_key("v1.2.0")
    assert version_key("1.2.0-rc1") < version_key("1.2.0")  # type: ignore[operator]
    assert version_key("1.10") > version_key("1.9")  # type: ignore[operator]
    assert version_key("1.2.0+build5") == version_key("1.2")
    assert version_key("latest") is None
