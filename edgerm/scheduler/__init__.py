"""edgerm.scheduler: compile a dataflow DAG into an explainable placement plan (pure, no I/O).

Pipeline (see README.md)::

    DAG file --load_dag--> Dag ─┐
    offers --Snapshot.from_offers--> Snapshot ─┼─ compile_dag(dag, snapshot, policy) --> Plan
                                     Policy ───┘   replan(dag, running, snapshot, policy) --> Replan

Nothing here imports asyncio or any I/O library; the loader reads a file
only in :func:`load_dag`.
"""

from edgerm.scheduler.compiler import compile_dag, replan
from edgerm.scheduler.constraints import Constraint, Op
from edgerm.scheduler.context import Demand, PlanContext
from edgerm.scheduler.dag import (
    MAIN,
    Dag,
    DockerExecutor,
    Edge,
    Executor,
    Instance,
    Operator,
    OperatorKind,
    Variant,
    WasmExecutor,
)
from edgerm.scheduler.feasible import (
    DEFAULT_CHECKS,
    Check,
    ConstraintCheck,
    DeviceCheck,
    ExecutorCheck,
    IdentityCheck,
    ResourceCheck,
)
from edgerm.scheduler.harness import SchedulerHarness, parse_agent
from edgerm.scheduler.loader import DagError, Problem, dag_from_data, load_dag, loads_dag
from edgerm.scheduler.plan import (
    Change,
    ChangeKind,
    ClassRejections,
    Placement,
    Plan,
    Replan,
    Unplaced,
    VariantRejections,
)
from edgerm.scheduler.policy import LOCALITY, PACKED, POLICIES, SPREAD, CandidateLimit, Policy
from edgerm.scheduler.rank import BinPack, LeastLoaded, Locality, Ranker, Scoring, Spread
from edgerm.scheduler.reasons import RejectCode, Rejection
from edgerm.scheduler.snapshot import AgentView, Snapshot

__all__ = [
    "DEFAULT_CHECKS",
    "LOCALITY",
    "MAIN",
    "PACKED",
    "POLICIES",
    "SPREAD",
    "AgentView",
    "BinPack",
    "CandidateLimit",
    "Change",
    "ChangeKind",
    "Check",
    "ClassRejections",
    "Constraint",
    "ConstraintCheck",
    "Dag",
    "DagError",
    "Demand",
    "DeviceCheck",
    "DockerExecutor",
    "Edge",
    "Executor",
    "ExecutorCheck",
    "IdentityCheck",
    "Instance",
    "LeastLoaded",
    "Locality",
    "Op",
    "Operator",
    "OperatorKind",
    "Placement",
    "Plan",
    "PlanContext",
    "Policy",
    "Problem",
    "Ranker",
    "RejectCode",
    "Rejection",
    "Replan",
    "ResourceCheck",
    "SchedulerHarness",
    "Scoring",
    "Snapshot",
    "Spread",
    "Unplaced",
    "Variant",
    "VariantRejections",
    "WasmExecutor",
    "compile_dag",
    "dag_from_data",
    "load_dag",
    "loads_dag",
    "parse_agent",
    "replan",
]
