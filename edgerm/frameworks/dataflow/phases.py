"""The dataflow framework's phases and the one table of moves between them (h11 style).

::

    WAITING --PLACED--> RUNNING --SHUTDOWN--> STOPPING --ALL_ENDED--> STOPPED
       |  \\                |                     ^
       |   +--SHUTDOWN------|---------------------+
       +--GAVE_UP--> FAILED <--GAVE_UP (an operator failed max_failures times)

- **WAITING**: offers are held until the whole DAG fits (or the deadline).
- **RUNNING**: the DAG runs; offers are replanned against it.
- **STOPPING**: every task was told to stop; waiting for them to end.
- **STOPPED** / **FAILED**: final. FAILED also stops every task (teardown).

Rules: :data:`TRANSITIONS` is the whole truth; :func:`next_phase` raises
:class:`~edgerm.errors.IllegalTransition` for a move it does not list, and
the core (:mod:`edgerm.frameworks.dataflow.core`) then leaves its state as
it was. Pure.
"""

from __future__ import annotations

import enum

from edgerm.errors import IllegalTransition


class Phase(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (Phase.STOPPED, Phase.FAILED)

    @property
    def active(self) -> bool:
        """The DAG should run: instances are placed, moved and switched."""
        return self in (Phase.WAITING, Phase.RUNNING)


class Trigger(enum.Enum):
    PLACED = "placed"  # the first complete plan was launched
    GAVE_UP = "gave up"  # the deadline passed, an operator kept failing, a task could not be built
    SHUTDOWN = "shutdown"  # the user asked to stop
    ALL_ENDED = "all ended"  # the last task being stopped reported its end


_P, _T = Phase, Trigger

#: phase -> trigger -> next phase. A pair not listed is illegal.
TRANSITIONS: dict[Phase, dict[Trigger, Phase]] = {
    _P.WAITING: {_T.PLACED: _P.RUNNING, _T.GAVE_UP: _P.FAILED, _T.SHUTDOWN: _P.STOPPING},
    _P.RUNNING: {_T.GAVE_UP: _P.FAILED, _T.SHUTDOWN: _P.STOPPING},
    _P.STOPPING: {_T.ALL_ENDED: _P.STOPPED},
    _P.STOPPED: {},
    _P.FAILED: {},
}


def next_phase(phase: Phase, trigger: Trigger) -> Phase:
    """Where ``trigger`` leads from ``phase``; :class:`IllegalTransition` if nowhere."""
    target = TRANSITIONS[phase].get(trigger)
    if target is None:
        raise IllegalTransition(f"dataflow framework: {trigger.value!r} is not allowed in phase {phase.value}")
    return target


def may(phase: Phase, trigger: Trigger) -> bool:
    return trigger in TRANSITIONS[phase]


__all__ = ["TRANSITIONS", "Phase", "Trigger", "may", "next_phase"]
