"""Who may use the embedded MQTT broker, and on which topics (the data plane's logins and ACLs).

Role: the embedded broker (``edgerm.master.broker``) asks a :class:`BrokerGate`
about every CONNECT (:meth:`BrokerGate.login`) and every SUBSCRIBE, PUBLISH and
delivery (:meth:`Grant.may`). The gate is pure: it knows the master only
through the two lookups it is given (:meth:`BrokerGate.attach`), so it is
tested without a broker.

Logins (MQTT username / password):
- ``task:<task_id>`` / an HMAC-SHA256 of the username under the master's broker
  key (kept in the state dir, so passwords outlive a master restart). The
  master adds both to a dataflow task's ``secret_env`` when it launches it
  (:meth:`BrokerGate.credential_env`); a login is accepted only while the task
  is live. Its grant comes from the task's own dataflow env: it may read its
  input topics and its own state and claim topics, and write only its output,
  stats, state and claim topics.
- ``edgerm-master`` / a password made at start: the master's own stats
  listener; it may read everything.
- any username / a bearer token from the credentials file: ``admin`` may read
  everything; ``framework`` may read the topics of the dataflows its
  frameworks own. Other roles are refused. Nobody but tasks publishes.

Every dataflow topic is ``edgerm/<dag>/...``. A DAG name belongs to the
framework of the first task that logs in with it, until that framework is no
longer known to the master; a task of another framework naming the same DAG
is refused, so one framework can neither read nor feed another's dataflow.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from edgerm import dataflow_keys as k
from edgerm.auth.principal import Authenticator, Principal, Role

#: The master's own login (its stats listener).
MASTER_USER = "edgerm-master"
TASK_PREFIX = "task:"


class Access(StrEnum):
    SUBSCRIBE = "subscribe"
    PUBLISH = "publish"
    RECEIVE = "receive"


@dataclass(frozen=True, slots=True)
class TaskView:
    """What the gate needs to know about a task: whose it is, its env, whether it still runs."""

    framework_id: str
    env: Mapping[str, str]
    live: bool


def _dag_of(topic: str) -> str | None:
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != k.TOPIC_ROOT or parts[1] in ("", "+", "#"):
        return None
    return parts[1]


@dataclass(frozen=True, slots=True)
class Grant:
    """What one login may do: publish to ``publish``, read ``read`` (or anything, ``read_all``), and
    read the topics of any dataflow ``reads_dag`` accepts (decided per message, so ownership can change)."""

    who: str
    publish: frozenset[str] = frozenset()
    read: frozenset[str] = frozenset()
    read_all: bool = False
    reads_dag: Callable[[str], bool] | None = field(default=None, compare=False)

    def may(self, access: Access, topic: str) -> bool:
        if access is Access.PUBLISH:
            return topic in self.publish
        if self.read_all or topic in self.read:
            return True
        if self.reads_dag is not None:
            if access is Access.SUBSCRIBE:  # a filter: what it delivers is checked per message
                return topic == k.TOPIC_ROOT + "/#" or topic.startswith(k.TOPIC_ROOT + "/")
            dag = _dag_of(topic)
            return dag is not None and self.reads_dag(dag)
        return False


class BrokerGate:
    """Broker logins and ACLs; :meth:`attach` it to the master before clients connect."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)
        self.master_password = secrets.token_urlsafe(24)
        self._task: Callable[[str], TaskView | None] = lambda _id: None
        self._framework_known: Callable[[str], bool] = lambda _id: False
        self._owned_by: Callable[[Principal], frozenset[str]] = lambda _p: frozenset()
        self._authenticator: Authenticator | None = None
        self._dag_owner: dict[str, str] = {}

    def attach(
        self,
        task: Callable[[str], TaskView | None],
        framework_known: Callable[[str], bool],
        authenticator: Authenticator,
        owned_by: Callable[[Principal], frozenset[str]],
    ) -> None:
        self._task, self._framework_known = task, framework_known
        self._authenticator, self._owned_by = authenticator, owned_by

    # -- credentials ------------------------------------------------------------------

    def task_password(self, task_id: str) -> str:
        return hmac.new(self._key, (TASK_PREFIX + task_id).encode(), hashlib.sha256).hexdigest()

    def credential_env(self, task_id: str) -> dict[str, str]:
        """The ``secret_env`` entries that let a dataflow task log in."""
        return {k.BROKER_USERNAME: TASK_PREFIX + task_id, k.BROKER_PASSWORD: self.task_password(task_id)}

    # -- decisions --------------------------------------------------------------------

    def owner_of(self, dag: str) -> str | None:
        owner = self._dag_owner.get(dag)
        if owner is not None and not self._framework_known(owner):
            del self._dag_owner[dag]
            return None
        return owner

    def login(self, username: str | None, password: str | None) -> Grant | None:
        """The grant for a CONNECT, or None to refuse it."""
        if not username or not password:
            return None
        if username == MASTER_USER:
            ok = hmac.compare_digest(password, self.master_password)
            return Grant(MASTER_USER, read_all=True) if ok else None
        if username.startswith(TASK_PREFIX):
            return self._task_login(username[len(TASK_PREFIX) :], password)
        if self._authenticator is None:
            return None
        principal = self._authenticator.principal_for_token(password)
        if principal is None:
            return None
        if principal.role is Role.ADMIN:
            return Grant(f"admin {principal.name}", read_all=True)
        if principal.role is Role.FRAMEWORK:

            def reads_dag(dag: str, principal: Principal = principal) -> bool:
                owner = self.owner_of(dag)
                return owner is not None and owner in self._owned_by(principal)

            return Grant(f"framework {principal.name}", reads_dag=reads_dag)
        return None

    def _task_login(self, task_id: str, password: str) -> Grant | None:
        if not hmac.compare_digest(password, self.task_password(task_id)):
            return None
        task = self._task(task_id)
        if task is None or not task.live or k.ROLE not in task.env:
            return None
        env = task.env
        dag, operator = env.get(k.DAG, ""), env.get(k.OPERATOR, "")
        if not dag or not operator:
            return None
        owner = self.owner_of(dag)
        if owner is None:
            self._dag_owner[dag] = owner = task.framework_id
        if owner != task.framework_id:
            return None
        try:
            index = int(env.get(k.REPLICA, "0/1").split("/")[0])
        except ValueError:
            return None
        state, claim = k.state_topic(dag, operator, index), k.claim_topic(dag, operator, index)
        output = env.get(k.OUTPUT, "")
        inputs = {t.strip() for t in env.get(k.INPUTS, "").split(",") if t.strip()}
        if any(_dag_of(t) != dag for t in inputs | {output}):
            return None  # every topic a task names lies in its own dataflow
        probe = f"{claim}/probe"  # its reader's end-of-retained marker, sent to itself
        publish = {output, k.stats_topic(dag, operator, index), state, claim, probe}
        return Grant(f"task {task_id}", publish=frozenset(publish), read=frozenset(inputs | {state, claim, probe}))
