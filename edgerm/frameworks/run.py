"""``run`` and ``run_sync``: start a framework with one call.

They build an :class:`~edgerm.frameworks.http_driver.HttpDriver`, subscribe,
and return when the framework calls ``await driver.stop()``. Errors are the
driver's: a refused subscription raises its ``WireError``; a master that
stays unreachable for ``max_retries`` attempts raises ``Unavailable``
(``None``, the default, retries forever).
"""

from __future__ import annotations

import asyncio

from edgerm.frameworks.base import Framework
from edgerm.frameworks.http_driver import HttpDriver
from edgerm.ids import FrameworkId


async def run(
    framework: Framework,
    master_url: str,
    *,
    name: str | None = None,
    framework_id: FrameworkId | None = None,
    max_retries: int | None = None,
    token: str | None = None,
    ca: str | None = None,
) -> None:
    """Run ``framework`` against the master at ``master_url`` until it stops.

    ``framework_id`` resumes an earlier subscription (its tasks and
    unacknowledged updates are kept by the master). ``token``/``ca``: the
    credential and the CA file (default ``$EDGERM_TOKEN``, ``$EDGERM_CA``).
    """
    driver = HttpDriver(
        framework, master_url, name=name, framework_id=framework_id, max_retries=max_retries, token=token, ca=ca
    )
    await driver.run()


def run_sync(
    framework: Framework,
    master_url: str,
    *,
    name: str | None = None,
    framework_id: FrameworkId | None = None,
    max_retries: int | None = None,
    token: str | None = None,
    ca: str | None = None,
) -> None:
    """:func:`run` in a fresh event loop, for scripts without one."""
    asyncio.run(
        run(framework, master_url, name=name, framework_id=framework_id, max_retries=max_retries, token=token, ca=ca)
    )
