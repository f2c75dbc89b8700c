"""Authorization: what each principal may do, decided before anything changes.

Role: pure checks between a transport adapter and the master's handler
table. The adapter authenticates (:mod:`edgerm.auth.principal`), decodes
the call, asks this module, and only then calls the handler; a denial raises
:class:`~edgerm.errors.Forbidden` and nothing changed. The CoAP adapter and
the MQTT broker use the same checks.

Rules:
- An agent principal speaks only for its bound agent id (REGISTER, HEARTBEAT,
  UPDATE, SUBSCRIBE); nobody else makes agent calls.
- Frameworks: the master binds each framework id to the principal that
  subscribed it first (:class:`FrameworkOwners`); every later SUBSCRIBE or
  call naming that id from another principal is Forbidden. A framework
  credential with a ``framework_id`` may use only that id (an empty
  SUBSCRIBE id becomes it). Offers and tasks are then checked against the
  calling framework by the core (OFFER_NOT_YOURS, UNKNOWN_TASK), so a
  guessed offer or task id is useless to another framework.
- The admin role may subscribe frameworks of its own, reads the whole state
  and may TEARDOWN any framework (the operator path, no stream id needed).
- Read-only views by role (:data:`VIEW_ROLES`); any route not listed there is
  admin-only, so routes added later are covered without an edit here.
- A framework principal's ``/api/v1/state`` shows only its frameworks and
  tasks (:meth:`Policy.state_scope`, applied by the state API;
  :meth:`Policy.state_for` does the same to a whole state dict).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from edgerm import messages as m
from edgerm.auth.principal import Principal, Role
from edgerm.errors import Forbidden
from edgerm.ids import AgentId, FrameworkId
from edgerm.model import FrameworkInfo

#: Which roles may use which route group ("other": every route not named here).
VIEW_ROLES: Mapping[str, frozenset[Role]] = {
    "agent": frozenset({Role.AGENT}),
    "scheduler": frozenset({Role.FRAMEWORK, Role.ADMIN}),
    "state": frozenset({Role.ADMIN, Role.FRAMEWORK}),
    "dashboard": frozenset({Role.ADMIN, Role.FRAMEWORK}),
    "metrics": frozenset({Role.ADMIN, Role.METRICS}),
    "modules": frozenset({Role.AGENT, Role.ADMIN}),
    "join": frozenset({Role.JOIN}),
    "other": frozenset({Role.ADMIN}),
}


def check_view(principal: Principal, view: str) -> None:
    """Forbidden unless ``principal``'s role may use the route group ``view``."""
    roles = VIEW_ROLES.get(view, VIEW_ROLES["other"])
    if principal.role not in roles:
        raise Forbidden(f"{principal} may not use the {view} API")


def _agent_id_of(call: m.AgentCall) -> AgentId:
    if isinstance(call, m.RegisterAgent):
        return call.agent.id
    return call.agent_id


class FrameworkOwners:
    """Which principal (by credential name) owns which framework id."""

    def __init__(self, owners: Mapping[FrameworkId, str] | None = None) -> None:
        self._owner: dict[FrameworkId, str] = dict(owners or {})

    def owner(self, framework_id: FrameworkId) -> str | None:
        return self._owner.get(framework_id)

    def bind(self, framework_id: FrameworkId, principal: Principal) -> bool:
        """Record ``principal`` as the owner; whether this is a new binding."""
        if self._owner.get(framework_id) == principal.name:
            return False
        self._owner[framework_id] = principal.name
        return True

    def unbind(self, framework_id: FrameworkId) -> None:
        self._owner.pop(framework_id, None)

    def owned_by(self, name: str) -> frozenset[FrameworkId]:
        return frozenset(f for f, owner in self._owner.items() if owner == name)

    def items(self) -> Iterable[tuple[FrameworkId, str]]:
        return sorted(self._owner.items())

    def __len__(self) -> int:
        return len(self._owner)


class Policy:
    """The authorization checks over one :class:`FrameworkOwners` table."""

    def __init__(self, owners: FrameworkOwners | None = None) -> None:
        self.owners = owners if owners is not None else FrameworkOwners()

    # -- agents -----------------------------------------------------------------

    def agent_call(self, principal: Principal, call: m.AgentCall) -> None:
        """Forbidden unless an agent principal speaks for its own id."""
        if principal.role is not Role.AGENT:
            raise Forbidden(f"{principal} is not an agent credential")
        agent_id = _agent_id_of(call)
        if agent_id != principal.agent_id:
            raise Forbidden(f"{principal} speaks for agent {principal.agent_id}, not {agent_id!r}")

    # -- frameworks -------------------------------------------------------------

    def subscribe(self, principal: Principal, call: m.Subscribe) -> m.Subscribe:
        """Check a SUBSCRIBE; returns it with the credential's bound framework id filled in."""
        check_view(principal, "scheduler")
        info = call.framework
        bound = principal.framework_id
        if bound is not None:
            if info.id and info.id != bound:
                raise Forbidden(f"{principal} may only subscribe framework {bound}")
            if not info.id:
                call = m.Subscribe(FrameworkInfo(bound, info.name))
        fid = call.framework.id
        if fid:
            owner = self.owners.owner(fid)
            if owner is not None and owner != principal.name:
                raise Forbidden(f"framework {fid} belongs to another principal")
        return call

    def subscribed(self, principal: Principal, framework_id: FrameworkId) -> bool:
        """Bind the (possibly master-generated) id of an accepted SUBSCRIBE; whether the binding is new."""
        return self.owners.bind(framework_id, principal)

    def scheduler_call(self, principal: Principal, call: m.SchedulerCall) -> bool:
        """Check any call but SUBSCRIBE. True: an admin TEARDOWN of a framework it does not own (no stream check)."""
        check_view(principal, "scheduler")
        if isinstance(call, m.Subscribe):
            self.subscribe(principal, call)
            return False
        fid = call.framework_id
        owner = self.owners.owner(fid)
        if owner == principal.name:
            return False
        if principal.role is Role.ADMIN and isinstance(call, m.Teardown) and owner is not None:
            return True
        if owner is not None:
            raise Forbidden(f"framework {fid} belongs to another principal")
        # Nobody owns it: not subscribed. The handler answers NOT_SUBSCRIBED; a
        # bound credential still may not name another id.
        if principal.framework_id is not None and fid != principal.framework_id:
            raise Forbidden(f"{principal} may only use framework {principal.framework_id}")
        return False

    def torn_down(self, framework_id: FrameworkId) -> None:
        self.owners.unbind(framework_id)

    # -- read-only views ------------------------------------------------------------

    def state_scope(self, principal: Principal) -> frozenset[FrameworkId] | None:
        """The frameworks whose tasks ``principal`` may see in the state (None: all of them, an admin).

        The state API (:mod:`edgerm.master.state_api`) narrows its page to them as
        :meth:`state_for` narrows a whole state."""
        if principal.role is Role.ADMIN:
            return None
        return self.owners.owned_by(principal.name)

    def state_for(self, principal: Principal, state: dict[str, object]) -> dict[str, object]:
        """The cluster state as ``principal`` may see it (check_view(principal, "state") first)."""
        if principal.role is Role.ADMIN:
            return state
        owned = self.owners.owned_by(principal.name)
        frameworks = [f for f in _rows(state, "frameworks") if f.get("id") in owned]
        tasks = [t for t in _rows(state, "tasks") if t.get("framework_id") in owned]
        mine = {t.get("id") for t in tasks}
        agents = []
        for agent in _rows(state, "agents"):
            listed = agent.get("tasks")
            if isinstance(listed, list):
                agent = {**agent, "tasks": [t for t in listed if t in mine]}
            agents.append(agent)
        out = dict(state)
        master = state.get("master")
        if isinstance(master, dict):
            summary = {**master, "frameworks": len(frameworks), "tasks": len(tasks)}
            summary.pop("outstanding_offers", None)
            out["master"] = summary
        out.update(frameworks=frameworks, tasks=tasks, agents=agents)
        return out


def _rows(state: Mapping[str, object], key: str) -> list[dict[str, object]]:
    rows = state.get(key)
    if not isinstance(rows, list):
        return []
    return [r for r in rows if isinstance(r, dict)]
