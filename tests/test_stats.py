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


def flush_with_distinct_ranks(rank: int, world: int):
    """Rank r: loss 1 + r per term, r + 1 correct, steps of (r + 1) ms; rank 2 votes to stop."""
    stats = StepStats(CPU, has_accuracy=True)
    times = {"data_s": 0.0001 * (rank + 1), "compute_s": 0.0, "optimizer_s": 0.0, "step_s": 0.001 * (rank + 1)}
    for _ in range(2):
        stats.add(torch.tensor((1.0 + rank) * 8), torch.tensor(rank + 1), 8, 8, times)
    stats.close_row(2, 0.1, None)
    flush = stats.flush(stop_vote=rank == 2)
    return flush, stats.rows_per_flush


def test_three_ranks_reduce_to_the_same_rows_and_only_rank_zero_gathers_timings():
    from tests.gloo import run_ranks

    results = run_ranks(3, flush_with_distinct_ranks)
    (row,) = results[0][0].rows
    assert (row.loss, row.loss_max_rank, row.samples, row.steps) == (pytest.approx(2.0), 3.0, 48, 2)
    assert row.accuracy == pytest.approx(2 * (1 + 2 + 3) / 48)
    reduced = [[(r.loss, r.loss_max_rank, r.accuracy, r.samples, r.steps) for r in flush.rows] for flush, _ in results]
    assert reduced[0] == reduced[1] == reduced[2] and all(flush.stop for flush, _ in results)  # identical everywhere
    assert [pace for _, pace in results] == [MAX_ROWS] * 3  # from the slowest rank's 3 ms: the same on every rank
    assert all(flush.slowest_step_s == pytest.approx(0.003) for flush, _ in results)
    assert results[0][0].per_rank["step_s"] == pytest.approx([0.001, 0.002, 0.003])
    assert results[0][0].per_rank["data_s"] == pytest.approx([0.0001, 0.0002, 0.0003])
    assert results[1][0].per_rank == {} and results[2][0].per_rank == {}
