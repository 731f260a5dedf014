"""Putting a run's data in Ray's object store once, and mapping it on the workers.

The driver puts every array once (large ones chunk by chunk, each chunk generated,
put and dropped in turn), so the driver never holds the data twice. Workers on a
node map the same read-only shared memory: no copy per worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

import ray

from orchestrator.data.memory import ChunkSource, DataBundle
from orchestrator.data.module import DataInfo


@dataclass
class SharedBundle:
    """What workers receive: the data info and object references (a few bytes, not the data)."""
    info: DataInfo
    refs: Dict[str, List[ray.ObjectRef]] = field(default_factory=dict)
    chunked: Dict[str, bool] = field(default_factory=dict)


def share(bundle: DataBundle) -> SharedBundle:
    shared = SharedBundle(info=bundle.info)
    for name, rows in bundle.arrays.items():
        if isinstance(rows, ChunkSource):
            shared.refs[name] = [ray.put(chunk) for chunk in rows.chunks()]
            shared.chunked[name] = True
        else:
            shared.refs[name] = [ray.put(rows)]
            shared.chunked[name] = False
    return shared


def fetch(shared: SharedBundle) -> DataBundle:
    """On a worker: zero-copy views of the shared arrays (chunk lists stay lists)."""
    arrays = {}
    for name, refs in shared.refs.items():
        values = ray.get(refs)
        arrays[name] = values if shared.chunked[name] else values[0]
    return DataBundle(info=shared.info, arrays=arrays)
