"""Hang detection from heartbeats (pure: fed with observations, asked at a time)."""

from __future__ import annotations

from typing import Dict, List, Optional

# Phases in which every unit of work (a step, an evaluation batch) reports progress: a stall shows
# within hang_timeout_s. Every other phase (start-up, build, restore, first step, checkpoint, saving)
# is one long piece of work; its heartbeat is kept alive for up to failure.phase_timeout_s.
UNIT_PHASES = frozenset({"train", "validate", "test"})
FINAL_PHASES = frozenset({"done"})


def phase_kept_alive(phase: str, elapsed_s: float, bound_s: float) -> bool:
    """Whether a worker's keepalive should count as progress: in a long phase, within its bound."""
    return phase not in UNIT_PHASES and phase not in FINAL_PHASES and elapsed_s < bound_s


class Watchdog:
    """The gang hangs when no rank's progress counter moved for ``timeout_s``.

    A rank that trains or validates advances its counter per step or batch; in a
    long phase (build, restore, first step, checkpoint) its keepalive advances it
    until the phase's own bound (``phase_kept_alive``). A rank blocked in a
    collective or stalled does not. Polls that time out count as no progress.
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
