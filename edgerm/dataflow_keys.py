"""The dataflow contract's names and record format, shared by the agent's operator host and the dataflow framework.

They meet only here (docs/dataflow.md states the contract in full): the ``EDGERM_DF_*`` env keys an operator task
carries, the micro-batch size bound and the topic names. The record and its framings are
:mod:`edgerm.dataflow_records` (re-exported here: ``Record``, ``format_record``, ``parse_record``). Pure; no I/O.
"""

from __future__ import annotations

from edgerm.dataflow_records import TEXT_BATCH_BYTES, Record, format_record, parse_record

__all__ = ["Record", "format_record", "parse_record"]

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
#: The task's broker login, which a secure master puts in the task's ``secret_env`` (edgerm.master.broker_gate).
BROKER_USERNAME = "EDGERM_BROKER_USERNAME"
BROKER_PASSWORD = "EDGERM_BROKER_PASSWORD"
#: An ``mqtts://`` broker: the CA file (on the agent) that verifies it; the agent fills it in from its ``--ca``.
BROKER_CA = "EDGERM_BROKER_CA"
#: The run an instance belongs to (the agent fills in the task's framework id): its MQTT session and state
#: checkpoint are per run, so a new run of a DAG starts afresh while a moved instance takes over its own.
RUN = "EDGERM_DF_RUN"
#: ``cmd+bytes:`` sources: the content type of the records they make (application/octet-stream).
CONTENT_TYPE = "EDGERM_DF_CONTENT_TYPE"

#: Text micro-batches are formed up to this many bytes (edgerm.dataflow_records has the hard limits).
MAX_BATCH_BYTES = TEXT_BATCH_BYTES

#: The first level of every dataflow topic.
TOPIC_ROOT = "edgerm"


def out_topic(dag: str, operator: str) -> str:
    """The topic an operator's output micro-batches go to (QoS 1)."""
    return f"{TOPIC_ROOT}/{dag}/{operator}/out"


def stats_topic(dag: str, operator: str, index: int) -> str:
    """The topic one instance publishes its cumulative figures to (QoS 0, every second)."""
    return f"{TOPIC_ROOT}/{dag}/{operator}/stats/{index}"


def state_topic(dag: str, operator: str, index: int) -> str:
    """The topic one instance checkpoints its state to (QoS 1, retained; its replacement starts from it)."""
    return f"{TOPIC_ROOT}/{dag}/{operator}/state/{index}"


def claim_topic(dag: str, operator: str, index: int) -> str:
    """The topic an instance claims its slot on (QoS 1, retained): an older instance seeing a newer claim stops."""
    return f"{TOPIC_ROOT}/{dag}/{operator}/claim/{index}"
