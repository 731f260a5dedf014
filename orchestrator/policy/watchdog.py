"""Hang detection from heartbeats (pure: fed with observations, asked at a time)."""

from __future__ import annotations

from typing import Dict, List, Optional


class Watchdog:
    """The gang hangs when no rank's progress counter moved for ``timeout_s``.

    A rank that trains, validates or checkpoints advances its counter; a rank
    blocked in a collective or stalled does not. Polls that time out count as
    no progress.
    """

    def __init__(self, timeout_s: float, now: float):
        self.timeout_s = timeout_s
        self.progress: Dict[int, int] = {}
        self.last_change: Dict[int, float] = {}
        self.gang_last_change = now

    def observe(self, rank: int, progress: int, now: float) -> None:
        if self.progress.get(rank) != progress:
            self.progress[rank] = progress
            self.last_change[rank] = now
            self.gang_last_change = now

    def hung(self, now: float) -> bool:
        return now - self.gang_last_change > self.timeout_s

    def stalest(self, ranks: List[int], now: float) -> List[int]:
        """Ranks ordered from the longest without progress (the likely culprits first)."""
        return sorted(ranks, key=lambda r: self.last_change.get(r, float("-inf")))

    def idle_for(self, rank: int, now: float) -> Optional[float]:
        changed = self.last_change.get(rank)
        return None if changed is None else now - changed
