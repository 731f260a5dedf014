"""A split stored as shards, streamed by each rank in its own part (``plan.py`` says which):
a ``torch.utils.data.IterableDataset`` per epoch that yields whole, collated batches, in
DataLoader worker processes when ``data.num_workers`` > 0, with bounded memory (one shuffle block
of raw samples and the loader's prefetch), whatever the size of the data.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Callable, Iterator, Protocol

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from orchestrator.data.bad_samples import BadSample, bad_sample, collate_counted
from orchestrator.data.streaming import plan as P


class ShardReader(Protocol):
    """A format: the samples of one shard in stored order, from sample ``start`` on (raw: cheap to keep
    in a shuffle block), and how one raw sample becomes a training sample. A failure in ``decode``
    is one bad sample; a failure in ``read`` loses the rest of the shard."""

    def read(self, url: str, start: int) -> Iterator[Any]: ...

    def decode(self, raw: Any) -> Any: ...

    def describe(self, url: str, raw: Any) -> str: ...


class StreamSettings:
    """How a split is streamed: the reader, the shuffle, what to do with bad samples."""

    def __init__(self, reader: ShardReader, collate: Callable, shuffle_block: int = 256,
                 on_bad_sample: str = "fail"):
        self.reader, self.collate = reader, collate
        self.shuffle_block, self.on_bad_sample = shuffle_block, on_bad_sample


class ShardStream(IterableDataset):
    """One epoch of one rank's stream (``batches_done`` batches in, when resuming)."""

    def __init__(self, index: P.ShardIndex, settings: StreamSettings, layout: P.Layout, order: P.Order,
                 rank: int, batches_done: int = 0):
        self.index, self.settings, self.layout, self.order = index, settings, layout, order
        self.rank, self.batches_done = rank, batches_done

    def __iter__(self) -> Iterator:
        info = get_worker_info()
        slot = P.slot_plan(self.index, self.layout, self.order, self.rank, info.id if info else 0,
                           self.batches_done)
        samples = self.slot_samples(slot)
        collate = collate_counted(self.settings.collate)
        for _ in range(slot.batches):
            chunk = list(islice(samples, self.layout.batch_size))
            if len(chunk) < self.layout.batch_size:
                raise RuntimeError(f"shard index out of date: a reader on rank {self.rank} ran out of samples "
                                   f"after {len(chunk)} of a batch (files changed since the run started?)")
            yield collate(chunk)

    def slot_samples(self, slot: P.SlotPlan) -> Iterator:
        for position in range(slot.start_shard, len(slot.shards)):
            shard = slot.shards[position]
            offset = slot.start_offset if position == slot.start_shard else 0
            yield from self.shard_samples(shard, offset)

    def shard_samples(self, shard: int, offset: int) -> Iterator:
        """Shard ``shard``'s samples from ``offset`` on, each block of ``shuffle_block`` raw samples in
        an order fixed by (seed, epoch, shard, block), so a resumed reader finds the same order."""
        block = max(1, self.settings.shuffle_block) if self.order.shuffle else 1
        first = offset // block
        raws = self.raw_samples(shard, first * block)
        for number in range(first, -(-self.index.counts[shard] // block)):
            chunk = list(islice(raws, block))
            if block > 1:
                rng = np.random.default_rng([self.order.seed, self.order.epoch, shard, number])
                chunk = [chunk[i] for i in rng.permutation(len(chunk))]
            skip = offset - first * block if number == first else 0
            for raw in chunk[skip:]:
                yield self.decoded(shard, raw)

    def raw_samples(self, shard: int, start: int) -> Iterator:
        """The stored samples from ``start`` on; if the shard fails part-way (a truncated file), the
        rest of its places are bad samples, so every reader still fills its batches."""
        url, reader = self.index.urls[shard], self.settings.reader
        produced = start
        try:
            for raw in reader.read(url, start):
                produced += 1
                yield raw
        except Exception as err:  # noqa: BLE001 - any reader failure is this file's problem
            marker = bad_sample(self.settings.on_bad_sample, f"{url} after sample {produced}", err)
            for _ in range(self.index.counts[shard] - produced):
                yield marker

    def decoded(self, shard: int, raw: Any) -> Any:
        if isinstance(raw, BadSample):
            return raw  # the rest of an unreadable shard
        try:
            return self.settings.reader.decode(raw)
        except Exception as err:  # noqa: BLE001
            return bad_sample(self.settings.on_bad_sample,
                              self.settings.reader.describe(self.index.urls[shard], raw), err)


class EvalStream(IterableDataset):
    """Validation or test: every sample exactly once across ranks (rank r of N reads shards r, r + N,
    ...; ranks may get different numbers of batches, as map-style evaluation allows), in stored order."""

    def __init__(self, index: P.ShardIndex, settings: StreamSettings, rank: int, world_size: int,
                 batch_size: int):
        self.index, self.settings = index, settings
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size

    def __iter__(self) -> Iterator:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        readers = self.world_size * workers
        reader = worker * self.world_size + self.rank
        layout = P.Layout(self.world_size, 0, self.batch_size)
        stream = ShardStream(self.index, self.settings, layout, P.Order(shuffle=False), self.rank)
        samples = (s for j in range(reader, len(self.index), readers) for s in stream.shard_samples(j, 0))
        collate = collate_counted(self.settings.collate)
        while True:
            chunk = list(islice(samples, self.batch_size))
            if not chunk:
                return
            yield collate(chunk)
