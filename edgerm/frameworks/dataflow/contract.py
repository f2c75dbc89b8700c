"""The dataflow contract on the framework's side: topics, task environment, records.

The data plane (the agent's operator host, DF-AGENT's part) and this
framework meet only here; ``docs/dataflow.md`` states the contract in full.

- Every operator publishes its output micro-batches to
  ``edgerm/<dag>/<operator>/out`` (QoS 1) and each instance its cumulative
  figures to ``edgerm/<dag>/<operator>/stats/<i>`` (QoS 0, every second).
- An operator instance is an ordinary task whose environment carries the
  ``EDGERM_DF_*`` keys built by :func:`task_env`.
- A record is one line ``<src> <seq> <t> <value>``.

Rules: pure (no I/O). The keys the framework owns (:data:`OWNED_KEYS`) cannot
be set by a DAG's ``env``; the tunables (:data:`TUNABLE_KEYS`) can, and are
checked by :func:`tunable_problems`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from edgerm.dataflow_keys import (
    BATCH,
    BATCH_MS,
    BROKER,
    DAG,
    DEVICE,
    INPUTS,
    OPERATOR,
    OUTPUT,
    PERIOD,
    QUEUE,
    REPLICA,
    ROLE,
    SINK,
    TOPIC_ROOT,
    Record,
    out_topic,
)
from edgerm.dataflow_keys import parse_record as strict_parse_record
from edgerm.dataflow_records import decode_batch
from edgerm.errors import MalformedMessage, MessageTooLarge
from edgerm.scheduler.dag import Dag, Instance, OperatorKind, Variant

#: Keys the framework fills in; a DAG may not set them.
OWNED_KEYS = frozenset({DAG, OPERATOR, ROLE, INPUTS, OUTPUT, REPLICA, DEVICE})
#: Keys a DAG's ``env`` may set (checked by :func:`tunable_problems`).
TUNABLE_KEYS = frozenset({PERIOD, BATCH, BATCH_MS, QUEUE, SINK, BROKER})

#: The sink delivery that publishes to the sink's out topic for the framework to print.
CONSOLE = "console"


def stats_filter(dag: str) -> str:
    """An MQTT topic filter matching every instance's stats topic of ``dag``."""
    return f"{TOPIC_ROOT}/{dag}/+/stats/+"


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed dataflow topic: the operator it belongs to and, for stats, the instance index."""

    dag: str
    operator: str
    stats_index: int | None = None  # None: the operator's out topic

    @property
    def is_stats(self) -> bool:
        return self.stats_index is not None


def parse_topic(topic: str) -> Topic | None:
    """``edgerm/<dag>/<op>/out`` or ``.../stats/<i>``; ``None`` for anything else."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == TOPIC_ROOT and parts[3] == "out":
        return Topic(parts[1], parts[2])
    if len(parts) == 5 and parts[0] == TOPIC_ROOT and parts[3] == "stats" and parts[4].isdigit():
        return Topic(parts[1], parts[2], int(parts[4]))
    return None


def source_id(operator: str, index: int) -> str:
    """The ``src`` a source instance writes into its records."""
    return f"{operator}.{index}"


def task_name(dag: str, instance: Instance) -> str:
    """The task name an operator instance runs under (``<dag>.<operator>.<i>``)."""
    return f"{dag}.{instance.operator}.{instance.replica}"


def task_env(dag: Dag, instance: Instance, variant: Variant) -> dict[str, str]:
    """The environment of one operator instance: the variant's env, then the contract's keys.

    The contract's keys win; :func:`env_problems` rejects DAGs that try to
    set them, so nothing is silently overridden for a valid DAG.
    """
    op = dag.operator(instance.operator)
    env = dict(variant.env)
    env[DAG] = dag.name
    env[OPERATOR] = op.name
    env[ROLE] = op.kind.value
    env[OUTPUT] = out_topic(dag.name, op.name)
    env[REPLICA] = f"{instance.replica}/{op.replicas}"
    if op.kind is not OperatorKind.SOURCE:
        env[INPUTS] = ",".join(out_topic(dag.name, up) for up in dag.upstream(op.name))
    if op.kind is OperatorKind.SOURCE and variant.devices:
        env[DEVICE] = variant.devices[0]
    return env


def env_problems(env: Mapping[str, str]) -> list[str]:
    """What is wrong with a variant's ``env`` for the dataflow contract (empty if nothing)."""
    problems = [f"{k} is set by the framework; remove it from env" for k in sorted(env) if k in OWNED_KEYS]
    for key, minimum, integral in (
        (PERIOD, 0.001, False),
        (BATCH, 1.0, True),
        (BATCH_MS, 0.0, False),
        (QUEUE, 1.0, True),
    ):
        if key in env:
            problems += _number_problem(key, env[key], minimum, integral)
    if SINK in env:
        sink = env[SINK]
        if not (sink == CONSOLE or sink.startswith(("file:", "http://", "https://"))):
            problems.append(f"{SINK}={sink!r}: expected console, file:/path, or an http:// or https:// URL")
        elif sink.startswith("file:") and len(sink) == len("file:"):
            problems.append(f"{SINK}={sink!r}: file: needs a path")
    if BROKER in env and not env[BROKER].startswith(("mqtt://", "mqtts://")):
        problems.append(f"{BROKER}={env[BROKER]!r}: expected mqtt://host:port")
    return problems


def _number_problem(key: str, text: str, minimum: float, integral: bool) -> list[str]:
    try:
        value = float(text)
    except ValueError:
        return [f"{key}={text!r} is not a number"]
    if not math.isfinite(value) or value < minimum or (integral and value != int(value)):
        kind = "a whole number" if integral else "a number"
        return [f"{key}={text!r} must be {kind} of at least {minimum:g}"]
    return []


def sink_delivery(variant: Variant) -> str:
    """Where a sink variant delivers: ``console`` unless its env says otherwise."""
    return variant.env.get(SINK, CONSOLE)


# -- records -------------------------------------------------------------------------


def parse_record(line: str) -> Record | None:
    """A record from its line; ``None`` when the line is not a well-formed record (or its time is not finite)."""
    try:
        record = strict_parse_record(line)
    except ValueError:
        return None
    return record if math.isfinite(record.t) else None


def parse_batch(payload: bytes) -> tuple[list[Record], int]:
    """The records of a micro-batch in either framing (edgerm.dataflow_records), and how many were not records.

    A binary batch that does not parse counts as one malformed record.
    """
    try:
        decoded = decode_batch(payload)
    except (MalformedMessage, MessageTooLarge):
        return [], 1
    return decoded.records, decoded.malformed
