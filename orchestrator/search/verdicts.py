"""Pruning verdicts that reach the workers before their next step.

Without this, a pruned trial trains on for 1-3 s: the driver drains the run's records once a second
and the workers read the stop at their next metrics flush. With a pruner, rank 0 instead asks for the
verdict on each validation right after it (``VerdictChannel.ask``, a bounded wait) and every rank then
takes part in the collective stop vote (``worker/callbacks/pruning.py``); a pruned trial stops at the
step of the validation that pruned it.

    rank 0 --ask(trial, step, metrics)--> VerdictBox (actor, one per search) <--next/answer-- Referee thread
                                                                                    (the driver: the trial's pruner)

The box is a threaded actor on the driver's node: ``ask`` blocks (bounded) until the referee thread
answers, which it does as soon as the question arrives, not at the next poll.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

# How long rank 0 waits for a verdict (the driver answers in milliseconds; past this the gang goes on
# and a prune still arrives through the slower stop request).
VERDICT_WAIT_S = 3.0
REFEREE_POLL_S = 1.0   # how long one ``next_questions`` call blocks when no validation comes
BOX_CONCURRENCY = 16   # concurrent trials' questions, plus the referee's calls

# (step, validation metrics) -> prune? Called on the driver, once per validation.
Judge = Callable[[int, Dict[str, float]], bool]
Question = Tuple[int, int, Dict[str, float]]  # (trial key, step, metrics)


@dataclass(frozen=True)
class VerdictChannel:
    """What rank 0 of one trial gets in its AttemptArgs: where to ask, for which trial, on which metric."""
    box: Any                 # the search's VerdictBox actor
    key: int                 # the trial
    metric: str              # the pruner's metric: validations without it are not asked about
    wait_s: float = VERDICT_WAIT_S

    def ask(self, step: int, metrics: Dict[str, float]) -> Optional[bool]:
        """Prune now? None: no verdict in time (or the driver is gone)."""
        import ray

        try:
            return ray.get(self.box.ask.remote(self.key, step, dict(metrics), self.wait_s),
                           timeout=self.wait_s + 5.0)
        except Exception:  # noqa: BLE001 - a missing verdict never stops training
            return None


class VerdictBox:
    """A plain class; ``Referee`` makes it a threaded Ray actor (questions wait on their own threads)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.questions: deque = deque()
        self.waiting: set = set()
        self.answers: Dict[Tuple[int, int], bool] = {}

    def ask(self, key: int, step: int, metrics: Dict[str, float], wait_s: float) -> Optional[bool]:
        deadline = time.monotonic() + wait_s
        with self.cond:
            self.questions.append((key, step, metrics))
            self.waiting.add((key, step))
            self.cond.notify_all()
            while (key, step) not in self.answers and time.monotonic() < deadline:
                self.cond.wait(deadline - time.monotonic())
            self.waiting.discard((key, step))
            return self.answers.pop((key, step), None)

    def next_questions(self, wait_s: float) -> List[Question]:
        with self.cond:
            self.cond.wait_for(lambda: bool(self.questions), timeout=wait_s)
            questions, self.questions = list(self.questions), deque()
            return questions

    def answer(self, key: int, step: int, prune: bool) -> None:
        with self.cond:
            if (key, step) in self.waiting:  # a late answer to a question that gave up is dropped
                self.answers[(key, step)] = prune
                self.cond.notify_all()


class Referee:
    """The driver's side: one box and one thread for a search; each trial with a pruner registers its judge."""

    def __init__(self):
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        self.box = ray.remote(VerdictBox).options(
            num_cpus=0, max_concurrency=BOX_CONCURRENCY,
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()
        self.judges: Dict[int, Judge] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve, name="prune-referee", daemon=True)
        self.thread.start()

    def channel(self, key: int, metric: str, judge: Judge) -> VerdictChannel:
        with self.lock:
            self.judges[key] = judge
        return VerdictChannel(self.box, key, metric)

    def forget(self, key: int) -> None:
        with self.lock:
            self.judges.pop(key, None)

    def serve(self) -> None:
        import ray

        while not self.stopped.is_set():
            try:
                questions = ray.get(self.box.next_questions.remote(REFEREE_POLL_S), timeout=REFEREE_POLL_S + 30)
            except Exception:  # noqa: BLE001 - the box is gone (the search is ending) or slow: try again
                self.stopped.wait(REFEREE_POLL_S)
                continue
            for key, step, metrics in questions:
                self.box.answer.remote(key, step, self.judge(key, step, metrics))

    def judge(self, key: int, step: int, metrics: Dict[str, float]) -> bool:
        with self.lock:
            judge = self.judges.get(key)
        try:
            return bool(judge(step, metrics)) if judge is not None else False
        except Exception:  # noqa: BLE001 - a pruner error must not stop the trial; the slow path still asks
            return False

    def close(self) -> None:
        import ray

        self.stopped.set()
        self.thread.join(timeout=REFEREE_POLL_S + 5)
        try:
            ray.kill(self.box)
        except Exception:  # noqa: BLE001 - already gone with the session
            pass
