"""Rendezvous addresses: IPv6 brackets, the free-port probe's address family, gloo's interface."""

from __future__ import annotations

import socket
from collections import namedtuple

import pytest

from orchestrator.worker import network
from orchestrator.worker.actor import Worker

Addr = namedtuple("Addr", "family address netmask broadcast ptp")
IF_ADDRS = {
    "lo": [Addr(socket.AF_INET, "127.0.0.1", None, None, None), Addr(socket.AF_INET6, "::1", None, None, None)],
    "eth0": [Addr(socket.AF_INET, "10.1.2.3", None, None, None),
             Addr(socket.AF_INET6, "fd00::2", None, None, None),
             Addr(socket.AF_INET6, "fe80::1%eth0", None, None, None)],
    "ib0": [Addr(socket.AF_INET, "192.168.7.9", None, None, None)],
}


def ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("host, url", [
    ("10.1.2.3", "tcp://10.1.2.3:29500"),
    ("fd00::2", "tcp://[fd00::2]:29500"),
    ("::1", "tcp://[::1]:29500"),
    ("fe80::1%eth0", "tcp://[fe80::1%eth0]:29500"),
    ("node-7.cluster", "tcp://node-7.cluster:29500"),
])
def test_rendezvous_url_brackets_ipv6_only(host, url):
    assert network.tcp_url(host, 29500) == url


@pytest.mark.parametrize("host, family", [("10.1.2.3", socket.AF_INET), ("fd00::2", socket.AF_INET6),
                                          ("::1", socket.AF_INET6), ("node-7", socket.AF_INET)])
def test_address_family(host, family):
    assert network.address_family(host) == family


@pytest.mark.parametrize("ip, name", [("10.1.2.3", "eth0"), ("fd00:0::2", "eth0"), ("192.168.7.9", "ib0"),
                                      ("127.0.0.1", "lo"), ("fe80::1", "eth0"), ("10.9.9.9", None)])
def test_interface_that_carries_the_node_ip(ip, name):
    assert network.interface_for(ip, IF_ADDRS) == name


@pytest.mark.parametrize("environ, configured, expected", [
    ({}, None, {"GLOO_SOCKET_IFNAME": "ib0"}),                        # the node IP's interface
    ({}, "eth0", {"GLOO_SOCKET_IFNAME": "eth0"}),                     # cluster.gloo_socket_ifname
    ({"GLOO_SOCKET_IFNAME": "bond0"}, "eth0", {}),                    # set on the node: kept
])
def test_gloo_interface_choice(environ, configured, expected):
    assert network.gloo_socket_ifname("192.168.7.9", environ, configured, IF_ADDRS) == expected


def test_gloo_interface_unknown_ip_changes_nothing():
    assert network.gloo_socket_ifname("10.9.9.9", {}, None, IF_ADDRS) == {}


def test_free_port_ipv4_is_bindable():
    port = Worker(0, 1).free_port("127.0.0.1")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback (::1) on this machine")
def test_free_port_for_an_ipv6_address_is_an_ipv6_port_and_the_store_listens_there():
    from datetime import timedelta

    import torch.distributed as dist

    port = Worker(0, 1).free_port("::1")
    store = dist.TCPStore("::1", port, world_size=1, is_master=True, timeout=timedelta(seconds=10))
    store.set("k", "v")
    assert store.get("k") == b"v"
    with socket.create_connection(("::1", port), timeout=5):
        pass  # the rendezvous port is reachable over IPv6
