"""Which way a gang that lost ranks goes on (policy/recovery.py): a table, no Ray, no torch."""

from __future__ import annotations

import pytest

from orchestrator.policy.recovery import HealPlan, Held, plan_heal

DEAD = Held(step=None)


def test_one_dead_rank_is_healed_from_the_lowest_survivor_at_the_newest_step():
    plan = plan_heal({0: DEAD, 1: Held(40, in_flight=True), 2: Held(40, in_flight=True)}, 3, "peer")
    assert plan == HealPlan(source=1, step=40, receivers=(0,), replaced=(0,), steps_lost=1)


def test_a_survivor_one_step_behind_is_healed_too_and_no_step_is_lost():
    # Rank 2's all-reduce completed before the peer died, rank 1's did not: both are states of a correct run.
    plan = plan_heal({0: DEAD, 1: Held(40, in_flight=True), 2: Held(41)}, 3, "peer")
    assert plan == HealPlan(source=2, step=41, receivers=(0, 1), replaced=(0,), steps_lost=0)


def test_a_failure_between_steps_loses_none():
    assert plan_heal({0: Held(25), 1: DEAD}, 2, "peer").steps_lost == 0


@pytest.mark.parametrize("held, world, mode, why", [
    ({0: Held(5), 1: DEAD}, 2, "disk", "failure.recovery=disk"),
    ({0: DEAD}, 1, "peer", "no peer"),
    ({0: DEAD, 1: DEAD}, 2, "peer", "no rank survived"),
    ({0: Held(5), 1: Held(5)}, 2, "peer", "every rank is alive"),
    ({0: Held(5), 1: Held(9), 2: DEAD}, 3, "peer", "disagree on the step"),
])
def test_when_the_gang_restarts_from_disk_instead(held, world, mode, why):
    reason = plan_heal(held, world, mode)
    assert isinstance(reason, str) and why in reason
