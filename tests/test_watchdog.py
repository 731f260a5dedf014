"""Hang detection: the gang hangs only when no rank made progress for the whole timeout."""

from __future__ import annotations

import pytest

from orchestrator.policy.watchdog import Watchdog, phase_kept_alive
from orchestrator.worker.reporting import Reporter


def test_no_hang_while_any_rank_progresses():
    w = Watchdog(timeout_s=10, now=0.0)
    w.observe(0, 5, now=0.0)  # rank 0 is stuck at 5 from here on
    for t in range(0, 61, 3):
        w.observe(0, 5, now=float(t))
        w.observe(1, t, now=float(t))  # rank 1 keeps moving
        assert not w.hung(now=float(t) + 9.0)
    assert w.idle_for(0, now=60.0) == 60.0


def test_hang_after_the_timeout_without_progress():
    w = Watchdog(timeout_s=10, now=0.0)
    w.observe(0, 1, now=2.0)
    w.observe(1, 1, now=3.0)
    for t in (4.0, 8.0, 12.0):  # polls that see the same counters are not progress
        w.observe(0, 1, now=t)
        w.observe(1, 1, now=t)
    assert not w.hung(now=13.0)
    assert w.hung(now=13.01)


def test_hang_when_nothing_was_ever_observed():
    w = Watchdog(timeout_s=5, now=100.0)
    assert not w.hung(now=105.0)
    assert w.hung(now=105.5)


def test_progress_resets_the_clock():
    w = Watchdog(timeout_s=10, now=0.0)
    w.observe(0, 1, now=0.0)
    assert w.hung(now=11.0)
    w.observe(0, 2, now=11.0)
    assert not w.hung(now=20.0)
    assert w.hung(now=21.5)


def test_a_counter_going_backwards_is_still_a_change():
    # A restarted phase may report a lower counter; it moved, so the rank is alive.
    w = Watchdog(timeout_s=10, now=0.0)
    w.observe(0, 7, now=0.0)
    w.observe(0, 3, now=9.0)
    assert not w.hung(now=18.0)


def test_stalest_orders_never_seen_first_then_longest_idle():
    w = Watchdog(timeout_s=10, now=0.0)
    w.observe(0, 1, now=5.0)
    w.observe(1, 1, now=2.0)
    w.observe(3, 1, now=8.0)
    w.observe(1, 1, now=9.0)  # no change: rank 1 is still idle since 2.0
    assert w.stalest([0, 1, 2, 3], now=10.0) == [2, 1, 0, 3]
    assert w.idle_for(1, now=10.0) == 8.0
    assert w.idle_for(2, now=10.0) is None


@pytest.mark.parametrize("ranks", [[0, 1, 2, 3], [3, 2, 1, 0]])
def test_stalest_does_not_depend_on_the_order_ranks_are_given(ranks):
    w = Watchdog(timeout_s=1, now=0.0)
    for rank, t in zip([0, 1, 2, 3], [4.0, 1.0, 3.0, 2.0]):
        w.observe(rank, 1, now=t)
    assert w.stalest(ranks, now=5.0) == [1, 3, 2, 0]


# ----------------------------------------------------------------------------- long phases (keepalive)
@pytest.mark.parametrize("phase,elapsed,alive", [
    ("build", 5.0, True), ("restore", 5.0, True), ("first_step", 5.0, True), ("checkpoint", 5.0, True),
    ("saving", 5.0, True), ("starting", 5.0, True),
    ("build", 10.0, False),                                   # past its own bound: now it may look hung
    ("train", 0.0, False), ("validate", 0.0, False), ("test", 0.0, False),  # units report progress themselves
    ("done", 0.0, False),
])
def test_only_long_phases_within_their_bound_are_kept_alive(phase, elapsed, alive):
    assert phase_kept_alive(phase, elapsed, bound_s=10.0) is alive


def test_a_reporter_ticks_in_a_long_phase_until_its_bound_and_never_while_training():
    r = Reporter(rank=0, keeps_records=False, phase_timeout_s=60.0)
    r.close()  # drive the ticks by hand
    r.enter_phase("build")
    before = r.heartbeat.progress
    assert r.tick() and r.tick()
    assert r.heartbeat.progress == before + 2 and r.heartbeat.phase == "build"
    r.heartbeat.phase_started -= 61.0  # the phase has now run past phase_timeout_s
    assert not r.tick() and r.heartbeat.progress == before + 2
    r.progress(1, "train")
    assert r.heartbeat.phase_started > 0 and not r.tick()


def test_the_keepalive_thread_advances_a_heartbeat_the_training_thread_does_not_touch():
    import time

    r = Reporter(rank=0, keeps_records=False, phase_timeout_s=60.0)
    try:
        r.enter_phase("first_step")
        seen = r.heartbeat.progress
        deadline = time.monotonic() + 10.0
        while r.heartbeat.progress == seen and time.monotonic() < deadline:
            time.sleep(0.1)
        assert r.heartbeat.progress > seen
    finally:
        r.close()
