"""Which shards each rank streams, how many batches, and where a resumed reader starts: the pure
arithmetic of orchestrator/data/streaming/plan.py."""

from __future__ import annotations

import pytest

from orchestrator.data.streaming import plan as P


def index(*counts: int) -> P.ShardIndex:
    return P.ShardIndex(tuple(f"s{j}" for j in range(len(counts))), tuple(counts))


def test_with_one_reader_per_rank_rank_r_of_n_takes_shards_r_r_plus_n():
    layout = P.Layout(world_size=3, workers=0, batch_size=4)
    assert [P.slot_shards(8, layout.slot(r, 0), layout.slots) for r in range(3)] == [[0, 3, 6], [1, 4, 7], [2, 5]]


def test_loader_workers_are_readers_of_their_own_shards():
    layout = P.Layout(world_size=2, workers=2, batch_size=4)
    shards = [P.slot_shards(8, layout.slot(r, w), layout.slots) for r in range(2) for w in range(2)]
    assert sorted(j for s in shards for j in s) == list(range(8))
    assert shards[0] == [0, 4] and shards[1] == [2, 6]  # rank 0's two workers


def test_every_reader_yields_the_quota_of_the_smallest():
    # Rank 0 holds 100 + 100, rank 1 holds 100 + 30: both yield (130 // 10) = 13 batches.
    idx, layout = index(100, 100, 100, 30), P.Layout(2, 0, 10)
    assert P.quota(idx, layout) == 13 and P.batches_per_rank(idx, layout) == 13
    assert P.left_out(idx, layout) == 330 - 13 * 10 * 2


def test_epoch_shuffle_reorders_a_readers_shards_the_same_way_on_every_rank():
    one = P.slot_shards(20, 1, 2, P.Order(epoch=3, seed=7))
    assert one == P.slot_shards(20, 1, 2, P.Order(epoch=3, seed=7))
    assert sorted(one) == list(range(1, 20, 2))
    assert one != P.slot_shards(20, 1, 2, P.Order(epoch=4, seed=7))


@pytest.mark.parametrize("counts, skip, expected", [
    ((10, 10), 0, (0, 0)), ((10, 10), 9, (0, 9)), ((10, 10), 10, (1, 0)), ((10, 10), 25, (2, 0)),
])
def test_locate_finds_the_shard_and_offset_of_a_sample(counts, skip, expected):
    assert P.locate(counts, skip) == expected


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_resumed_readers_continue_each_workers_own_count(workers):
    """Batches are taken from a rank's workers in turn: after b batches worker w made len(range(w, b, K))."""
    for done in range(0, 12):
        made = [P.worker_start(done, w, workers) for w in range(workers)]
        assert sum(made) == done
        taken_in_turn = [0] * workers
        for i in range(done):
            taken_in_turn[i % workers] += 1
        assert made == taken_in_turn


def test_a_resumed_loaders_first_worker_plays_the_worker_next_in_turn():
    idx, layout = index(*[40] * 8), P.Layout(2, 2, 4)
    fresh = [P.slot_plan(idx, layout, P.Order(), 0, w, 0) for w in range(2)]
    resumed = P.slot_plan(idx, layout, P.Order(), 0, 0, batches_done=3)  # batch 3 comes from worker 1
    assert resumed.shards == fresh[1].shards
    assert (resumed.start_shard, resumed.start_offset) == (0, 4)  # worker 1 made batch 1 (4 samples)
    assert resumed.batches == fresh[1].batches - 1


def test_positions_name_each_readers_shard_and_offset():
    idx, layout = index(10, 10, 10, 10), P.Layout(2, 0, 4)
    table = P.positions(idx, layout, P.Order(shuffle=False), batches_done=3)
    assert table == [{"rank": 0, "worker": 0, "shard": "s2", "offset": 2},
                     {"rank": 1, "worker": 0, "shard": "s3", "offset": 2}]


def test_a_position_from_another_layout_cannot_be_continued():
    layout = P.Layout(2, 0, 4)
    assert P.resume_problem({}, layout) is None
    assert P.resume_problem({"world_size": 2, "workers": 0, "batch_size": 4}, layout) is None
    problem = P.resume_problem({"world_size": 4, "workers": 0, "batch_size": 4}, layout)
    assert "4 ranks" in problem and "now 2" in problem


def test_too_few_shards_or_too_small_ones_are_explained():
    assert "every reader needs its own shard" in P.layout_problem(index(10, 10, 10), P.Layout(2, 2, 4))
    assert "data.batch_size=64" in P.layout_problem(index(10, 10), P.Layout(2, 0, 64))
    assert P.layout_problem(index(10, 10), P.Layout(2, 0, 4)) is None
