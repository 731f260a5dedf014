"""Warm gangs across a search's trials and pruning that lands at the step that decided it, on real
Ray gangs (the suite's shared session)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import orchestrator

pytestmark = pytest.mark.ray

SEARCH = ["search=random", "model=mlp", "trainer.max_epochs=2", "search.num_trials=3", "search.max_concurrent=1",
          "search.pruner=none", "search.seed=7"]


def trials(sweep_dir: Path):
    rows = json.loads((sweep_dir / "trials.json").read_text())
    return {row["number"]: (row, json.loads((Path(row["run_dir"]) / "summary.json").read_text())) for row in rows}


# Measured on the step where a flush happened to fall (flushes are paced by the clock): not a result.
CLOCK_PACED = ("train/samples_per_sec", "train/grad_norm")


def learned(metrics):
    """What the trial learned (losses, accuracies, LR, the generalisation gap), without its timings."""
    return {k: v for k, v in metrics.items() if k.startswith(("train/", "val/", "gap/", "signals/"))
            and k not in CLOCK_PACED}


def final_weights(summary):
    import torch

    path = Path(summary["checkpoints"]["dir"]) / f"step-{summary['checkpoints']['latest_step']:09d}.pt"
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_search_with_warm_gangs_gives_the_same_trial_results_as_without(ray_session, tmp_path):
    orchestrator.run_search([*SEARCH, "search.warm_gangs=true"], sweep_dir=tmp_path / "warm")
    # The cold reference runs two trials at a time (a trial's result does not depend on what runs beside it;
    # the random sampler asks in trial order): one cold gang start less to wait for.
    orchestrator.run_search([*SEARCH, "search.warm_gangs=false", "search.max_concurrent=2"], sweep_dir=tmp_path / "cold")
    warm, cold = trials(tmp_path / "warm"), trials(tmp_path / "cold")
    assert sorted(warm) == sorted(cold) == [0, 1, 2]
    for number in warm:
        (w_row, w_sum), (c_row, c_sum) = warm[number], cold[number]
        assert w_row["params"] == c_row["params"] and w_row["status"] == c_row["status"] == "completed"
        assert learned(w_sum["metrics"]) == learned(c_sum["metrics"]), f"trial {number}: a warm worker changed it"
        assert {"val/loss", "val/accuracy", "train/loss"} <= set(learned(w_sum["metrics"]))
        assert w_sum["steps"] == c_sum["steps"]
        w_weights, c_weights = final_weights(w_sum), final_weights(c_sum)
        assert w_weights.keys() == c_weights.keys()
        assert all(w_weights[k].equal(c_weights[k]) for k in w_weights), f"trial {number}: weights differ (bitwise)"
    pids = {n: tuple(w["pid"] for w in summary["workers"]) for n, (_, summary) in warm.items()}
    assert len(set(pids.values())) == 1, "every trial of the warm search ran on the first trial's workers"
    assert [warm[n][0]["warm_gang"] for n in (0, 1, 2)] == [False, True, True]
    cold_pids = {tuple(w["pid"] for w in summary["workers"]) for _, summary in cold.values()}
    assert len(cold_pids) == 3 and not any(cold[n][0]["warm_gang"] for n in cold)
    search = json.loads((tmp_path / "warm" / "search.json").read_text())
    assert search["warm_gangs"] == {"enabled": True, "reused": 2}
    assert search["trial_start_s"]["trials"] == 2 and search["trial_start_s"]["worst"] >= search["trial_start_s"]["median"] > 0
    assert "Trial start" in (tmp_path / "warm" / "trials.md").read_text()
    assert not any(alive(pid) for pid in pids[0]), "the pool is closed when the search ends: no idle gang is left"


def test_a_pruned_trial_stops_at_the_step_of_the_validation_that_pruned_it(ray_session, tmp_path):
    # A good trial first, then one that cannot learn: the median rule prunes it at its first validation
    # (one per epoch). Its whole run takes well under the driver's 1 s poll, so without the verdict
    # reaching the workers before their next step it would run to the end.
    orchestrator.run_search(["search=random", "model=mlp", "trainer.max_epochs=4", "search.num_trials=2",
                             "search.max_concurrent=1", "search.pruner=median", "search.pruner_startup_trials=1",
                             "++search.enqueue=[{optimizer.lr:0.01},{optimizer.lr:1e-7}]"], sweep_dir=tmp_path)
    rows = trials(tmp_path)
    good, (pruned, summary) = rows[0][0], rows[1]
    assert good["status"] == "completed"
    assert pruned["status"] == "pruned", pruned
    at = int(pruned["note"].removeprefix("pruned at step "))
    assert at < good["steps"] and at % (good["steps"] // 4) == 0, "pruned at a validation, before the end"
    assert pruned["steps"] == summary["steps"] == at, "no step after the validation that pruned it"
    assert summary["stop_reason"].startswith("pruned at step")
