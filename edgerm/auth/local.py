"""Credentials handed from an in-process master to in-process clients (tests, the demo).

Role: :func:`edgerm.master.main.start_master` provisions an in-memory
credentials set and publishes the client tokens here under the master's
URL; :class:`~edgerm.frameworks.http_driver.HttpDriver`, the agent (for its
join) and the CLI helpers look a token up here when none was given
(:func:`edgerm.auth.client.resolve_token`); a CoAP agent finds the HTTP URL
it joins at under the master's CoAP URL (:func:`join_url`). Nothing here ever leaves the
process, and a master started by the command line publishes nothing: there
clients use ``--token``/``EDGERM_TOKEN`` and ``--join-token``/
``EDGERM_JOIN_TOKEN``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgerm.auth.principal import Role


@dataclass(frozen=True, slots=True)
class ProvisionedTokens:
    """The tokens a provisioned master made for its clients (one each, shared)."""

    admin: str
    framework: str
    join: str
    metrics: str
    ca: Path | None = None  # the CA file that verifies the master's certificate (TLS)

    def for_role(self, role: Role) -> str:
        if role is Role.ADMIN:
            return self.admin
        if role is Role.FRAMEWORK:
            return self.framework
        if role is Role.JOIN:
            return self.join
        if role is Role.METRICS:
            return self.metrics
        raise ValueError(f"no shared {role.value} token: agents get theirs by joining")


_BY_URL: dict[str, ProvisionedTokens] = {}
_JOIN_URLS: dict[str, str] = {}  # an in-process master's CoAP URL -> its HTTP URL (where agents join)


def _key(url: str) -> str:
    return url.rstrip("/")


def publish(url: str, tokens: ProvisionedTokens) -> None:
    _BY_URL[_key(url)] = tokens


def withdraw(url: str) -> None:
    _BY_URL.pop(_key(url), None)
    _JOIN_URLS.pop(_key(url), None)


def publish_join_url(coap_url: str, http_url: str) -> None:
    """Where a CoAP agent of the in-process master at ``coap_url`` joins (its HTTP URL)."""
    _JOIN_URLS[_key(coap_url)] = http_url


def join_url(coap_url: str) -> str | None:
    return _JOIN_URLS.get(_key(coap_url))


def provisioned(url: str) -> ProvisionedTokens | None:
    """The tokens published for the master at ``url`` (exact base URL), if any."""
    return _BY_URL.get(_key(url))
