"""Runs trials on threads, at most ``slots`` at once. No Ray here: a trial is any callable, so this
is testable alone. Each trial's own gang is started by ``launch`` on its thread."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional


@dataclass
class Finished:
    key: Any
    result: Any = None
    error: Optional[BaseException] = None
    started: float = 0.0
    ended: float = field(default_factory=time.time)


class TrialThreads:
    def __init__(self, slots: int):
        self.slots = slots
        self.running: Dict[Any, threading.Thread] = {}
        self.done: "queue.Queue[Finished]" = queue.Queue()

    @property
    def free(self) -> int:
        return self.slots - len(self.running)

    def start(self, key: Any, work: Callable[[], Any]) -> None:
        assert self.free > 0, "no free slot"
        started = time.time()

        def body():
            try:
                self.done.put(Finished(key, result=work(), started=started))
            except BaseException as err:  # noqa: BLE001 - reported to the caller, who decides
                self.done.put(Finished(key, error=err, started=started))

        thread = threading.Thread(target=body, name=f"trial-{key}", daemon=True)
        self.running[key] = thread
        thread.start()

    def wait(self, timeout: Optional[float] = None) -> Optional[Finished]:
        """The next trial to finish, or None after ``timeout`` seconds."""
        try:
            finished = self.done.get(timeout=timeout)
        except queue.Empty:
            return None
        self.running.pop(finished.key).join()
        return finished
