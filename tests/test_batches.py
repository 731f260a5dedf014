"""Worker-side batching: the resumable sampler, eval shards, text windows, steps per epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data.distributed import DistributedSampler

from orchestrator import batches as B
from orchestrator import config as C
from orchestrator import data as D


def sampler(n, world, rank, epoch=0, start=0, seed=0, shuffle=True) -> B.ResumableDistributedSampler:
    s = B.ResumableDistributedSampler(n, world, rank, shuffle=shuffle, seed=seed)
    s.set_epoch(epoch)
    s.set_start(start)
    return s


def interleave(per_rank):
    """Rank-strided shards back into one sequence (position j*W + r came from rank r)."""
    return torch.stack([torch.as_tensor(list(p)) for p in per_rank], dim=1).reshape(-1).tolist()


# ----------------------------------------------------------------------------- sampler
@pytest.mark.parametrize("n", [12, 17, 1])
@pytest.mark.parametrize("world", [1, 2, 3, 5])
@pytest.mark.parametrize("epoch,shuffle", [(0, True), (3, True), (0, False)])
def test_from_the_start_it_yields_exactly_what_torch_distributed_sampler_yields(n, world, epoch, shuffle):
    for rank in range(world):
        ours = sampler(n, world, rank, epoch=epoch, seed=11, shuffle=shuffle)
        torchs = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=11,
                                    drop_last=True)
        torchs.set_epoch(epoch)
        assert list(ours) == list(torchs)
        assert len(ours) == len(torchs)


def test_epochs_reshuffle_and_every_epoch_is_a_permutation():
    orders = [sampler(20, 1, 0, epoch=e).global_order().tolist() for e in range(3)]
    assert all(sorted(o) == list(range(20)) for o in orders)
    assert orders[0] != orders[1] != orders[2]


@pytest.mark.parametrize("w_before,w_after", [(2, 2), (2, 3), (3, 2), (4, 1)])
def test_resume_continues_the_global_order_without_repeats_or_skips(w_before, w_after):
    n, batch, done, epoch = 103, 4, 3, 2
    order = sampler(n, 1, 0, epoch=epoch).global_order().tolist()

    # Before the interruption: `done` batches on each of w_before ranks.
    seen = []
    for rank in range(w_before):
        shard = sampler(n, w_before, rank, epoch=epoch)
        seen += [i for idx in list(B.train_batches(None, shard, batch))[:done] for i in idx.tolist()]
    consumed = done * batch * w_before
    assert sorted(seen) == sorted(order[:consumed])

    # After resuming (maybe with another world size) from the consumed position.
    shards = [sampler(n, w_after, rank, epoch=epoch, start=consumed) for rank in range(w_after)]
    rest = interleave(s.local_indices().tolist() for s in shards)
    assert rest == order[consumed:consumed + len(rest)]     # continues the global order
    assert not set(rest) & set(seen)                        # no repeats
    assert n - consumed - len(rest) < w_after               # no skips (but the drop_last remainder)
    assert all(len(s) == (n - consumed) // w_after for s in shards)


def test_set_start_is_counted_in_the_epoch_order_not_per_rank():
    full = [sampler(30, 3, r, epoch=1).local_indices().tolist() for r in range(3)]
    resumed = [sampler(30, 3, r, epoch=1, start=6).local_indices().tolist() for r in range(3)]
    # 6 global positions = 2 per rank with 3 ranks.
    assert resumed == [f[2:] for f in full]


def test_train_batches_are_full_and_drop_the_incomplete_last_batch():
    shard = sampler(50, 2, 1)
    got = list(B.train_batches(None, shard, 7))
    assert len(got) == 25 // 7 == 3
    assert all(len(b) == 7 for b in got)
    assert torch.cat(got).tolist() == shard.local_indices()[:21].tolist()


# ----------------------------------------------------------------------------- evaluation
@pytest.mark.parametrize("n,world,batch", [(23, 3, 4), (10, 1, 3), (5, 4, 8), (3, 5, 2), (0, 2, 4)])
def test_eval_batches_cover_every_sample_exactly_once_across_ranks(n, world, batch):
    everything = []
    for rank in range(world):
        for idx in B.eval_batches(n, rank, world, batch):
            assert 0 < len(idx) <= batch
            everything += idx.tolist()
    assert sorted(everything) == list(range(n))


# ----------------------------------------------------------------------------- split views
def text_bundle(tmp_path, block=6) -> D.DataBundle:
    path = tmp_path / "t.txt"
    path.write_text("".join(chr(ord("a") + (i * 7) % 26) for i in range(200)))
    cfg = C.Config(model=C.GPTConfig(), data=C.TextConfig(path=str(path), block_size=block),
                   optimizer=C.AdamConfig(), scheduler=C.ConstantSchedulerConfig())
    return D.load(cfg)


def test_text_batches_are_windows_with_targets_shifted_by_one(tmp_path):
    bundle = text_bundle(tmp_path, block=6)
    view = B.SplitView(bundle, "train")
    assert len(view) == bundle.spec.sizes["train"]
    idx = torch.tensor([0, 3, len(view) - 1])
    x, y = view.batch(idx)
    assert x.shape == y.shape == (3, 6)
    assert torch.equal(y[:, :-1], x[:, 1:])
    tokens = torch.as_tensor(bundle.arrays["tokens"])
    for row, i in enumerate(idx.tolist()):
        start = int(bundle.arrays["x_train"][i])
        assert torch.equal(x[row], tokens[start:start + 6])
        assert torch.equal(y[row], tokens[start + 1:start + 7])


def test_labelled_batches_gather_inputs_with_their_labels():
    x = np.arange(40, dtype=np.float32).reshape(10, 2, 2)
    y = np.arange(10, dtype=np.int64) * 3
    spec = D.DataSpec(task="classification", input_shape=(2, 2), num_outputs=30, num_classes=30,
                      sizes={"train": 10})
    bundle = D.DataBundle(spec, {"x_train": x, "y_train": y})
    xb, yb = B.SplitView(bundle, "train").batch(torch.tensor([7, 2]))
    assert torch.equal(xb, torch.from_numpy(x[[7, 2]]))
    assert yb.tolist() == [21, 6]


def test_views_over_read_only_shared_arrays_do_not_warn_or_copy():
    x = np.ones((4, 3), dtype=np.float32)
    x.setflags(write=False)  # as arrays mapped from Ray's object store
    spec = D.DataSpec(task="regression", input_shape=(3,), num_outputs=1, num_classes=None, sizes={"train": 4})
    bundle = D.DataBundle(spec, {"x_train": x, "y_train": x[:, :1]})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        view = B.SplitView(bundle, "train")
    assert view.x.data_ptr() == x.ctypes.data


# ----------------------------------------------------------------------------- steps per epoch
@pytest.mark.parametrize("num_train,world,batch,accumulate,expected", [
    (1438, 2, 64, 1, 11),   # 719 per rank -> 11 full batches
    (1438, 2, 64, 2, 5),    # 11 batches -> 5 steps of 2
    (1438, 1, 64, 1, 22),
    (100, 3, 10, 1, 3),     # 33 per rank
    (10, 4, 8, 1, 0),       # not even one batch per rank
    (64, 2, 32, 1, 1),
])
def test_steps_per_epoch(num_train, world, batch, accumulate, expected):
    assert B.steps_per_epoch(num_train, world, batch, accumulate) == expected


def test_steps_per_epoch_matches_what_the_sampler_and_batches_deliver():
    n, world, batch, accumulate = 1000, 3, 16, 2
    shard = sampler(n, world, 0)
    micro = len(list(B.train_batches(None, shard, batch)))
    assert micro // accumulate == B.steps_per_epoch(n, world, batch, accumulate)
