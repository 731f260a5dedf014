"""The search's own record of its trials (trials.json in the sweep dir), written after every change.

Optuna's study drives sampling and pruning; this ledger is what people read and what decides the
budget: trials that were interrupted or could not be placed do not count and run again."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from orchestrator.checkpoint.store import write_atomic

FINAL = ("completed", "pruned", "failed")


@dataclass
class TrialRecord:
    number: int
    params: Dict[str, Any]
    run_dir: str
    status: str = "running"       # running | completed | pruned | failed | interrupted | requeued
    value: Optional[float] = None  # the search metric (best or last, per search.scope)
    metrics: Dict[str, float] = field(default_factory=dict)
    steps: int = 0
    started: float = field(default_factory=time.time)
    ended: Optional[float] = None
    note: str = ""
    warm_gang: bool = False             # its gang was a finished trial's (search.warm_gangs)
    start_s: Optional[float] = None     # trial start: the previous trial's gang use ended -> this one's first step


class Ledger:
    def __init__(self, path: Path, load: bool = True):
        """``load``: continue the records an earlier session left at ``path`` (a resumed search)."""
        self.path = path
        self.trials: Dict[int, TrialRecord] = {}
        if load and path.exists():
            for row in json.loads(path.read_text()):
                self.trials[row["number"]] = TrialRecord(**row)

    def save(self) -> None:
        rows = [asdict(t) for t in sorted(self.trials.values(), key=lambda t: t.number)]
        write_atomic(self.path, json.dumps(rows, indent=1, default=str).encode())

    def put(self, record: TrialRecord) -> None:
        self.trials[record.number] = record
        self.save()

    def finished(self) -> List[TrialRecord]:
        return [t for t in self.trials.values() if t.status in FINAL]

    def mark_unfinished(self, status: str) -> List[TrialRecord]:
        """Trials a previous session left running: they will run again."""
        stale = [t for t in self.trials.values() if t.status == "running"]
        for t in stale:
            t.status, t.note = status, "cut short; queued again"
        self.save()
        return stale
