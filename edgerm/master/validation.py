"""Checks on scheduler calls, run before the master core changes anything.

Every check reads state and either returns what the core needs to carry the
call out, or raises a typed :class:`edgerm.errors.WireError`. Nothing here
mutates anything, so a call that fails leaves the master exactly as it was.

Order of the ACCEPT checks (the first failure is reported):

1. the framework is subscribed                       NotSubscribed
2. the call names offers; each exists                MalformedMessage / UnknownOffer
   (or timed out recently)                           OfferExpired
   and was made to the caller                        OfferNotYours
3. all offers are on one agent                       InvalidTask
4. task ids are unique in the call and unused        Conflict
5. each task is well formed for that agent           InvalidTask
   (agent id empty or that agent; some cpus or mem; the agent has the
   task's executor; a wasm module is inline or named by sha256; a docker
   image is named; kill grace not negative)
6. the tasks fit in the offers, one after another     InsufficientResources
   (so two tasks cannot claim the same port or device)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from edgerm import messages as m
from edgerm.errors import (
    Conflict,
    InsufficientResources,
    InvalidTask,
    MalformedMessage,
    NotSubscribed,
    OfferExpired,
    OfferNotYours,
    UnknownOffer,
)
from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId
from edgerm.master.offers import OfferBook
from edgerm.model import AgentInfo, Attributes, DockerSpec, Offer, TaskInfo, WasmSpec
from edgerm.resources import EMPTY, Resources


@dataclass(frozen=True, slots=True)
class AcceptPlan:
    """A validated ACCEPT: the offers it uses and the tasks to launch.

    ``tasks`` have ``agent_id`` and ``framework_id`` filled in.
    """

    agent: AgentInfo
    offers: tuple[Offer, ...]
    tasks: tuple[TaskInfo, ...]
    offered: Resources
    used: Resources
    leftover: Resources  # what the tasks leave of the offers; it goes back to the pool


def require_subscribed(framework_id: FrameworkId, subscribed: bool) -> None:
    if not subscribed:
        raise NotSubscribed(f"framework {framework_id!r} is not subscribed")


def executors_of(attributes: Attributes) -> frozenset[str]:
    """The executors an agent declares (``executors`` as a set, or comma-separated text)."""
    value = attributes.get("executors", frozenset())
    if isinstance(value, str):
        return frozenset(v.strip() for v in value.replace(" ", ",").split(",") if v.strip())
    return value


def check_offers(
    book: OfferBook, framework_id: FrameworkId, offer_ids: Iterable[OfferId], now: float
) -> tuple[Offer, ...]:
    """The named offers, if they all exist, are current, and belong to the caller.

    Repeated ids count once.
    """
    offers = []
    for offer_id in dict.fromkeys(offer_ids):
        offer = book.get(offer_id)
        if offer is None:
            if book.was_expired(offer_id):
                raise OfferExpired(f"offer {offer_id!r} timed out")
            raise UnknownOffer(f"offer {offer_id!r} does not exist (used, declined or rescinded)")
        if offer.expires_at <= now:
            raise OfferExpired(f"offer {offer_id!r} timed out")
        if offer.framework_id != framework_id:
            raise OfferNotYours(f"offer {offer_id!r} was made to another framework")
        offers.append(offer)
    return tuple(offers)


def check_task(task: TaskInfo, agent: AgentInfo) -> None:
    """Raise InvalidTask unless ``task`` can run on ``agent``."""
    name = task.task_id
    if not task.task_id:
        raise InvalidTask("a task has an empty task id")
    if task.agent_id and task.agent_id != agent.id:
        raise InvalidTask(f"task {name!r} names agent {task.agent_id!r} but the offers are on {agent.id!r}")
    if task.resources.cpus <= 0 and task.resources.mem <= 0:
        raise InvalidTask(f"task {name!r} asks for no cpus and no mem")
    if task.executor not in executors_of(agent.attributes):
        raise InvalidTask(f"task {name!r} needs executor {task.executor!r}, absent on agent {agent.id!r}")
    container = task.container
    if isinstance(container, WasmSpec) and not container.module and not container.module_sha256:
        raise InvalidTask(f"task {name!r} has a wasm container with neither module bytes nor a sha256")
    if isinstance(container, DockerSpec) and not container.image:
        raise InvalidTask(f"task {name!r} has a docker container without an image")
    if task.kill_grace < 0:
        raise InvalidTask(f"task {name!r} has a negative kill grace")


def check_accept(
    book: OfferBook,
    call: m.Accept,
    now: float,
    subscribed: bool,
    agent_of: Callable[[AgentId], AgentInfo | None],
    task_known: Callable[[TaskId], bool],
) -> AcceptPlan:
    """Validate an ACCEPT completely; return the plan or raise (see the module docstring)."""
    require_subscribed(call.framework_id, subscribed)
    if not call.offer_ids:
        raise MalformedMessage("ACCEPT names no offer")
    offers = check_offers(book, call.framework_id, call.offer_ids, now)
    agent_ids = {o.agent_id for o in offers}
    if len(agent_ids) != 1:
        raise InvalidTask(f"offers span several agents: {sorted(agent_ids)}")
    agent = agent_of(offers[0].agent_id)
    if agent is None:
        raise UnknownOffer(f"offer {offers[0].id!r} is on an agent that is gone")

    seen: set[TaskId] = set()
    for task in call.tasks:
        if task.task_id in seen:
            raise Conflict(f"task id {task.task_id!r} appears twice in the call")
        if task_known(task.task_id):
            raise Conflict(f"task id {task.task_id!r} is already in use")
        seen.add(task.task_id)

    tasks = []
    used = EMPTY
    for task in call.tasks:
        check_task(task, agent)
        tasks.append(replace(task, agent_id=agent.id, framework_id=call.framework_id))
        used = used + task.resources

    offered = EMPTY
    for offer in offers:
        offered = offered + offer.resources
    # Fit the tasks one after another rather than comparing sums: ``+`` merges
    # overlapping port ranges, sets and devices, so two tasks claiming the same
    # port or the same device would otherwise pass.
    remaining = offered
    for task in tasks:
        if not task.resources <= remaining:
            missing = ", ".join(task.resources.missing(remaining))
            raise InsufficientResources(
                f"task {task.task_id!r} needs more {missing} than the offers have left "
                f"({task.resources} > {remaining} of {offered})"
            )
        remaining = remaining - task.resources
    return AcceptPlan(agent, offers, tuple(tasks), offered, used, remaining)
