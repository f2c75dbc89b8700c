"""edgerm.frameworks.dataflow: the bundled dataflow framework (``edgerm-dataflow``).

A DAG file in; operators placed with the scheduler library across edge and
cloud agents; records flowing between them over MQTT; operators moved when
their agent dies (see README.md in this package and docs/dataflow.md).
"""

from edgerm.frameworks.dataflow.framework import (
    DataflowFramework,
    FrameworkView,
    Move,
    MoveKind,
    MoveListener,
    Phase,
)
from edgerm.frameworks.dataflow.probe import PlanProbe, plan_against
from edgerm.frameworks.dataflow.runner import DataflowRun, RecordsMode, RunOptions, discover_broker
from edgerm.frameworks.dataflow.server import DagService, RunningServer, start_server
from edgerm.frameworks.dataflow.validate import DagError, load, loads
from edgerm.frameworks.dataflow.watch import StreamWatch, WatchView

__all__ = [
    "DagError",
    "DagService",
    "DataflowFramework",
    "DataflowRun",
    "FrameworkView",
    "Move",
    "MoveKind",
    "MoveListener",
    "Phase",
    "PlanProbe",
    "RecordsMode",
    "RunOptions",
    "RunningServer",
    "StreamWatch",
    "WatchView",
    "discover_broker",
    "load",
    "loads",
    "plan_against",
    "start_server",
]
