"""Addresses for the process-group rendezvous: IPv4 or IPv6, and the interface gloo should use.

Pure functions (no sockets opened here), so each rule is table-testable.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Dict, Iterable, Mapping, Optional

GLOO_IFNAME_ENV = "GLOO_SOCKET_IFNAME"


def is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).version == 6
    except ValueError:
        return False  # a host name: torch resolves it


def address_family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if is_ipv6(host) else socket.AF_INET


def tcp_url(host: str, port: int) -> str:
    """torch.distributed's init_method; an IPv6 address needs brackets (RFC 3986)."""
    return f"tcp://[{host}]:{port}" if is_ipv6(host) else f"tcp://{host}:{port}"


def same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.split("%")[0]) == ipaddress.ip_address(b.split("%")[0])
    except ValueError:
        return False


def interface_for(ip: str, if_addrs: Mapping[str, Iterable]) -> Optional[str]:
    """The name of the interface that carries ``ip`` (``if_addrs`` as psutil.net_if_addrs() gives it)."""
    for name, addrs in if_addrs.items():
        if any(same_ip(addr.address, ip) for addr in addrs):
            return name
    return None


def gloo_socket_ifname(node_ip: str, environ: Mapping[str, str], configured: Optional[str],
                       if_addrs: Mapping[str, Iterable]) -> Dict[str, str]:
    """The environment change for gloo: bind to the interface of the node IP Ray reports.

    Without it gloo binds to whatever the host name resolves to (127.0.1.1 on many Debian-style hosts),
    and a gang spread over machines cannot connect. The user's choice wins: GLOO_SOCKET_IFNAME already
    set on the worker, then cluster.gloo_socket_ifname. Returns {} when nothing should change.
    """
    if environ.get(GLOO_IFNAME_ENV):
        return {}
    name = configured or interface_for(node_ip, if_addrs)
    return {GLOO_IFNAME_ENV: name} if name else {}
