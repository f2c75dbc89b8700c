"""A Python dataflow operator for JSON events: keep the events whose ``--field`` is above ``--above``, tagged.

``{"room": "kitchen", "temperature": 84.2}`` with ``--field temperature --above 80 --label hot`` becomes
``{"room": "kitchen", "temperature": 84.2, "alert": "hot", "over": 4.2}``; an event at or below the limit is
dropped. An event that is not a JSON object, or lacks the field, is bad input: the call raises, and the SDK
counts that one record as an error and drops it (the other records of its batch go on).

Shipped in an image of its own (this directory's Dockerfile; docs/dataflow.md, "Your own operator image").
"""

from __future__ import annotations

import argparse

from edgerm.dataflow.operator import Record, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--field", default="temperature")
    parser.add_argument("--above", type=float, required=True)
    parser.add_argument("--label", default="alert")
    args = parser.parse_args()

    def annotate(r: Record) -> Record | None:
        event = r.value
        if not isinstance(event, dict):
            raise TypeError(f"expected a JSON object, got {r.kind.name.lower()}")
        value = float(event[args.field])  # KeyError: an event without the field
        if value <= args.above:
            return None
        return Record(r.src, r.seq, r.t, {**event, "alert": args.label, "over": round(value - args.above, 6)})

    run(annotate)


if __name__ == "__main__":
    main()
