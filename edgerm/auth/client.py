"""What a client (agent, framework driver, CLI) presents to the master.

Role: the client side of :mod:`edgerm.auth`: which token to send, and the
TLS context that verifies the master.

Rules:
- Token precedence: the explicit argument (``--token``), then tokens an
  in-process master published for that URL (:mod:`edgerm.auth.local`), then
  the environment (``EDGERM_TOKEN``; ``EDGERM_JOIN_TOKEN`` for joining).
- TLS: ``https://`` URLs are verified against ``--ca FILE`` (or
  ``EDGERM_CA``), else the system's trust store; a certificate that does not
  verify fails the connection. ``--tls-cert/--tls-key`` (or
  ``EDGERM_TLS_CERT``/``EDGERM_TLS_KEY``) add a client certificate for
  masters that require one.
- Tokens are never logged; :func:`redact` replaces one in text that is.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path

from edgerm.auth.local import provisioned
from edgerm.auth.principal import Role
from edgerm.errors import ConfigError

TOKEN_ENV = "EDGERM_TOKEN"
JOIN_TOKEN_ENV = "EDGERM_JOIN_TOKEN"
CA_ENV = "EDGERM_CA"
CERT_ENV = "EDGERM_TLS_CERT"
KEY_ENV = "EDGERM_TLS_KEY"


def resolve_token(
    explicit: str | None, master_url: str, role: Role, env: Mapping[str, str] | None = None
) -> str | None:
    """The token to present as ``role`` to ``master_url`` (None: none known; an insecure master needs none)."""
    if explicit:
        return explicit
    tokens = provisioned(master_url)
    if tokens is not None:
        return tokens.for_role(role)
    env = os.environ if env is None else env
    value = env.get(JOIN_TOKEN_ENV if role is Role.JOIN else TOKEN_ENV, "")
    return value or None


def bearer(token: str | None) -> dict[str, str]:
    """The ``Authorization`` header for ``token`` (none for None)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def client_ssl(
    master_url: str,
    ca: Path | str | None = None,
    cert: Path | str | None = None,
    key: Path | str | None = None,
    env: Mapping[str, str] | None = None,
) -> ssl.SSLContext | None:
    """The TLS context for ``master_url`` (None for http://). ConfigError for an unreadable file."""
    if not master_url.lower().startswith("https://"):
        return None
    env = os.environ if env is None else env
    if ca is None:
        ca = env.get(CA_ENV) or None
    if ca is None:
        tokens = provisioned(master_url)
        ca = tokens.ca if tokens is not None else None
    cert = cert or env.get(CERT_ENV) or None
    key = key or env.get(KEY_ENV) or None
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
        if cert:
            context.load_cert_chain(str(cert), str(key) if key else None)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"TLS files for {master_url}: {e}") from None
    return context


def redact(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
