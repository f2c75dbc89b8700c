"""``Framework``: the base class a user subclasses to write a framework.

Every callback is a coroutine that does nothing by default; override those
you need. Rules the driver keeps, whatever its transport:

- Callbacks run one at a time, in the order the master sent the events; the
  next one starts only after the previous one returned. A slow callback
  delays the ones behind it (start long work as a task of your own).
- A callback that raises is logged and the driver carries on; the one
  consequence is for ``status_update``: its update is then not acknowledged,
  so the master sends it again.
- Callbacks may call any driver method, including ``await driver.stop()``,
  after which no further callback runs.
"""

from __future__ import annotations

from typing import ClassVar

from edgerm.frameworks.driver import FrameworkDriver
from edgerm.ids import AgentId, FrameworkId, OfferId
from edgerm.model import Offer, TaskStatus


class Framework:
    """Callbacks for the events of one framework's subscription."""

    #: The name the framework subscribes under (shown by ``edgerm frameworks``).
    name: ClassVar[str] = "framework"

    #: Acknowledge each status update that carries a uuid once ``status_update``
    #: returned without raising. Set to ``False`` to call ``driver.acknowledge``
    #: yourself (e.g. after persisting the status).
    auto_acknowledge: ClassVar[bool] = True

    async def registered(self, driver: FrameworkDriver, framework_id: FrameworkId, master_id: str) -> None:
        """The master confirmed a subscription (SUBSCRIBED).

        Called first of all, and again after every reconnection; the driver
        re-subscribes with the same ``framework_id``, so it stays the same
        unless the master forgot the framework (then a new one is given).
        Tasks of the framework survive a reconnection.
        """

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        """New offers, each exclusive to this framework until it accepts or
        declines it, or it is rescinded or expires (``Offer.expires_at``).

        Delivered at most once: an offer is never re-sent; an offer left
        unanswered simply expires and its resources are offered again later.
        """

    async def offer_rescinded(self, driver: FrameworkDriver, offer_id: OfferId) -> None:
        """An offer was withdrawn (its agent was lost or it expired).

        Delivered at most once. Accepting it now fails with ``UnknownOffer``,
        so a framework must cope with that error anyway; this callback only
        lets it forget the offer sooner.
        """

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        """A task changed state.

        At-least-once: an update carrying a ``uuid`` is re-sent by the master
        (also after a reconnection) until acknowledged, so the same update may
        arrive more than once; make handling idempotent. The driver
        acknowledges it after this callback returns without raising (unless
        ``auto_acknowledge`` is ``False``). Updates answering ``reconcile``
        carry no uuid and need no acknowledgement.
        """

    async def agent_lost(self, driver: FrameworkDriver, agent_id: AgentId) -> None:
        """An agent missed its heartbeats and was declared lost.

        At most once per loss. The LOST updates of this framework's tasks on
        it follow separately as status updates (those are at-least-once).
        """

    async def error(self, driver: FrameworkDriver, code: str, message: str) -> None:
        """The master reported an error on the stream (an ERROR event).

        ``code`` is an ``edgerm.v1.Error.Code`` name (``UNAVAILABLE``, ...).
        At most once. Errors answering a call are raised by that call instead.
        """

    async def disconnected(self, driver: FrameworkDriver) -> None:
        """The event stream dropped (master gone, network cut, or heartbeats
        missed). The driver reconnects by itself; ``registered`` follows once
        it has. Calls made meanwhile raise ``NotSubscribed``. Not called for
        ``driver.stop()``.
        """
