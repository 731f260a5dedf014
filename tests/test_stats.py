"""Metric reduction without a process group (world size 1): rows, flush timing, throughput."""

from __future__ import annotations

import pytest
import torch

from orchestrator.worker.stats import MAX_ROWS, StepStats, Throughput

CPU = torch.device("cpu")
TIMES = {"data_s": 0.001, "compute_s": 0.004, "optimizer_s": 0.001, "step_s": 0.006}


def run_steps(stats: StepStats, steps: int, log_every: int, step_s: float = 0.006):
    flushes = []
    times = dict(TIMES, step_s=step_s)
    for step in range(1, steps + 1):
        stats.add(torch.tensor(2.0 * 8), torch.tensor(3), 8, 8, times)
        if step == 1 or step % log_every == 0:
            flush_now = stats.flush_due_with_next_row()
            stats.close_row(step, 0.1, torch.tensor(1.5) if flush_now else None)
            if flush_now:
                flushes.append(stats.flush(stop_vote=False))
    return flushes


def test_every_log_step_gets_a_row_with_exact_window_means():
    stats = StepStats(CPU, has_accuracy=True, log_every=1)
    flushes = run_steps(stats, 10, log_every=1)
    rows = [row for f in flushes for row in f.rows] + stats.flush(False).rows
    assert [r.step for r in rows] == list(range(1, 11))
    assert all(r.loss == pytest.approx(2.0) and r.accuracy == pytest.approx(3 / 8) for r in rows)


def test_rows_are_flushed_about_once_a_second_from_the_measured_step_time():
    stats = StepStats(CPU, has_accuracy=True, log_every=10)
    run_steps(stats, 1, log_every=10, step_s=0.01)  # step 1 is reduced at once, and sets the pace
    assert stats.rows_per_flush == 10  # 10 rows x 10 steps x 10 ms = 1 s
    fast = StepStats(CPU, has_accuracy=True, log_every=1)
    run_steps(fast, 1, log_every=1, step_s=0.0001)
    assert fast.rows_per_flush == MAX_ROWS
    slow = StepStats(CPU, has_accuracy=True, log_every=5)
    run_steps(slow, 1, log_every=5, step_s=2.0)
    assert slow.rows_per_flush == 1


def test_a_flush_reports_per_rank_timings_and_the_gradient_norm():
    stats = StepStats(CPU, has_accuracy=True, log_every=1)
    (flush,) = run_steps(stats, 1, log_every=1)
    assert flush.per_rank["step_s"] == [pytest.approx(0.006)] and flush.grad_norm == pytest.approx(1.5)


def test_each_host_counter_reaches_its_own_column():
    # Distinct values per timing: a column mix-up in the gathered table would swap them.
    times = {"data_s": 0.001, "compute_s": 0.002, "optimizer_s": 0.003, "step_s": 0.007}
    stats = StepStats(CPU, has_accuracy=True)
    for _ in range(2):
        stats.add(torch.tensor(2.0 * 8), torch.tensor(4), 8, 5, times)
    assert stats.steps_in_window == 2
    stats.close_row(2, 0.1, None)
    flush = stats.flush(stop_vote=False)
    assert {key: values[0] for key, values in flush.per_rank.items()} == pytest.approx(times)
    (row,) = flush.rows
    assert (row.step, row.samples, row.steps, row.loss, row.accuracy) == (2, 10, 2, 2.0, 0.5)
    assert stats.steps_in_window == 0 and flush.stop is False


def test_stop_vote_travels_even_without_rows():
    assert StepStats(CPU, has_accuracy=False).flush(stop_vote=True).stop is True


def test_throughput_leaves_out_the_warm_up_and_the_pauses(monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr("orchestrator.worker.stats.time.perf_counter", lambda: clock["now"])
    t = Throughput(warmup_steps=2)
    for _ in range(2):       # warm-up: slow first steps are not counted
        clock["now"] += 5.0
        t.step_done(100)
    assert t.samples_per_sec is None
    clock["now"] += 1.0      # one step of 1 s
    t.step_done(100)
    clock["now"] += 30.0     # a 30 s validation...
    t.shift_clock(30.0)      # ...taken out
    clock["now"] += 1.0
    t.step_done(100)
    assert t.samples_per_sec == pytest.approx(100.0)
