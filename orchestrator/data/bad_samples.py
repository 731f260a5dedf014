"""Bad samples (a corrupt image, an unreadable row group or shard): fail naming the file, or with
``data.on_bad_sample=skip`` leave them out, count them, and fail once a rank has skipped more than
``data.max_bad_samples``.

A reader that meets a bad sample returns a ``BadSample`` in its place (skip) or raises
``BadDataError`` (fail). ``collate_counted`` drops the markers from a batch and sends their
description along with it (``Counted``), from a DataLoader worker process if there is one, so the
training process counts every skip (``BadSampleCounter``). A skipped sample still uses its place
in the stream: positions, and so exact resume, are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, List, NamedTuple, Optional

from orchestrator.data.module import DataError

POLICIES = ("fail", "skip")


class BadDataError(DataError):
    """A sample that cannot be read or decoded; the message names the file. Restarting cannot fix it."""


@dataclass(frozen=True)
class BadSample:
    source: str       # the file (and member or row group) that failed
    reason: str

    def describe(self) -> str:
        return f"{self.source}: {self.reason}"


class Counted(NamedTuple):
    batch: Any
    bad: List[BadSample]


def bad_sample(on_bad_sample: str, source: str, err: BaseException) -> BadSample:
    """The marker for a sample that failed with ``err`` (skip), or raise naming the file (fail)."""
    reason = f"{type(err).__name__}: {err}"
    if on_bad_sample == "fail":
        raise BadDataError(f"data: cannot read {source}: {reason} (data.on_bad_sample=skip leaves bad samples "
                           "out)") from err
    return BadSample(source, reason)


def collate_counted(collate: Callable) -> Callable[[List], Counted]:
    def collate_good(samples: List) -> Counted:
        good = [s for s in samples if not isinstance(s, BadSample)]
        bad = [s for s in samples if isinstance(s, BadSample)]
        if not good:
            raise BadDataError(f"data: every sample of a batch was bad, e.g. {bad[0].describe()}")
        return Counted(collate(good), bad)
    return collate_good


class BadSampleCounter:
    """This rank's skipped samples; raises once there are more than ``limit``."""

    def __init__(self, limit: int):
        self.limit = limit
        self.count = 0
        self.last: Optional[BadSample] = None

    def unwrap(self, batches: Iterable) -> Iterator:
        for item in batches:
            if isinstance(item, Counted):
                self.add(item.bad)
                yield item.batch
            else:
                yield item

    def add(self, bad: List[BadSample]) -> None:
        if not bad:
            return
        self.count += len(bad)
        self.last = bad[-1]
        if self.count > self.limit:
            raise BadDataError(f"data: {self.count} bad samples skipped on this rank, more than "
                               f"data.max_bad_samples={self.limit}; the last: {self.last.describe()}")
