"""A stateful Python dataflow operator: the sum of every ``--window`` records of each source (tumbling).

Window ``k`` of a source goes out as one record ``<src> <k> <t of its last record> <sum>``. The open windows
live in the SDK's ``state``, so when the operator moves (its agent or container dies) the replacement goes on
with the window it was in, and with its window counter::

    operators:
      sums:
        kind: operator
        docker: edgerm-test/python:latest
        args: [python3, /opt/edgerm/operators/window_sum.py, --window, "5"]
"""

from __future__ import annotations

import argparse
from typing import Any

from edgerm.dataflow.operator import Record, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=10, help="records per window")
    args = parser.parse_args()

    def window_sum(r: Record, state: dict[str, Any]) -> Record | None:
        w = state.setdefault(r.src, {"k": 0, "n": 0, "sum": 0.0})  # this source's open window
        w["n"] += 1
        w["sum"] += r.number
        if w["n"] < args.window:
            return None
        out = Record(r.src, w["k"], r.t, w["sum"])
        state[r.src] = {"k": w["k"] + 1, "n": 0, "sum": 0.0}
        return out

    run(window_sum, state={})


if __name__ == "__main__":
    main()
