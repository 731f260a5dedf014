"""Warm gangs and prompt pruning verdicts, the pure parts: which idle gang a trial may reuse, when a
gang goes back to the pool, the pool's bookkeeping (with fake gangs), the verdict box's hand-over
between rank 0 and the driver, and the trial start time."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from orchestrator import config as C
from orchestrator.composition import compose
from orchestrator.driver.gang_pool import GangPool, GangShape, plan_take, reusable, warm_gangs
from orchestrator.search.decisions import trial_start_s
from orchestrator.search.verdicts import VerdictBox
from orchestrator.search.watch import TrialWatch

BASE = GangShape(size=2, cpus_per_worker=1.0, gpus_per_worker=0, placement_strategy="PACK", use_gpus=True,
                 collective_timeout_s=300.0, cluster="{}")


def other(**changes) -> GangShape:
    return dataclasses.replace(BASE, **changes)


@pytest.mark.parametrize("idle, wanted, expected", [
    ([], BASE, (None, [])),                                      # nothing idle: start a gang
    ([BASE], BASE, (0, [])),                                     # the same shape: reuse it
    ([other(size=4), BASE], BASE, (1, [])),                      # the matching one, others stay
    ([other(size=4)], BASE, (None, [0])),                        # a miss lets idle gangs go (their resources)
    ([other(cpus_per_worker=2.0)], BASE, (None, [0])),
    ([other(gpus_per_worker=1)], BASE, (None, [0])),
    ([other(use_gpus=False)], BASE, (None, [0])),
    ([other(placement_strategy="SPREAD")], BASE, (None, [0])),
    ([other(collective_timeout_s=60.0)], BASE, (None, [0])),     # fixed when the process group formed
    ([other(cluster="{'gloo_socket_ifname': 'eth1'}")], BASE, (None, [0])),
    ([other(spares=1), other(size=3)], BASE, (None, [0, 1])),
])
def test_a_trial_reuses_only_an_idle_gang_of_its_exact_shape(idle, wanted, expected):
    assert plan_take(idle, wanted) == expected


@pytest.mark.parametrize("finished_cleanly, pool_open, expected", [
    (True, True, True), (False, True, False), (True, False, False), (False, False, False)])
def test_only_a_cleanly_finished_gang_goes_back_to_an_open_pool(finished_cleanly, pool_open, expected):
    assert reusable(finished_cleanly, pool_open) is expected


def test_the_shape_follows_what_a_gang_is_started_with_and_ignores_the_rest():
    base = GangShape.of(compose(["model=mlp"]), 2)
    assert GangShape.of(compose(["model=cnn", "optimizer.lr=0.5", "trainer.seed=3"]), 2) == base
    assert GangShape.of(compose(["model=mlp"]), 1) != base
    assert GangShape.of(compose(["model=mlp", "scaling.cpus_per_worker=2"]), 2) != base
    assert GangShape.of(compose(["model=mlp", "trainer.device=cpu"]), 2) != base
    assert GangShape.of(compose(["model=mlp", "failure.collective_timeout_s=77"]), 2) != base


class FakeGang:
    def __init__(self, alive: bool = True):
        self.alive, self.shut = alive, 0

    def shutdown(self) -> None:
        self.shut += 1


class FakePool(GangPool):
    def answers(self, group) -> bool:  # the real one polls the workers over Ray
        return group.alive


def test_the_pool_hands_a_gang_back_once_and_shuts_down_what_it_cannot_use():
    pool = FakePool()
    first, failed, dead = FakeGang(), FakeGang(), FakeGang(alive=False)
    assert pool.give(BASE, first, finished_cleanly=True) is True
    assert pool.give(BASE, failed, finished_cleanly=False) is False and failed.shut == 1
    assert pool.take(BASE) is first and first.shut == 0
    assert pool.take(BASE) is None, "a gang is handed out once"
    pool.give(BASE, dead, finished_cleanly=True)
    assert pool.take(BASE) is None and dead.shut == 1, "a gang whose workers died while idle is not reused"
    small = FakeGang()
    pool.give(other(size=1), small, finished_cleanly=True)
    assert pool.take(BASE) is None and small.shut == 1, "a miss frees the idle gang of another shape"
    assert pool.reused == 1


def test_a_closed_pool_shuts_down_its_idle_gangs_and_every_gang_handed_back_later():
    idle, late = FakeGang(), FakeGang()
    with warm_gangs(True) as pool:
        pool.give(BASE, idle, finished_cleanly=True)
    assert idle.shut == 1 and not pool.idle
    assert pool.give(BASE, late, finished_cleanly=True) is False and late.shut == 1
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the middle of a search still closes it
        with warm_gangs(True) as pool:
            gang = FakeGang()
            pool.give(BASE, gang, finished_cleanly=True)
            raise KeyboardInterrupt
    assert gang.shut == 1
    with warm_gangs(False) as pool:
        assert pool is None


@pytest.mark.parametrize("previous_end, first_step, expected", [
    (None, 10.0, None), (10.0, None, None), (10.0, 10.25, 0.25), (10.0, 9.0, 0.0)])
def test_trial_start_is_measured_from_the_previous_gang_end(previous_end, first_step, expected):
    assert trial_start_s(previous_end, first_step) == expected


def ask_on_thread(box: VerdictBox, key: int, step: int, wait_s: float):
    answer = {}
    thread = threading.Thread(target=lambda: answer.setdefault("v", box.ask(key, step, {"val/loss": 1.0}, wait_s)))
    thread.start()
    return thread, answer


def test_the_verdict_box_returns_the_drivers_answer_to_the_question_asked():
    box = VerdictBox()
    thread, answer = ask_on_thread(box, key=3, step=20, wait_s=10.0)
    assert box.next_questions(wait_s=10.0) == [(3, 20, {"val/loss": 1.0})]
    box.answer(3, 19, True)   # another step's answer is not this question's
    box.answer(3, 20, True)
    thread.join(timeout=10.0)
    assert answer["v"] is True


def test_an_unanswered_question_gives_up_and_a_late_answer_is_dropped():
    box = VerdictBox()
    started = time.monotonic()
    thread, answer = ask_on_thread(box, key=1, step=5, wait_s=0.2)
    thread.join(timeout=10.0)
    assert answer["v"] is None and time.monotonic() - started < 5.0
    box.answer(1, 5, True)
    assert box.answers == {}
    assert box.next_questions(wait_s=0.0) == [(1, 5, {"val/loss": 1.0})]
    assert box.next_questions(wait_s=0.0) == []


class FakeStop:
    def __init__(self):
        self.reasons = []

    def request(self, reason: str) -> None:
        self.reasons.append(reason)

    @property
    def requested(self) -> bool:
        return bool(self.reasons)


def test_the_pruner_is_asked_once_per_validation_although_it_arrives_twice():
    asked = []

    def should_prune(step, value):
        asked.append(step)
        return step >= 20

    stop = FakeStop()
    watch = TrialWatch(C.SearchConfig(metric="val/loss", direction="min"), stop, should_prune=should_prune)
    assert watch.verdict(10, {"val/loss": 0.5}) is False   # rank 0's question
    watch(10, {"val/loss": 0.5})                           # the same validation, with the run's records
    watch(15, {"train/loss": 0.1})                         # not the metric: not a validation to judge
    assert watch.verdict(20, {"val/loss": 0.7}) is True
    watch(20, {"val/loss": 0.7})
    assert asked == [10, 20] and watch.pruned_at == 20 and len(stop.reasons) == 1
    assert watch.best == 0.5 and watch.last == 0.7
