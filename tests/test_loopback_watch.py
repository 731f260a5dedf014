"""The loopback rule of tests/loopback_watch.py, on socket records (no sockets opened)."""

from __future__ import annotations

import pytest

from tests.loopback_watch import TcpSocket, is_loopback, outside_loopback


@pytest.mark.parametrize("ip, expected", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("127.255.255.254", True), ("::ffff:127.0.0.2", True),
    ("192.0.2.2", False), ("::ffff:192.0.2.2", False), ("fd00::2", False), ("0.0.0.0", False),
])
def test_is_loopback(ip, expected):
    assert is_loopback(ip) is expected


def sock(local, remote=None, status="ESTABLISHED"):
    return TcpSocket(1, "raylet", status if remote else "LISTEN", local, remote)


@pytest.mark.parametrize("socket, leaves", [
    (sock("[::ffff:127.0.0.1]:5000", "[::ffff:127.0.0.2]:6379"), False),
    (sock("127.0.0.1:5000", "127.0.0.1:6000"), False),
    (sock("192.0.2.2:5000", "192.0.2.2:6379"), True),                      # the node address of old
    (sock("[::ffff:127.0.0.1]:5000", "[::ffff:192.0.2.2]:6379"), True),    # one end is enough
    (sock("[fd00::2]:5000", "[fd00::2]:6379"), True),
    (sock("[::]:6379"), False), (sock("0.0.0.0:8265"), False),             # wildcard listeners
    (sock("127.0.0.2:6379"), False),
    (sock("192.0.2.2:6379"), True),                                        # a listener on eth0
])
def test_outside_loopback(socket, leaves):
    assert outside_loopback([socket]) == ([socket] if leaves else [])
