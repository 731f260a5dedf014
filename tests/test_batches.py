"""Worker-side batching: the resumable sampler, batch samplers, eval shards, in-memory datasets, the
DataLoader over them, steps per epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data.distributed import DistributedSampler

from orchestrator import config as C
from orchestrator.data import builtin as D, loader as B, memory as M
from orchestrator.data.module import DataInfo


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
        seen += [i for idx in list(B.TrainBatches(shard, batch))[:done] for i in idx]
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
    got = list(B.TrainBatches(shard, 7))
    assert len(got) == 25 // 7 == 3
    assert all(len(b) == 7 for b in got)
    assert sum(got, []) == shard.local_indices()[:21].tolist()
    assert len(B.TrainBatches(shard, 7)) == 3


# ----------------------------------------------------------------------------- evaluation
@pytest.mark.parametrize("n,world,batch", [(23, 3, 4), (10, 1, 3), (5, 4, 8), (3, 5, 2), (0, 2, 4)])
def test_eval_batches_cover_every_sample_exactly_once_across_ranks(n, world, batch):
    everything = []
    for rank in range(world):
        for idx in B.EvalBatches(n, rank, world, batch):
            assert 0 < len(idx) <= batch
            everything += idx
    assert sorted(everything) == list(range(n))


# ----------------------------------------------------------------------------- split views
def text_bundle(tmp_path, block=6) -> M.DataBundle:
    path = tmp_path / "t.txt"
    path.write_text("".join(chr(ord("a") + (i * 7) % 26) for i in range(200)))
    cfg = C.Config(model=C.GPTConfig(), data=C.TextConfig(path=str(path), block_size=block),
                   optimizer=C.AdamConfig(), scheduler=C.ConstantSchedulerConfig())
    return D.load(cfg)


def test_text_batches_are_windows_with_targets_shifted_by_one(tmp_path):
    bundle = text_bundle(tmp_path, block=6)
    view = M.split_dataset(bundle, "train")
    assert len(view) == bundle.info.sizes["train"]
    idx = torch.tensor([0, 3, len(view) - 1])
    x, y = view.__getitems__(idx.tolist())
    assert torch.equal(view[3][0], x[1]) and torch.equal(view[3][1], y[1])
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
    info = DataInfo(task="classification", input_shape=(2, 2), num_classes=30, sizes={"train": 10})
    bundle = M.DataBundle(info, {"x_train": x, "y_train": y})
    xb, yb = M.split_dataset(bundle, "train").__getitems__([7, 2])
    assert torch.equal(xb, torch.from_numpy(x[[7, 2]]))
    assert yb.tolist() == [21, 6]


def test_views_over_read_only_shared_arrays_do_not_warn_or_copy():
    x = np.ones((4, 3), dtype=np.float32)
    x.setflags(write=False)  # as arrays mapped from Ray's object store
    info = DataInfo(task="regression", input_shape=(3,), num_targets=1, sizes={"train": 4})
    bundle = M.DataBundle(info, {"x_train": x, "y_train": x[:, :1]})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        view = M.split_dataset(bundle, "train")
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
    micro = len(list(B.TrainBatches(shard, batch)))
    assert micro // accumulate == B.steps_per_epoch(n, world, batch, accumulate)


# ----------------------------------------------------------------------------- the DataLoader path
class Squares(torch.utils.data.Dataset):
    """A user's map-style dataset of dict samples (no batched __getitems__)."""

    def __len__(self):
        return 40

    def __getitem__(self, i):
        return {"x": torch.tensor([float(i)]), "y": torch.tensor(float(i * i))}


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_user_dataset_is_read_by_the_dataloader_in_this_ranks_order(num_workers):
    shard = sampler(40, 2, 1, epoch=1)
    settings = B.LoaderSettings({"batch_size": 4, "num_workers": num_workers}, on_gpu=False)
    batches = list(B.make_loader(Squares(), B.TrainBatches(shard, 4), settings, seed=0))
    assert len(batches) == 5 and batches[0]["x"].shape == (4, 1)
    seen = torch.cat([b["x"][:, 0] for b in batches]).long().tolist()
    assert seen == shard.local_indices().tolist()
    assert all(torch.equal(b["y"], b["x"][:, 0] ** 2) for b in batches)


def test_in_memory_datasets_gather_a_whole_batch_in_one_call_through_the_dataloader():
    x = np.arange(24, dtype=np.float32).reshape(12, 2)
    dataset = M.ArrayDataset(x, np.arange(12))
    shard = sampler(12, 1, 0, shuffle=False)
    settings = B.LoaderSettings({"batch_size": 5}, on_gpu=False)
    (xb, yb), (xb2, yb2) = list(B.make_loader(dataset, B.TrainBatches(shard, 5), settings, seed=0))
    assert torch.equal(xb, torch.from_numpy(x[:5])) and yb.tolist() == [0, 1, 2, 3, 4]


def test_pinned_memory_only_on_a_gpu_worker():
    assert B.LoaderSettings({"pin_memory": True}, on_gpu=False).pin_memory is False
    assert B.LoaderSettings({}, on_gpu=True).pin_memory is True
    assert B.LoaderSettings({"pin_memory": False}, on_gpu=True).pin_memory is False


def test_iterating_a_loader_leaves_the_global_rng_alone():
    """Dropout draws from the global RNG: a loader created mid-epoch after a resume must not shift it."""
    settings = B.LoaderSettings({"batch_size": 4}, on_gpu=False)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    iter(B.make_loader(Squares(), B.TrainBatches(sampler(40, 1, 0), 4), settings, seed=1))
    assert torch.equal(torch.rand(3), expected)
