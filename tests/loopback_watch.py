"""Watch the TCP sockets of a set of processes (by PID) and tell which ones leave loopback (127.0.0.0/8).

Sampled in a thread while a test runs: Ray's gRPC connections (GCS, raylets, workers, drivers) live for
the whole run, so a sample every half second sees each of them. Listening sockets are judged apart:
Ray's gRPC servers (GCS, raylet, core workers) bind the wildcard address and Ray 2.60 has no option to
bind them elsewhere; a wildcard listener sends nothing, and every connection to it is checked.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Set

import psutil

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
WILDCARDS = ("0.0.0.0", "::")
SAMPLE_EVERY_S = 0.5


@dataclass(frozen=True)
class TcpSocket:
    pid: int
    process: str
    status: str
    local: str
    remote: Optional[str]  # None for a listener

    def __str__(self) -> str:
        return f"{self.process}[{self.pid}] {self.status} {self.local} -> {self.remote or '*'}"


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8, also written as an IPv4-mapped IPv6 address (::ffff:127.0.0.2, as gRPC reports it)."""
    address = ipaddress.ip_address(ip.split("%")[0])
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address in LOOPBACK


def host(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[0].strip("[]")


def outside_loopback(sockets: Iterable[TcpSocket]) -> List[TcpSocket]:
    """Connections with either end outside 127.0.0.0/8, and listeners bound to a non-loopback address
    (a wildcard listener is allowed: see the module docstring)."""
    bad = []
    for s in sockets:
        if s.remote is None:
            if host(s.local) not in WILDCARDS and not is_loopback(host(s.local)):
                bad.append(s)
        elif not (is_loopback(host(s.local)) and is_loopback(host(s.remote))):
            bad.append(s)
    return bad


def endpoint(addr) -> str:
    return f"[{addr.ip}]:{addr.port}" if ":" in addr.ip else f"{addr.ip}:{addr.port}"


def tcp_sockets(procs: Iterable[psutil.Process]) -> List[TcpSocket]:
    """The TCP sockets these processes hold now (one system-wide read, filtered by PID)."""
    names = {}
    for proc in procs:
        try:
            names[proc.pid] = proc.name()
        except psutil.Error:
            continue
    found = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.pid in names and conn.laddr:
            remote = endpoint(conn.raddr) if conn.raddr else None
            found.append(TcpSocket(conn.pid, names[conn.pid], conn.status, endpoint(conn.laddr), remote))
    return found


class LoopbackWatch:
    """``with LoopbackWatch(find_processes) as watch:`` samples until the block ends; ``watch.seen``."""

    def __init__(self, find_processes: Callable[[], List[psutil.Process]]):
        self.find_processes = find_processes
        self.seen: Set[TcpSocket] = set()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.sample_until_stopped, name="loopback-watch", daemon=True)

    def __enter__(self) -> "LoopbackWatch":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)
        self.sample()  # the last state too

    def sample_until_stopped(self) -> None:
        while not self.stopped.is_set():
            self.sample()
            self.stopped.wait(SAMPLE_EVERY_S)

    def sample(self) -> None:
        self.seen.update(tcp_sockets(self.find_processes()))

    def connections(self) -> List[TcpSocket]:
        return [s for s in self.seen if s.remote is not None]

    def assert_loopback_only(self) -> None:
        """Every connection seen has both ends in 127.0.0.0/8 (and some were seen: the watch worked)."""
        assert self.connections(), "the watch saw no TCP connection of the cluster's processes"
        bad = outside_loopback(self.seen)
        assert not bad, "sockets outside 127.0.0.0/8:\n" + "\n".join(sorted(map(str, bad)))
