"""Hang reports that stay bounded: identical stacks grouped with their ranks, the odd ones out first,
cut to a size limit, every rank's stack in a file (pure tables), and one real stall on local Ray."""

from __future__ import annotations

import pytest

import orchestrator
from orchestrator.driver.launcher import RunFailed
from orchestrator.policy.hang_report import (RankState, full_dump, group_stacks, hang_report, likely_culprit,
                                             normalise, rank_ranges)

WAITING = ("--- training thread\n  File \"loop.py\", line 40, in fit\n  File \"step.py\", line 90, in backward\n"
           "    torch.autograd.backward(...)\n--- 140213455\n  File \"threading.py\", line 320, in wait\n")
STALLED = "--- training thread\n  File \"loop.py\", line 38, in fit\n  File \"chaos.py\", line 33, in before_step\n"


@pytest.mark.parametrize("ranks,expected", [
    ([0], "0"),
    ([0, 1, 2, 3, 4, 5, 6, 8], "0-6, 8"),
    ([8, 0, 2, 1], "0-2, 8"),
    ([1, 3, 5], "1, 3, 5"),
    ([4, 5, 9, 10, 11, 200], "4-5, 9-11, 200"),
    ([], ""),
])
def test_rank_ranges_are_compact(ranks, expected):
    assert rank_ranges(ranks) == expected


def test_addresses_and_unnamed_thread_ids_do_not_split_a_group():
    a = WAITING + "  <object at 0x7f3a2c0d1e50>\n"
    b = WAITING.replace("140213455", "139911102") + "  <object at 0x7f99aa001234>\n"
    assert normalise(a) == normalise(b)
    assert normalise("--- Dummy-1\n  File x") == normalise("--- Dummy-2\n  File x")
    assert normalise(WAITING) != normalise(WAITING.replace("line 90", "line 91"))  # a different place is not


@pytest.mark.parametrize("stacks,likely_first,expected", [
    # One stalled rank among waiting peers comes first, the majority last.
    ({0: WAITING, 1: STALLED, 2: WAITING, 3: WAITING}, (), [(1,), (0, 2, 3)]),
    # Two odd ones out of one size: the likeliest culprit's group first.
    ({0: WAITING, 1: STALLED, 2: "x", 3: WAITING, 4: WAITING}, (2, 1), [(2,), (1,), (0, 3, 4)]),
    ({0: WAITING, 1: STALLED, 2: "x", 3: WAITING, 4: WAITING}, (), [(1,), (2,), (0, 3, 4)]),
    # All alike: one group.
    ({r: WAITING for r in range(8)}, (), [tuple(range(8))]),
])
def test_identical_stacks_are_grouped_and_the_odd_ones_come_first(stacks, likely_first, expected):
    assert [g.ranks for g in group_stacks(stacks, likely_first)] == expected


def states(world: int, stalled: int):
    return [RankState(r, f"node 10.0.0.{r // 8}, pid {1000 + r}: no progress for 12s",
                      STALLED if r == stalled else WAITING.replace("140213455", str(7000 + r)))
            for r in [stalled] + [r for r in range(world) if r != stalled]]


def test_a_report_shows_each_stack_once_with_the_ranks_sharing_it():
    report = hang_report(states(8, stalled=7), dump_path="/runs/a/hang_reports/hang-step24.txt")
    assert report.splitlines()[0] == ("2 distinct stack(s) across 8 ranks, odd ones out first; "
                                      "every rank's stack: /runs/a/hang_reports/hang-step24.txt")
    assert report.index("rank 7 (1 of 8 ranks) in this stack:") < report.index("ranks 0-6 (7 of 8 ranks)")
    assert report.count("before_step") == 1 and report.count("in backward") == 1
    assert "rank 7 (node 10.0.0.0, pid 1007" in report and "rank 0 (node 10.0.0.0, pid 1000" in report
    assert "... and 3 more ranks" in report  # 4 of the 7 named with their detail


def test_at_256_ranks_the_report_stays_small_and_names_the_stalled_rank():
    report = hang_report(states(256, stalled=131), dump_path="dump.txt")
    assert len(report.encode()) < 2_000
    assert "rank 131 (1 of 256 ranks)" in report and "ranks 0-130, 132-255 (255 of 256 ranks)" in report


def test_many_distinct_stacks_are_cut_to_the_limit_with_a_note():
    distinct = [RankState(r, "detail", f"--- training thread\n  File \"m.py\", line {r}, in f\n" * 40)
                for r in range(256)]
    report = hang_report(distinct, dump_path="dump.txt", limit_bytes=20_000)
    assert 20_000 - 2_500 < len(report.encode()) <= 20_000  # whole groups of ~2.3 kB each
    assert report.rstrip().endswith("more stack group(s) in the full dump]")
    huge = [RankState(0, "detail", "x" * 50_000), RankState(1, "detail", "y")]
    cut = hang_report(huge, dump_path=None, limit_bytes=20_000)
    assert len(cut.encode()) <= 20_000 and "the full dump could not be written" in cut
    assert "this group's stack and 1 more group(s) in the full dump]" in cut


def test_the_likely_culprit_is_the_odd_one_out_else_the_stalest():
    assert likely_culprit(states(8, stalled=5)) == 5
    alike = [RankState(r, "d", WAITING) for r in (6, 2, 0, 1)]  # stalest first
    assert likely_culprit(alike) == 6


def test_the_full_dump_has_every_rank_in_rank_order():
    dump = full_dump(states(4, stalled=2))
    assert [line.split(" (")[0] for line in dump.splitlines() if line.startswith("rank ")] == \
        ["rank 0", "rank 1", "rank 2", "rank 3"]
    assert dump.count("in backward") == 3 and dump.count("before_step") == 1


# ----------------------------------------------------------------------------- on local Ray
RANKS = 8  # the 8: 18 s on the idle 2-core machine (4 ranks: 11 s)


@pytest.mark.ray
def test_a_stalled_rank_is_named_in_a_grouped_report_and_every_stack_is_in_the_run_dir(ray_session, tmp_path):
    with pytest.raises(RunFailed) as err:
        orchestrator.run(["model=custom", "model._target_=tests.user_project.components.TinyNet", "+model.depth=1",
                          "data=custom", "data._target_=tests.user_project.components.blobs", "data.batch_size=8",
                          "trainer.max_steps=40", "trainer.log_every_n_steps=1", "checkpoint.every_epoch=false",
                          f"scaling.num_workers={RANKS}", f"scaling.cpus_per_worker={2 / RANKS:g}",
                          "chaos.kind=stall", "chaos.rank=2", "chaos.at_step=5", "failure.hang_timeout_s=4",
                          "failure.max_failures=0"],
                         run_dir=tmp_path, show_progress=False)
    (restart,) = err.value.summary["restarts"]
    assert restart["kind"] == "hang" and "rank 2 last in phase 'train'" in restart["message"]
    report = next(e["message"] for e in err.value.summary["events"] if e["event"] == "failure")
    first_group = report[report.index("distinct stack(s)"):]
    assert f"rank 2 (1 of {RANKS} ranks) in this stack:" in first_group
    assert first_group.index(f"rank 2 (1 of {RANKS}") < first_group.index("before_step") \
        < first_group.index(f"ranks 0-1, 3-{RANKS - 1}")
    assert report.count("in before_step") == 1, "the stalled rank's stack once"
    (dump,) = (tmp_path / "hang_reports").iterdir()
    assert str(dump) in report
    text = dump.read_text()
    assert all(f"rank {r} (node" in text for r in range(RANKS)) and text.count("in before_step") == 1
