"""``run`` and ``run_sync``: start a framework with one call.

They build an :class:`~edgerm.frameworks.http_driver.HttpDriver`, subscribe,
and return when the framework calls ``await driver.stop()``. Errors are the
driver's: a refused subscription raises its ``WireError``; a master that
stays unreachable for ``max_retries`` attempts raises ``Unavailable``
(``None``, the default, retries forever).

Failover: with ``framework_id_file`` the framework id is kept in that file
after the first SUBSCRIBED and reused on the next start, so a restarted
framework process subscribes as the same framework and reclaims its tasks
(they kept running) and their unacknowledged updates, as long as it comes
back within ``failover_timeout`` seconds (0 = the master's default).
"""

from __future__ import annotations

import asyncio
from os import PathLike

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
    framework_id_file: str | PathLike[str] | None = None,
    failover_timeout: float = 0.0,
) -> None:
    """Run ``framework`` against the master at ``master_url`` until it stops.

    ``framework_id`` resumes an earlier subscription (its tasks and
    unacknowledged updates are kept by the master); ``framework_id_file``
    does so across processes (an explicit ``framework_id`` wins over the
    file's). ``failover_timeout``: seconds the master keeps the tasks of a
    framework whose stream is gone. ``token``/``ca``: the credential and the
    CA file (default ``$EDGERM_TOKEN``, ``$EDGERM_CA``).
    """
    driver = HttpDriver(
        framework,
        master_url,
        name=name,
        framework_id=framework_id,
        max_retries=max_retries,
        framework_id_file=framework_id_file,
        failover_timeout=failover_timeout,
        token=token,
        ca=ca,
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
    framework_id_file: str | PathLike[str] | None = None,
    failover_timeout: float = 0.0,
) -> None:
    """:func:`run` in a fresh event loop, for scripts without one."""
    asyncio.run(
        run(
            framework,
            master_url,
            name=name,
            framework_id=framework_id,
            max_retries=max_retries,
            framework_id_file=framework_id_file,
            failover_timeout=failover_timeout,
            token=token,
            ca=ca,
        )
    )
