"""The stats listener's MQTT client: an expected late acknowledgement is one DEBUG line, not a traceback."""

from __future__ import annotations

import logging

import aiomqtt
import pytest

from edgerm.master.dataflow_stats import MQTT_LOG


async def test_a_subscription_acknowledged_after_it_was_given_up_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = aiomqtt.Client("127.0.0.1", 1, logger=MQTT_LOG)  # never connected: only its callback is called
    client._on_subscribe(None, None, 7, [], None)  # a SUBACK for message id 7, which nobody waits for
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "Traceback" not in caplog.text and "KeyError" not in caplog.text
    assert 'Unexpected message ID "7"' in caplog.text  # still said, at DEBUG
    MQTT_LOG.error("the broker refused the connection")  # anything else still gets through
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "the broker refused the connection"
    ]
