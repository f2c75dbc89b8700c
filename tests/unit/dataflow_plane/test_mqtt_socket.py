"""The data plane's MQTT sockets send without Nagle's delay (edgerm.agent.dataflow.mqtt)."""

from __future__ import annotations

import socket

from edgerm.agent.dataflow.mqtt import nodelay


def test_nodelay_turns_nagle_off_on_tcp_and_leaves_other_sockets_alone() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        nodelay(tcp)
        assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    a, b = socket.socketpair()  # AF_UNIX: nothing to set, nothing raised
    with a, b:
        nodelay(a)
        nodelay(object())  # not a socket at all (a websocket wrapper): ignored
