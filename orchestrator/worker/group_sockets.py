"""The TCP connections a gloo process group opened, so a rank that saw a collective fail can close them.

With gloo, only the ranks that were exchanging data with a dead peer see the failure; the others wait for
data from a rank that has raised but whose process, and so its sockets, lives on: neither destroying nor
aborting a gloo group closes them (torch 2.13), so they would wait until the collective timeout. A rank
that raised shuts its group's connections down: each peer waiting on it gets "connection closed" at once,
and raises in turn (the failure reaches every rank in about a second instead of minutes).

Which connections are the group's: the established TCP connections that appeared while this rank joined
(gloo connects its full mesh, and the store its clients, inside ``init_process_group``). Each is shut down
only if the same descriptor still joins the same two addresses, so a descriptor number reused since (by
Ray, say) is never touched.
"""

from __future__ import annotations

import os
import socket
from typing import FrozenSet, Tuple

Connection = Tuple[int, tuple, tuple]  # (fd, local address, remote address)


def established() -> FrozenSet[Connection]:
    import psutil

    return frozenset((c.fd, tuple(c.laddr), tuple(c.raddr)) for c in psutil.Process().net_connections(kind="tcp")
                     if c.fd != -1 and c.raddr and c.status == psutil.CONN_ESTABLISHED)


class GroupSockets:
    def __init__(self):
        self.before: FrozenSet[Connection] = frozenset()
        self.mine: FrozenSet[Connection] = frozenset()

    def joining(self) -> None:
        self.before = established()

    def joined(self) -> None:
        self.mine = established() - self.before

    def shut_down(self) -> int:
        """Shut down (both directions) each of the group's connections that is still what it was; returns how many."""
        still = self.mine & established()
        for fd, _, _ in still:
            try:
                duplicate = socket.socket(fileno=os.dup(fd))  # shutdown acts on the connection, not the descriptor
                duplicate.shutdown(socket.SHUT_RDWR)
                duplicate.close()
            except OSError:
                pass
        self.mine = frozenset()
        return len(still)
