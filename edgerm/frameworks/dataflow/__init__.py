"""edgerm.frameworks.dataflow: the bundled dataflow framework (``edgerm-dataflow``).

A DAG file in; operators placed with the scheduler library across edge and
cloud agents; records flowing between them over MQTT; operators moved when
their agent dies (see README.md in this package and docs/dataflow.md).

Everything below is imported on first use (PEP 562): importing the pure
:mod:`edgerm.frameworks.dataflow.contract` loads no asyncio, MQTT or HTTP
(tests/unit/test_layers.py imports it in a fresh interpreter).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_LAZY = {
    "DagError": "edgerm.frameworks.dataflow.validate",
    "DagService": "edgerm.frameworks.dataflow.server",
    "DataflowFramework": "edgerm.frameworks.dataflow.framework",
    "DataflowRun": "edgerm.frameworks.dataflow.runner",
    "FrameworkView": "edgerm.frameworks.dataflow.framework",
    "Move": "edgerm.frameworks.dataflow.framework",
    "MoveKind": "edgerm.frameworks.dataflow.framework",
    "MoveListener": "edgerm.frameworks.dataflow.framework",
    "Phase": "edgerm.frameworks.dataflow.framework",
    "PlanProbe": "edgerm.frameworks.dataflow.probe",
    "RecordsMode": "edgerm.frameworks.dataflow.runner",
    "RunOptions": "edgerm.frameworks.dataflow.runner",
    "RunningServer": "edgerm.frameworks.dataflow.server",
    "StreamWatch": "edgerm.frameworks.dataflow.watch",
    "WatchView": "edgerm.frameworks.dataflow.watch",
    "discover_broker": "edgerm.frameworks.dataflow.runner",
    "load": "edgerm.frameworks.dataflow.validate",
    "loads": "edgerm.frameworks.dataflow.validate",
    "plan_against": "edgerm.frameworks.dataflow.probe",
    "start_server": "edgerm.frameworks.dataflow.server",
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
