"""Invariants of the agent core under random event sequences, restarts included (Hypothesis).

The machine plays the agent's world around one ``AgentCore``: a master that
receives, drops and acknowledges updates (and forgets the agent), a runtime
that starts and ends the tasks it was told to start, a clock, a journal
that keeps what the core orders kept, and agent restarts (WebAssembly tasks
die, containers survive, the journal is replayed into a fresh core).
Checked after every step, or at the end where noted:

- **kept before sent**: a status is sent (SendStatus, REGISTER) only after
  it was ordered kept, and only while registered (SendStatus);
- **in order, each once**: per task the master first receives the kept
  updates in the order they were kept, and no uuid is kept twice;
- **nothing after the end**: no update is kept for a task after its
  terminal one; a task has at most one terminal update, ever;
- **retried until acknowledged**: once registered, the next retry comes
  (a Tick at the core's deadline sends something) while anything waits;
  at the end, a registered core with a master that acknowledges what it
  gets delivers every kept update;
- **bounded**: at most ``max_pending`` updates wait, and at most half as
  many tasks are held;
- **clean end**: a task is cleaned up once, after its end was acknowledged,
  and a cleaned-up task is no longer held nor its update journaled.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from edgerm.agent.runtime import RecoveredTask, TaskEnded, TaskStarted
from edgerm.agent.state import (
    AgentAction,
    AgentCore,
    AgentEvent,
    CleanupTask,
    ForgetStatus,
    HeartbeatDue,
    KeepStatus,
    KillReceived,
    LaunchReceived,
    LaunchRefused,
    MasterAnswered,
    Recovered,
    Register,
    Registered,
    RegistrationLost,
    Restored,
    RuntimeReported,
    SendHeartbeat,
    SendStatus,
    Stamp,
    Started,
    StartTask,
    StatusAcked,
    StopTask,
    Tick,
)
from edgerm.ids import AgentId, TaskId
from edgerm.model import DockerSpec, Reason, RestartPolicy, TaskInfo, TaskState, TaskStatus, WasmSpec
from edgerm.resources import Resources

AGENT = AgentId("agent-1")
MAX_PENDING = 6  # three tasks: small, so the limit is reached often
TASK_IDS = [TaskId(f"t{n}") for n in range(6)]
ENDS = [TaskState.FINISHED, TaskState.FAILED, TaskState.KILLED]


def make_task(task_id: TaskId, docker: bool, restart: bool) -> TaskInfo:
    container = DockerSpec(image="busybox") if docker else WasmSpec(module=b"\0asm")
    policy = RestartPolicy.ON_AGENT_RESTART if restart else RestartPolicy.NEVER
    return TaskInfo(task_id, task_id, AGENT, Resources.parse("cpus:0.1"), container, restart_policy=policy)


@dataclass
class Journal:
    """What survives the process: launch records and kept-not-acknowledged updates, in order."""

    launches: OrderedDict[TaskId, TaskInfo] = field(default_factory=OrderedDict)
    pending: OrderedDict[str, tuple[TaskStatus, str]] = field(default_factory=OrderedDict)


class AgentCoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.uuids = itertools.count()
        self.now = 0.0
        self.journal = Journal()
        self.runtime: dict[TaskId, str] = {}  # task -> "starting" | "running": handed to the runtime, not ended
        self.executor: dict[TaskId, str] = {}
        self.stopping: set[TaskId] = set()
        self.kept: dict[TaskId, list[str]] = {}  # uuids kept per task, in order (across restarts)
        self.status_by_uuid: dict[str, TaskStatus] = {}
        self.received: dict[TaskId, list[str]] = {}  # uuids the master received per task, first receipt order
        self.in_flight: list[TaskStatus] = []  # sent, not yet answered
        self.acked: set[str] = set()
        self.terminal: dict[TaskId, str] = {}  # the one terminal uuid per task
        self.cleaned: set[TaskId] = set()
        self.ever_launched: set[TaskId] = set()
        self.relaunched: set[TaskId] = set()
        self.core = AgentCore(AGENT, frozenset({"wasm", "docker"}), MAX_PENDING)

    # -- plumbing -------------------------------------------------------------------------

    def stamp(self) -> Stamp:
        return Stamp(f"u{next(self.uuids)}", self.now)

    def feed(self, event: AgentEvent) -> list[AgentAction]:
        actions = self.core.handle(event, self.now)
        for action in actions:
            self.apply(action)
        return actions

    def apply(self, action: AgentAction) -> None:
        match action:
            case KeepStatus(status=status, executor=executor):
                tid = status.task_id
                assert status.uuid and status.uuid not in self.status_by_uuid, "a uuid kept twice"
                assert tid not in self.terminal, f"an update kept for {tid} after its end"
                assert tid not in self.cleaned
                if status.state.terminal:
                    self.terminal[tid] = status.uuid
                self.status_by_uuid[status.uuid] = status
                self.kept.setdefault(tid, []).append(status.uuid)
                self.journal.pending[status.uuid] = (status, executor)
            case ForgetStatus(task_id=tid, uuid=uuid):
                assert uuid in self.acked or uuid in self.journal.pending
                self.journal.pending.pop(uuid, None)
            case SendStatus(status=status):
                assert self.core.registered, "sent while not registered"
                self.receive(status)
                self.in_flight.append(status)
            case Register(tasks=tasks):
                for status in tasks:
                    if status.uuid:
                        self.receive(status)
            case StartTask(task=task):
                tid = task.task_id
                assert tid not in self.runtime, f"{tid} started twice at once"
                self.runtime[tid] = "starting"
                self.executor[tid] = task.executor
                self.journal.launches.setdefault(tid, task)
                self.ever_launched.add(tid)
            case StopTask(task_id=tid):
                if tid in self.runtime:
                    self.stopping.add(tid)
            case CleanupTask(task_id=tid):
                assert tid not in self.cleaned, f"{tid} cleaned up twice"
                assert tid in self.terminal and self.terminal[tid] in self.acked, "cleaned before its end was acked"
                assert tid not in self.runtime, "cleaned while its runtime still runs it"
                self.cleaned.add(tid)
                self.journal.launches.pop(tid, None)
            case SendHeartbeat() | LaunchRefused():
                pass

    def settled(self, tid: TaskId) -> bool:
        """The task's end was acknowledged and the core let it go (the master is done with it)."""
        return tid in self.terminal and self.terminal[tid] in self.acked and tid not in self.core.task_ids()

    def receive(self, status: TaskStatus) -> None:
        """The master gets a status: check it is kept, and the next one of its task in keep order."""
        assert status.uuid in self.status_by_uuid, f"{status.uuid} reached the master before it was kept"
        got = self.received.setdefault(status.task_id, [])
        if status.uuid in got:
            return  # a retry: the master ignores it
        kept = self.kept[status.task_id]
        assert kept[: len(got) + 1] == [*got, status.uuid], (
            f"out of order for {status.task_id}: {got} then {status.uuid}"
        )
        got.append(status.uuid)

    # -- the world --------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        self.feed(Started())

    @rule(dt=st.floats(min_value=0.0, max_value=12.0))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        self.feed(Tick())

    @rule()
    def retry_comes_when_due(self) -> None:
        deadline = self.core.next_deadline()
        if deadline is None:
            return
        assert self.core.registered and self.core.unacknowledged() > 0
        self.now = max(self.now, deadline)
        sent = [a for a in self.feed(Tick()) if isinstance(a, SendStatus)]
        assert sent, "a retry was due and nothing was re-sent"

    @precondition(lambda self: not self.core.registered)
    @rule()
    def master_answers_register(self) -> None:
        self.feed(Registered())

    @rule()
    def master_forgets_the_agent(self) -> None:
        self.feed(RegistrationLost())

    @rule()
    def heartbeat(self) -> None:
        self.feed(HeartbeatDue())

    @rule()
    def master_reachable_again(self) -> None:
        self.feed(MasterAnswered())

    @rule(n=st.integers(0, len(TASK_IDS) - 1), docker=st.booleans(), restart=st.booleans())
    def launch(self, n: int, docker: bool, restart: bool) -> None:
        tid = TASK_IDS[n]
        if self.settled(tid):
            return  # the master never re-launches a task whose end it acknowledged
        self.feed(LaunchReceived(make_task(tid, docker, restart), self.stamp()))

    @rule(n=st.integers(0, len(TASK_IDS) - 1))
    def kill(self, n: int) -> None:
        if self.settled(TASK_IDS[n]):
            return
        self.feed(KillReceived(TASK_IDS[n], 1.0, self.stamp()))

    @rule(data=st.data())
    def runtime_reports(self, data: st.DataObject) -> None:
        if not self.runtime:
            return
        tid = data.draw(st.sampled_from(sorted(self.runtime)))
        phase = self.runtime[tid]
        if tid in self.stopping or (phase == "running" and data.draw(st.booleans())):
            state = TaskState.KILLED if tid in self.stopping else data.draw(st.sampled_from(ENDS))
            del self.runtime[tid]
            self.stopping.discard(tid)
            self.feed(RuntimeReported(TaskEnded(tid, state), self.stamp()))
        elif phase == "starting":
            self.runtime[tid] = "running"
            self.feed(RuntimeReported(TaskStarted(tid), self.stamp()))

    @rule(n=st.integers(0, len(TASK_IDS) - 1), ended=st.booleans())
    def stale_runtime_report(self, n: int, ended: bool) -> None:
        tid = TASK_IDS[n]
        if tid in self.runtime:
            return
        report = TaskEnded(tid, TaskState.FAILED) if ended else TaskStarted(tid)
        self.feed(RuntimeReported(report, self.stamp()))

    @rule(data=st.data())
    def master_acknowledges(self, data: st.DataObject) -> None:
        if not self.in_flight:
            return
        status = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
        if data.draw(st.booleans()):
            return  # lost on the way: the core must re-send
        self.acked.add(status.uuid)
        self.feed(StatusAcked(status.task_id, status.uuid))

    @rule(n=st.integers(0, len(TASK_IDS) - 1))
    def bogus_ack(self, n: int) -> None:
        self.feed(StatusAcked(TASK_IDS[n], "not-a-kept-uuid"))

    @rule(lose_containers=st.booleans())
    def agent_restarts(self, lose_containers: bool) -> None:
        """The process dies: WebAssembly tasks with it; the journal and (maybe) the containers remain."""
        survivors = {} if lose_containers else {t: p for t, p in self.runtime.items() if self.executor[t] == "docker"}
        self.runtime = {t: "running" for t in survivors}
        self.stopping &= set(survivors)
        self.in_flight.clear()
        by_task: OrderedDict[TaskId, list[TaskStatus]] = OrderedDict()
        executors: dict[TaskId, str] = {}
        for tid, task in self.journal.launches.items():
            by_task[tid] = []
            executors[tid] = task.executor
        for status, executor in self.journal.pending.values():
            by_task.setdefault(status.task_id, []).append(status)
            executors.setdefault(status.task_id, executor)
        restored = tuple(
            Restored(tid, executors[tid], self.journal.launches.get(tid), tuple(pending), self.stamp())
            for tid, pending in by_task.items()
        )
        recovered = tuple(
            Recovered("docker", RecoveredTask(tid, TaskState.RUNNING), self.stamp()) for tid in sorted(survivors)
        )
        self.core = AgentCore(AGENT, frozenset({"wasm", "docker"}), MAX_PENDING)
        for action in self.feed(Started(recovered, restored)):
            if isinstance(action, StartTask):
                self.relaunched.add(action.task.task_id)
                assert action.task.restart_policy is RestartPolicy.ON_AGENT_RESTART
                assert action.task.task_id not in survivors

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def bounded(self) -> None:
        assert self.core.unacknowledged() <= MAX_PENDING
        assert len(self.core.task_ids()) <= MAX_PENDING // 2 or self.core.unacknowledged() <= MAX_PENDING

    @invariant()
    def at_most_two_updates_wait_per_task(self) -> None:
        per_task: dict[TaskId, list[TaskState]] = {}
        for status, _ in self.journal.pending.values():
            per_task.setdefault(status.task_id, []).append(status.state)
        for states in per_task.values():
            assert len(states) <= 2 and len(set(states)) == len(states), per_task  # at most a RUNNING and an end

    @invariant()
    def journal_matches_the_core(self) -> None:
        assert self.core.unacknowledged() == len(self.journal.pending)
        assert not (self.cleaned & set(self.core.task_ids()))

    @invariant()
    def a_restarted_task_says_so(self) -> None:
        for tid, uuids in self.kept.items():
            running = [self.status_by_uuid[u] for u in uuids if self.status_by_uuid[u].state is TaskState.RUNNING]
            for second in running[1:]:
                assert second.reason is Reason.AGENT_RESTARTED and tid in self.relaunched

    def teardown(self) -> None:
        """Registered, with a master that acknowledges everything: every kept update is delivered."""
        if not self.core.registered:
            self.feed(Registered())
        for _ in range(len(self.in_flight) + 4 * MAX_PENDING + 8):  # retries may sit in flight many times over
            if not self.in_flight:
                self.now += 20.0
                self.feed(Tick())
                if not self.in_flight:
                    break
            status = self.in_flight.pop(0)
            self.acked.add(status.uuid)
            self.feed(StatusAcked(status.task_id, status.uuid))
        assert self.core.unacknowledged() == 0, "updates left undelivered"
        for tid, uuids in self.kept.items():
            assert self.received.get(tid) == uuids, f"{tid}: kept {uuids}, master got {self.received.get(tid)}"


@pytest.mark.slow
def test_agent_core_invariants() -> None:
    run_state_machine_as_test(
        AgentCoreMachine,
        settings=settings(
            max_examples=100,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
