"""Is the run input-bound? A pure decision over the ranks' data-wait shares, and the advice it gives.

Every flush (about a second) the driver gets ``worker/<rank>/data_wait_pct``: the share of each
rank's step time spent waiting for its next batch. A rank whose wait stays above
``health.input_bound_pct`` over ``health.input_bound_window_s`` of consecutive observations makes
the detector warn, once. It warns again only after the run has been calm (no rank above the
threshold) for a full window too, so a wait that hovers around the threshold does not repeat the
warning every few seconds. Time is whatever clock the caller feeds in (the tests feed numbers).

Above ``trainer.per_rank_metrics_up_to`` ranks there are no per-rank waits, only their distribution:
the detector then follows the most-waiting rank, whichever it is (``workers/data_wait_pct/max``),
as one streak, and the warning names the rank that waited most in the latest flush.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Union

from orchestrator import config as C
from orchestrator.components.models import setting
from orchestrator.worker.rank_metrics import DATA_WAIT_MAX, MOST_WAITING_RANK

WAIT_KEY = re.compile(r"^worker/(\d+)/data_wait_pct$")
MAX_RANKS_NAMED = 4  # beyond this the message counts the other ranks instead of listing them
TAG = "data/input_bound"  # 1 when the warning starts, 0 when the run is calm again
MOST_WAITING = -1  # the streak key above per_rank_metrics_up_to ranks: the most-waiting rank, whichever


@dataclass(frozen=True)
class InputBound:
    """Warn: these ranks stayed above the threshold for the whole window."""
    waits: Dict[int, float]  # rank -> mean data wait (%) over its time above the threshold
    span_s: float            # how long the worst rank has been above it


@dataclass(frozen=True)
class Calm:
    """After a warning: no rank above the threshold for a whole window."""


Verdict = Union[InputBound, Calm, None]


@dataclass
class Streak:
    """A rank's consecutive observations above the threshold."""
    since: float
    last: float
    total: float = 0.0
    count: int = 0

    def add(self, time_s: float, pct: float) -> None:
        self.last, self.total, self.count = time_s, self.total + pct, self.count + 1

    @property
    def span_s(self) -> float:
        return self.last - self.since

    @property
    def mean(self) -> float:
        return self.total / self.count


@dataclass
class InputBoundDetector:
    threshold_pct: float
    window_s: float
    streaks: Dict[int, Streak] = field(default_factory=dict)
    warned: bool = False
    calm_since: Optional[float] = None  # after a warning: since when no rank has been above

    def observe(self, time_s: float, waits: Mapping[int, float]) -> Verdict:
        """One flush's data-wait shares by rank (a rank missing from it keeps its streak)."""
        if self.threshold_pct <= 0:
            return None
        for rank, pct in waits.items():
            self.update_streak(rank, time_s, pct)
        return self.after_warning(time_s) if self.warned else self.before_warning()

    def update_streak(self, rank: int, time_s: float, pct: float) -> None:
        if not (math.isfinite(pct) and pct > self.threshold_pct):
            self.streaks.pop(rank, None)
            return
        self.streaks.setdefault(rank, Streak(since=time_s, last=time_s)).add(time_s, pct)

    def before_warning(self) -> Verdict:
        long_enough = {rank: s for rank, s in self.streaks.items() if s.span_s >= self.window_s}
        if not long_enough:
            return None
        self.warned, self.calm_since = True, None
        worst_first = sorted(long_enough, key=lambda rank: -long_enough[rank].mean)
        return InputBound(waits={rank: long_enough[rank].mean for rank in worst_first},
                          span_s=max(s.span_s for s in long_enough.values()))

    def after_warning(self, time_s: float) -> Verdict:
        if self.streaks:
            self.calm_since = None
            return None
        if self.calm_since is None:
            self.calm_since = time_s
        if time_s - self.calm_since < self.window_s:
            return None
        self.warned, self.calm_since = False, None
        return Calm()


def data_waits(values: Mapping[str, float]) -> Dict[int, float]:
    """worker/<rank>/data_wait_pct scalars of one metrics record, by rank; for a large gang, the
    highest wait across ranks under the key MOST_WAITING."""
    waits = {}
    for key, value in values.items():
        match = WAIT_KEY.match(key)
        if match:
            waits[int(match.group(1))] = float(value)
    if not waits and DATA_WAIT_MAX in values:
        waits[MOST_WAITING] = float(values[DATA_WAIT_MAX])
    return waits


# ----------------------------------------------------------------------------- advice
@dataclass(frozen=True)
class LoaderKnobs:
    """The data section's loading settings, as the run has them (for the advice)."""
    num_workers: int = 0
    prefetch_factor: Optional[int] = None
    pin_memory: Optional[bool] = None
    device: str = "auto"

    @classmethod
    def from_config(cls, cfg: C.Config) -> "LoaderKnobs":
        return cls(num_workers=setting(cfg.data, "num_workers", 0),
                   prefetch_factor=setting(cfg.data, "prefetch_factor", None),
                   pin_memory=setting(cfg.data, "pin_memory", None), device=cfg.trainer.device)


def advice(bound: InputBound, knobs: LoaderKnobs, most_waiting: Optional[int] = None) -> str:
    """One line: which ranks waited how much, and which settings to raise."""
    named = [f"{rank_text(rank, most_waiting)} waited {pct:.0f}%"
             for rank, pct in list(bound.waits.items())[:MAX_RANKS_NAMED]]
    more = len(bound.waits) - len(named)
    ranks = ", ".join(named) + (f" (and {more} more ranks)" if more > 0 else "")
    prefetch = knobs.prefetch_factor if knobs.prefetch_factor is not None else "2, torch's default"
    knob_text = f"raise data.num_workers (now {knobs.num_workers})"
    knob_text += (f" or data.prefetch_factor (now {prefetch})" if knobs.num_workers > 0
                  else ", then data.prefetch_factor")
    if knobs.pin_memory is False and knobs.device != "cpu":
        knob_text += "; on GPU set data.pin_memory=true"
    return (f"input-bound: {ranks} of each step for data over the last {bound.span_s:.0f} s; {knob_text}")


def rank_text(rank: int, most_waiting: Optional[int]) -> str:
    if rank != MOST_WAITING:
        return f"rank {rank}"
    now = f", rank {most_waiting} in the latest flush" if most_waiting is not None else ""
    return f"the most-waiting rank{now},"


# ----------------------------------------------------------------------------- what the recorder uses
@dataclass(frozen=True)
class Notice:
    value: float                  # for the TAG scalar
    message: Optional[str] = None  # a warning to show and keep, if any


@dataclass
class InputBoundMonitor:
    """The detector fed from metrics records, its verdicts turned into what the recorder writes."""
    detector: InputBoundDetector
    knobs: LoaderKnobs

    @classmethod
    def from_config(cls, cfg: C.Config) -> Optional["InputBoundMonitor"]:
        health = cfg.health
        if health.input_bound_pct <= 0:
            return None
        return cls(InputBoundDetector(health.input_bound_pct, health.input_bound_window_s),
                   LoaderKnobs.from_config(cfg))

    def observe(self, time_s: float, values: Mapping[str, float]) -> Optional[Notice]:
        waits = data_waits(values)
        if not waits:
            return None
        verdict = self.detector.observe(time_s, waits)
        if isinstance(verdict, InputBound):
            most_waiting = int(values[MOST_WAITING_RANK]) if MOST_WAITING_RANK in values else None
            return Notice(1.0, advice(verdict, self.knobs, most_waiting))
        if isinstance(verdict, Calm):
            return Notice(0.0)
        return None
