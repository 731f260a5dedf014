"""The input-bound warning as a specification: when it fires, whom it names, what it advises (pure),
its config keys, and one short real run on Ray whose dataset is slow on purpose."""

from __future__ import annotations

import pytest

import orchestrator
from orchestrator import config as C
from orchestrator.config import ConfigError
from orchestrator.policy.input_bound import (Calm, InputBound, InputBoundDetector, InputBoundMonitor, LoaderKnobs,
                                             Notice, advice, data_waits)
from tests.helpers import compose, read_scalars

WINDOW = 10.0


def verdicts(series, threshold=10.0, window=WINDOW):
    """Feed {time: {rank: pct}} in time order; -> {time: verdict} for the observations that gave one."""
    detector = InputBoundDetector(threshold, window)
    out = {}
    for time_s, waits in series:
        verdict = detector.observe(time_s, waits)
        if verdict is not None:
            out[time_s] = verdict
    return out


def steady(pct_by_rank, start=0, stop=30, every=1):
    return [(float(t), dict(pct_by_rank)) for t in range(start, stop, every)]


# ----------------------------------------------------------------------------- when it fires
@pytest.mark.parametrize("name,series,fires_at", [
    ("never above", steady({0: 5.0, 1: 9.9}), None),
    ("exactly at the threshold is not above", steady({0: 10.0}), None),
    ("above for the whole window", steady({0: 50.0}), 10.0),
    ("one rank is enough", steady({0: 2.0, 1: 30.0}), 10.0),
    ("a dip restarts the window", steady({0: 50.0}, 0, 8) + steady({0: 1.0}, 8, 9) + steady({0: 50.0}, 9, 30), 19.0),
    ("shorter than the window", steady({0: 50.0}, 0, 10), None),
    ("sparse observations: the span counts, not their number", steady({0: 50.0}, 0, 30, every=5), 10.0),
])
def test_it_warns_when_a_rank_stays_above_the_threshold_for_the_whole_window(name, series, fires_at):
    warned = [t for t, v in verdicts(series).items() if isinstance(v, InputBound)]
    assert warned == ([] if fires_at is None else [fires_at]), name


def test_it_warns_once_however_long_the_run_stays_input_bound():
    warnings = [v for v in verdicts(steady({0: 40.0, 1: 40.0}, 0, 500)).values()]
    assert len(warnings) == 1 and isinstance(warnings[0], InputBound)


def test_it_warns_again_only_after_a_calm_window_and_a_new_full_window_above():
    series = (steady({0: 50.0}, 0, 15)       # warns at 10
              + steady({0: 1.0}, 15, 20)     # calm for 5 s only: not over
              + steady({0: 50.0}, 20, 25)    # above again: the calm window starts over
              + steady({0: 1.0}, 25, 40)     # calm from 25: over at 35
              + steady({0: 50.0}, 40, 60))   # a new full window: warns at 50
    got = {t: type(v).__name__ for t, v in verdicts(series).items()}
    assert got == {10.0: "InputBound", 35.0: "Calm", 50.0: "InputBound"}


def test_a_rank_missing_from_an_observation_keeps_its_streak():
    series = [(float(t), {0: 50.0} if t % 2 == 0 else {1: 1.0}) for t in range(0, 20)]
    assert list(verdicts(series)) == [10.0]


def test_a_non_finite_wait_counts_as_not_above():
    series = steady({0: 50.0}, 0, 8) + [(8.0, {0: float("nan")})] + steady({0: 50.0}, 9, 15)
    assert verdicts(series) == {}


def test_threshold_zero_turns_it_off():
    assert verdicts(steady({0: 100.0}, 0, 100), threshold=0.0) == {}


def test_it_names_the_ranks_that_stayed_above_worst_first_with_their_mean_wait():
    series = [(float(t), {0: 20.0 + (t % 2) * 10, 1: 60.0, 2: 5.0}) for t in range(0, 11)]
    (bound,) = verdicts(series).values()
    assert list(bound.waits) == [1, 0]               # rank 2 never went above
    assert bound.waits[1] == pytest.approx(60.0)
    assert bound.waits[0] == pytest.approx(sum(20.0 + (t % 2) * 10 for t in range(11)) / 11)
    assert bound.span_s == pytest.approx(10.0)


def test_a_rank_above_for_less_than_the_window_is_not_named():
    series = steady({0: 50.0}, 0, 11)
    series = [(t, {**waits, 1: 50.0} if t >= 5 else waits) for t, waits in series]
    (bound,) = verdicts(series).values()
    assert list(bound.waits) == [0]


# ----------------------------------------------------------------------------- what it says
@pytest.mark.parametrize("knobs,expected", [
    (LoaderKnobs(num_workers=0), "raise data.num_workers (now 0), then data.prefetch_factor"),
    (LoaderKnobs(num_workers=4), "raise data.num_workers (now 4) or data.prefetch_factor (now 2, torch's default)"),
    (LoaderKnobs(num_workers=4, prefetch_factor=8), "or data.prefetch_factor (now 8)"),
    (LoaderKnobs(num_workers=2, pin_memory=False, device="cuda"), "; on GPU set data.pin_memory=true"),
])
def test_the_advice_names_the_knobs_with_their_current_values(knobs, expected):
    message = advice(InputBound({1: 34.4}, 60.2), knobs)
    assert message.startswith("input-bound: rank 1 waited 34% of each step for data over the last 60 s; ")
    assert expected in message


def test_the_advice_leaves_pin_memory_out_on_cpu_and_counts_ranks_beyond_four():
    message = advice(InputBound({r: 50.0 - r for r in range(6)}, 60.0), LoaderKnobs(pin_memory=False, device="cpu"))
    assert "pin_memory" not in message
    assert "rank 0 waited 50%, rank 1 waited 49%, rank 2 waited 48%, rank 3 waited 47% (and 2 more ranks)" in message


def test_data_waits_reads_the_per_rank_scalars_only():
    values = {"worker/0/data_wait_pct": 12.5, "worker/11/data_wait_pct": 3.0, "worker/0/data_ms": 4.0,
              "train/loss": 1.0}
    assert data_waits(values) == {0: 12.5, 11: 3.0}


def test_the_monitor_turns_verdicts_into_a_scalar_and_one_message():
    monitor = InputBoundMonitor(InputBoundDetector(10.0, 2.0), LoaderKnobs(num_workers=0))
    notices = [monitor.observe(float(t), {"worker/0/data_wait_pct": 80.0, "train/loss": 1.0}) for t in range(4)]
    assert notices[:2] == [None, None] and notices[3] is None
    assert notices[2].value == 1.0 and "rank 0 waited 80%" in notices[2].message
    assert monitor.observe(4.0, {"train/loss": 1.0}) is None   # a record without waits
    calm = [monitor.observe(float(t), {"worker/0/data_wait_pct": 1.0}) for t in range(5, 8)]
    assert calm == [None, None, Notice(0.0)]


# ----------------------------------------------------------------------------- config
def test_defaults_and_off():
    cfg = compose()
    assert (cfg.health.input_bound_pct, cfg.health.input_bound_window_s) == (10.0, 60.0)
    assert InputBoundMonitor.from_config(compose("health.input_bound_pct=0")) is None
    assert InputBoundMonitor.from_config(cfg).knobs == LoaderKnobs(num_workers=0, device="auto")


@pytest.mark.parametrize("key,value", [("input_bound_pct", -1.0), ("input_bound_pct", 100.5),
                                       ("input_bound_window_s", 0.0), ("input_bound_window_s", -5.0)])
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"^health\.{key} must"):
        C.HealthConfig(**{key: value})


def test_a_bad_value_on_the_command_line_names_the_key():
    with pytest.raises(ConfigError, match=r"health\.input_bound_window_s must be > 0"):
        compose("health.input_bound_window_s=0")


# ----------------------------------------------------------------------------- end to end on Ray
@pytest.mark.ray
def test_a_run_with_a_slow_dataset_warns_in_the_terminal_summary_and_tensorboard(ray_session, tmp_path):
    result = orchestrator.run(["model=custom", "model._target_=tests.user_project.components.TinyNet",
                               "+model.depth=1", "data=custom",
                               "data._target_=tests.user_project.components.sleepy_blobs",
                               "data.batch_size=8", "scaling.num_workers=1", "trainer.max_epochs=1",
                               "trainer.log_every_n_steps=1", "health.input_bound_window_s=1",
                               "stopping.test_best=false", "checkpoint.every_epoch=false"],
                              run_dir=tmp_path, show_progress=False)
    assert result.status == "completed"
    warnings = [e for e in result.summary["events"] if e["event"] == "input_bound"]
    assert len(warnings) == 1
    assert "rank 0 waited" in warnings[0]["message"] and "data.num_workers (now 0)" in warnings[0]["message"]
    assert [value for _, value in read_scalars(tmp_path / "tb")["data/input_bound"]] == [1.0]
    assert "events/input_bound/text_summary" in text_tags(tmp_path / "tb")


def text_tags(tb_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"tensors": 0})
    acc.Reload()
    return set(acc.Tags()["tensors"])


def test_above_the_per_rank_threshold_the_monitor_follows_the_most_waiting_rank():
    # A large gang logs the distribution only: which rank waits most may change from flush to flush.
    monitor = InputBoundMonitor(InputBoundDetector(10.0, 2.0), LoaderKnobs(num_workers=0))
    flushes = [{"workers/data_wait_pct/max": 60.0, "workers/most_waiting_rank": float(rank)} for rank in (3, 9, 41)]
    assert data_waits(flushes[0]) == {-1: 60.0}
    notices = [monitor.observe(float(t), values) for t, values in enumerate(flushes)]
    assert notices[:2] == [None, None]
    assert notices[2].value == 1.0
    assert "the most-waiting rank, rank 41 in the latest flush, waited 60%" in notices[2].message
    calm = [monitor.observe(float(t), {"workers/data_wait_pct/max": 2.0}) for t in range(3, 6)]
    assert calm == [None, None, Notice(0.0)]
