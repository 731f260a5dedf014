"""Which way a checkpoint travels (a pure decision, table-tested in tests/test_checkpoint_direct.py).

``direct``: rank 0 writes the file into the checkpoint dir itself and only a small manifest record
travels to the driver, which checks the file is there and commits it (writes the manifest). On
restore, every worker reads the file from storage. ``driver``: the old path, kept for when the driver
cannot see rank 0's files: rank 0 sends the bytes through the run sink and the driver writes them;
on restore the driver reads the file and puts the bytes in the object store for every worker.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Transport:
    save_direct: bool     # rank 0 writes the file itself
    restore_direct: bool  # every worker reads the file from storage itself


def decide_transport(mode: str, dir_explicit: bool, rank0_on_driver_node: bool,
                     all_on_driver_node: bool) -> Transport:
    """``mode`` is checkpoint.transport. An explicit checkpoint.dir is taken to be storage every node
    sees (a shared filesystem or an fsspec URL). The default dir is the driver's local run dir: rank 0
    can write there only when it runs on the driver's node, and every worker can read from it only
    when the whole gang does."""
    if mode == "direct":
        return Transport(save_direct=True, restore_direct=True)
    if mode == "driver":
        return Transport(save_direct=False, restore_direct=False)
    if dir_explicit:
        return Transport(save_direct=True, restore_direct=True)
    return Transport(save_direct=rank0_on_driver_node, restore_direct=all_on_driver_node)
