"""The dataflow contract's names and record format, shared by the agent's operator host and the dataflow framework.

They meet only here (docs/dataflow.md states the contract in full): the ``EDGERM_DF_*`` env keys an operator task
carries, the micro-batch size bound, the topic names, and the record line ``<src> <seq> <t> <value>``. Pure; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

DAG = "EDGERM_DF_DAG"
OPERATOR = "EDGERM_DF_OPERATOR"
ROLE = "EDGERM_DF_ROLE"
INPUTS = "EDGERM_DF_IN"
OUTPUT = "EDGERM_DF_OUT"
REPLICA = "EDGERM_DF_REPLICA"
DEVICE = "EDGERM_DF_DEVICE"
PERIOD = "EDGERM_DF_PERIOD"
BATCH = "EDGERM_DF_BATCH"
BATCH_MS = "EDGERM_DF_BATCH_MS"
QUEUE = "EDGERM_DF_QUEUE"
SINK = "EDGERM_DF_SINK"
BROKER = "EDGERM_BROKER"

#: A micro-batch never exceeds this many bytes of UTF-8.
MAX_BATCH_BYTES = 64 * 1024

#: The first level of every dataflow topic.
TOPIC_ROOT = "edgerm"


def out_topic(dag: str, operator: str) -> str:
    """The topic an operator's output micro-batches go to (QoS 1)."""
    return f"{TOPIC_ROOT}/{dag}/{operator}/out"


def stats_topic(dag: str, operator: str, index: int) -> str:
    """The topic one instance publishes its cumulative figures to (QoS 0, every second)."""
    return f"{TOPIC_ROOT}/{dag}/{operator}/stats/{index}"


@dataclass(frozen=True, slots=True)
class Record:
    """One record: source id, per-source sequence number, reading time (unix), value."""

    src: str
    seq: int
    t: float
    value: float

    def line(self) -> str:
        return format_record(self.src, self.seq, self.t, self.value)


def format_record(src: str, seq: int, t: float, value: float) -> str:
    """One record line (no newline); ``t`` to the microsecond, ``value`` to 12 significant digits."""
    return f"{src} {seq} {t:.6f} {value:.12g}"


def parse_record(line: str) -> Record:
    """Parse one record line; raises ValueError when it is not ``<src> <seq> <t> <value>``."""
    parts = line.split()
    if len(parts) != 4:
        raise ValueError(f"a record has 4 fields, this line has {len(parts)}")
    src, seq, t, value = parts
    number = int(seq)
    if number < 0:
        raise ValueError("seq must be >= 0")
    return Record(src, number, float(t), float(value))
