"""A Python dataflow operator: ``value * scale + offset`` for every record.

Run it as a Docker operator (the test image has it at /opt/edgerm/operators/scale.py)::

    operators:
      fahrenheit:
        kind: operator
        docker: edgerm-test/python:latest
        args: [python3, /opt/edgerm/operators/scale.py, --scale, "1.8", --offset, "32"]

or as a plain process with the ``EDGERM_DF_*`` environment set (see docs/dataflow.md).
"""

from __future__ import annotations

import argparse

from edgerm.dataflow.operator import Record, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--offset", type=float, default=0.0)
    parser.add_argument("--fail-above", type=float, default=None, help="raise on values above this (for tests)")
    args = parser.parse_args()

    def scale(r: Record) -> Record:
        if args.fail_above is not None and r.value > args.fail_above:
            raise ValueError(f"value {r.value} above {args.fail_above}")
        return Record(r.src, r.seq, r.t, r.value * args.scale + args.offset)

    run(scale)


if __name__ == "__main__":
    main()
