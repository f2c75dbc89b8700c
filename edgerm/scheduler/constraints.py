"""Attribute constraints: ``os == linux``, ``arch in [arm64, amd64]``, ``kernel >= 5.10``.

A :class:`Constraint` names an agent attribute, an operator and a value. Text
form (what DAG files use)::

    os == linux            os != windows
    arch in [arm64, amd64] arch not in [riscv64]
    hostname =~ ^pi-       zone !~ -test$          (regular expression search)
    agent_version >= 0.3   kernel < 6              (version comparison)

Rules:

- ``<``, ``<=``, ``>``, ``>=`` compare versions (dotted numbers, ``v``
  prefix allowed, a pre-release suffix such as ``-rc1`` sorts before the
  release); ``==`` and ``!=`` compare text.
- A set-valued attribute (``executors={wasm,docker}``) satisfies ``==`` when
  it holds the value, ``in`` when it holds any listed value, ``=~`` and the
  version operators when any member does; the negative operators are the
  exact complements.
- A missing attribute fails ``==``, ``in``, ``=~`` and version operators and
  satisfies ``!=``, ``not in`` and ``!~``.
- ``@hostname`` and ``@id`` name the agent itself. Constraints on them are
  checked per agent; all others depend on attributes only and are cached per
  agent class.

Building a constraint validates it (operator known, regex compiles, version
parses) and raises ``ValueError`` with the problem named.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from edgerm.model import Attributes, AttrValue

HOSTNAME = "@hostname"
AGENT_ID = "@id"
PSEUDO_ATTRIBUTES = frozenset({HOSTNAME, AGENT_ID})


class Op(enum.Enum):
    EQ = "=="
    NE = "!="
    IN = "in"
    NOT_IN = "not in"
    MATCH = "=~"
    NOT_MATCH = "!~"
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="

    @property
    def negative(self) -> bool:
        """True for the operators a missing attribute satisfies."""
        return self in (Op.NE, Op.NOT_IN, Op.NOT_MATCH)

    @property
    def is_version(self) -> bool:
        return self in (Op.LT, Op.LE, Op.GT, Op.GE)


_OPS = {op.value: op for op in Op}
_ATTR = r"@?[A-Za-z_][A-Za-z0-9_.\-/]*"
_TEXT = re.compile(
    rf"\s*(?P<attr>{_ATTR})\s*(?P<op>==|!=|=~|!~|<=|>=|<|>|not\s+in\b|in\b)\s*(?P<value>.*?)\s*",
    re.DOTALL,
)
_ATTR_RE = re.compile(_ATTR)

VersionKey = tuple[tuple[int, ...], int, str]
_VERSION = re.compile(r"[vV]?(\d+(?:\.\d+)*)(?:[-~]([0-9A-Za-z.\-]+))?(?:\+[0-9A-Za-z.\-]*)?")


def version_key(text: str) -> VersionKey | None:
    """A sortable key for a version string, or ``None`` if it is not one.

    Trailing zero components are dropped so ``1.2`` equals ``1.2.0``; a
    pre-release (``1.2-rc1``) sorts before its release.
    """
    m = _VERSION.fullmatch(text.strip())
    if not m:
        return None
    release = [int(p) for p in m.group(1).split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    pre = m.group(2) or ""
    return (tuple(release), 0 if pre else 1, pre)


def _unquote(item: str) -> str:
    item = item.strip()
    if len(item) >= 2 and item[0] == item[-1] and item[0] in "'\"":
        return item[1:-1]
    return item


def _parse_list(text: str) -> tuple[str, ...]:
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    items = tuple(_unquote(i) for i in body.split(",") if i.strip())
    return items


@dataclass(frozen=True, slots=True)
class Constraint:
    """``attribute op value``; ``value`` is a tuple for ``in``/``not in``."""

    attribute: str
    op: Op
    value: str | tuple[str, ...]
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _version: VersionKey | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _ATTR_RE.fullmatch(self.attribute):
            raise ValueError(f"bad attribute name {self.attribute!r}")
        if self.attribute.startswith("@") and self.attribute not in PSEUDO_ATTRIBUTES:
            raise ValueError(f"unknown agent field {self.attribute!r} (known: @hostname, @id)")
        if self.op in (Op.IN, Op.NOT_IN):
            if not isinstance(self.value, tuple) or not self.value:
                raise ValueError(f"{self.op.value!r} needs a non-empty list, e.g. [a, b]")
            return
        if not isinstance(self.value, str) or not self.value:
            raise ValueError(f"{self.op.value!r} needs a single non-empty value")
        if self.op in (Op.MATCH, Op.NOT_MATCH):
            try:
                object.__setattr__(self, "_regex", re.compile(self.value))
            except re.error as e:
                raise ValueError(f"bad regular expression {self.value!r}: {e}") from None
        elif self.op.is_version:
            key = version_key(self.value)
            if key is None:
                raise ValueError(f"{self.value!r} is not a version (expected e.g. 1.2.3)")
            object.__setattr__(self, "_version", key)

    # -- construction -----------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """Parse ``"os == linux"``; raise ``ValueError`` naming what is wrong."""
        m = _TEXT.fullmatch(text)
        if not m:
            raise ValueError(f"bad constraint {text!r}: expected 'attribute op value' with op one of {_op_list()}")
        return cls.build(m.group("attr"), m.group("op"), m.group("value"))

    @classmethod
    def build(cls, attribute: str, op: str, value: str | tuple[str, ...] | list[str]) -> Constraint:
        """Build from parts; ``op`` is its text form (``"=="``, ``"not in"``...)."""
        the_op = _OPS.get(" ".join(op.split()))
        if the_op is None:
            raise ValueError(f"unknown constraint operator {op!r} (known: {_op_list()})")
        if the_op in (Op.IN, Op.NOT_IN):
            items = _parse_list(value) if isinstance(value, str) else tuple(str(v) for v in value)
            return cls(attribute, the_op, items)
        if not isinstance(value, str):
            raise ValueError(f"{op!r} needs a single value, not a list")
        return cls(attribute, the_op, _unquote(value))

    # -- evaluation -------------------------------------------------------------

    @property
    def per_agent(self) -> bool:
        """True when the constraint names the agent itself (not cacheable per class)."""
        return self.attribute in PSEUDO_ATTRIBUTES

    def holds(self, attributes: Attributes, hostname: str = "", agent_id: str = "") -> bool:
        """Whether an agent with these attributes (and name) satisfies it."""
        actual: AttrValue | None
        if self.attribute == HOSTNAME:
            actual = hostname
        elif self.attribute == AGENT_ID:
            actual = agent_id
        else:
            actual = attributes.get(self.attribute)
        if actual is None:
            return self.op.negative
        members = (actual,) if isinstance(actual, str) else tuple(actual)
        op = self.op
        if op is Op.EQ:
            return self.value in members
        if op is Op.NE:
            return self.value not in members
        if op is Op.IN:
            return any(m in self.value for m in members)
        if op is Op.NOT_IN:
            return not any(m in self.value for m in members)
        if op in (Op.MATCH, Op.NOT_MATCH):
            assert self._regex is not None
            found = any(self._regex.search(m) for m in members)
            return found if op is Op.MATCH else not found
        return any(self._compare(m) for m in members)

    def _compare(self, member: str) -> bool:
        key = version_key(member)
        want = self._version
        if key is None or want is None:
            return False
        if self.op is Op.LT:
            return key < want
        if self.op is Op.LE:
            return key <= want
        if self.op is Op.GT:
            return key > want
        return key >= want

    def __str__(self) -> str:
        if isinstance(self.value, tuple):
            return f"{self.attribute} {self.op.value} [{', '.join(self.value)}]"
        return f"{self.attribute} {self.op.value} {self.value}"


def _op_list() -> str:
    return ", ".join(op.value for op in Op)
