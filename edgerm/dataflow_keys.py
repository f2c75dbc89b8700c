"""The dataflow contract's names, shared by the agent's operator host and the dataflow framework.

They meet only here (docs/dataflow.md states the contract in full): the ``EDGERM_DF_*`` env keys an operator task
carries, the micro-batch size bound, and the topic names. Pure constants and two small functions; no I/O.
"""

from __future__ import annotations

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
