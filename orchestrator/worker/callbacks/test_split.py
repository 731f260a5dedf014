"""At the end of a run, the best model (by ``checkpoint.monitor``) on the held-out test split."""

from __future__ import annotations

import copy
from typing import Dict

from orchestrator.worker.callbacks.base import Callback
from orchestrator.worker.evaluate import evaluate


class TestEvaluation(Callback):
    __test__ = False  # not a pytest test class

    def __init__(self, best):
        self.best = best  # the BestModel callback: which step was best

    def on_fit_end(self, loop) -> Dict[str, float]:
        c = loop.c
        if c.splits.test is None or loop.stopped_on_request:  # asked to stop (Ctrl-C, pruning): no test
            return {}
        model = c.module
        if loop.best_weights is not None:
            model = copy.deepcopy(c.module)
            model.load_state_dict(loop.best_weights)
        metrics = evaluate(c, c.splits.test, loop.r, loop.state.step, "test", model=model)
        best_step = self.best.tracker.step
        metrics["test/best_step"] = float(best_step if best_step is not None else loop.state.step)
        loop.r.metrics(loop.state.step, metrics)
        return metrics
