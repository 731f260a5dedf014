"""The file formats each rank reads itself (data=parquet, data=webdataset, data=image_folder), read
in-process by every rank in turn: each sample of an epoch once across ranks, equal batches, exact
resume of a stream, and bad files named or skipped. Real files, written to a temp dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from orchestrator.config.errors import ConfigError
from orchestrator.data import generate as G
from orchestrator.data.bad_samples import BadDataError, BadSampleCounter
from orchestrator.data.image_folder import ImageFolder
from orchestrator.data.loader import LoaderSettings
from orchestrator.data.module import WorkerContext
from orchestrator.data.streaming.parquet import Parquet
from orchestrator.data.streaming.tar_shards import WebDataset
from tests.helpers import corrupt_first_image

N, PER_SHARD, BATCH = 480, 60, 20


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    images, labels = G.digits()
    images, ids = images[:N], np.arange(N)
    # The label is the sample's id for the tar shards, and the Parquet rows carry an id column, so
    # every test can say which samples a rank read.
    G.write_webdataset(root / "wds", images, ids, PER_SHARD)
    G.write_parquet(root / "pq", images / 255.0, labels[:N], PER_SHARD, row_group=16, vector_column=True)
    return root


def ready(module, rank=0, world=1):
    module.check()
    return module.setup(WorkerContext(rank, world, 0))


def parquet(files, **kw):
    return Parquet(str(files / "pq"), features=kw.pop("features", ["id"]), val_fraction=kw.pop("val_fraction", 0.0),
                   **kw)


def webdataset(files, **kw):
    return WebDataset(str(files / "wds"), val_fraction=kw.pop("val_fraction", 0.0), **kw)


def settings(workers=0, batch=BATCH):
    return LoaderSettings({"batch_size": batch, "num_workers": workers}, on_gpu=False)


def ids_of(batch, fmt) -> list:
    x, y = batch
    return (x[:, 0] if fmt == "parquet" else y).long().tolist()


def epoch_ids(split, rank, world, workers, epoch=0, done=0, fmt="parquet"):
    source = split.train_source(rank, world, settings(workers), seed=0)
    return [ids_of(b, fmt) for b in BadSampleCounter(0).unwrap(source.loader(epoch, 0, done))]


MAKERS = {"parquet": parquet, "webdataset": webdataset}


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
@pytest.mark.parametrize("workers", [0, 2])
def test_every_sample_of_an_epoch_is_read_once_across_ranks_in_equal_batches(files, fmt, workers):
    split = ready(MAKERS[fmt](files)).train
    per_rank = [epoch_ids(split, rank, 2, workers, fmt=fmt) for rank in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) == N // (2 * BATCH)  # no rank waits at the all-reduce
    seen = [i for batches in per_rank for batch in batches for i in batch]
    assert sorted(seen) == list(range(N))


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_stream_yields_what_the_uninterrupted_one_still_had_to(files, fmt, workers):
    split = ready(MAKERS[fmt](files)).train
    whole = epoch_ids(split, 1, 2, workers, epoch=1, fmt=fmt)
    for done in (1, 5):
        assert epoch_ids(split, 1, 2, workers, epoch=1, done=done, fmt=fmt) == whole[done:]


def test_each_epoch_reads_the_same_samples_in_another_order(files):
    split = ready(parquet(files)).train
    first, second = epoch_ids(split, 0, 2, 0, epoch=0), epoch_ids(split, 0, 2, 0, epoch=1)
    assert first != second
    assert sorted(sum(first, [])) == sorted(sum(second, []))


def test_validation_shards_are_held_out_and_read_once_across_ranks(files):
    splits = ready(parquet(files, val_fraction=0.25))
    assert (len(splits.train), len(splits.val)) == (360, 120)
    seen = []
    for rank in range(2):
        seen += [i for b in splits.val.eval_loader(rank, 2, settings(batch=7)) for i in ids_of(b.batch, "parquet")]
    assert sorted(seen) == list(range(360, 480))


def test_the_data_says_its_input_shape_and_classes(files):
    info = ready(parquet(files, features=["x"])).info
    assert (info.input_shape, info.num_classes, info.task) == ((64,), 10, "classification")
    info = ready(webdataset(files)).info
    assert (info.input_shape, info.num_classes) == ((1, 8, 8), N)  # labels are the ids here


def test_a_checkpoint_records_every_readers_shard_and_offset(files):
    split = ready(webdataset(files)).train
    position = split.train_source(0, 2, settings(), seed=0).position(epoch=0, batches_done=4)
    assert (position["world_size"], position["workers"], position["batch_size"]) == (2, 0, BATCH)
    assert [r["offset"] for r in position["readers"]] == [20, 20]  # 4 x 20 samples: one shard and 20
    assert all(r["shard"].endswith(".tar") for r in position["readers"])


# ----------------------------------------------------------------------------- bad input
def test_a_missing_path_or_a_folder_without_data_is_a_config_error(files, tmp_path):
    with pytest.raises(ConfigError, match="data.path: .*does not exist"):
        Parquet(str(tmp_path / "nowhere")).check()
    with pytest.raises(ConfigError, match=r"data.path: no \.tar files"):
        WebDataset(str(tmp_path)).check()


def copy_shards(src: Path, dst: Path, suffix: str) -> Path:
    dst.mkdir()
    for f in sorted(src.glob(f"*{suffix}")):
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_a_truncated_parquet_file_is_named_or_left_out(files, tmp_path):
    folder = copy_shards(files / "pq", tmp_path / "pq", ".parquet")
    broken = sorted(folder.glob("*.parquet"))[3]
    broken.write_bytes(broken.read_bytes()[:200])
    with pytest.raises(ConfigError, match=broken.name):
        Parquet(str(folder), features=["id"]).check()
    report = Parquet(str(folder), features=["id"], val_fraction=0.0, on_bad_sample="skip").check()
    assert report.sizes["train"] == N - PER_SHARD and broken.name in report.warnings[0]


def corrupt_one_image(files, tmp_path) -> Path:
    """Shard 2's first PNG made unreadable."""
    folder = copy_shards(files / "wds", tmp_path / "wds", ".tar")
    shard = sorted(folder.glob("*.tar"))[2]
    corrupt_first_image(shard)
    return shard


def test_a_corrupt_image_fails_naming_its_shard_and_sample(files, tmp_path):
    shard = corrupt_one_image(files, tmp_path)
    split = ready(WebDataset(str(shard.parent), val_fraction=0.0)).train
    with pytest.raises(BadDataError, match=f"{shard.name} sample 00000120"):
        epoch_ids(split, 0, 1, 0, fmt="webdataset")


def test_skipped_bad_samples_are_counted_and_the_rest_trains(files, tmp_path):
    shard = corrupt_one_image(files, tmp_path)
    split = ready(WebDataset(str(shard.parent), val_fraction=0.0, on_bad_sample="skip")).train
    counter = BadSampleCounter(limit=5)
    source = split.train_source(0, 1, settings(), seed=0)
    seen = [i for b in counter.unwrap(source.loader(0, 0, 0)) for i in ids_of(b, "webdataset")]
    assert counter.count == 1 and sorted(seen) == [i for i in range(N) if i != 120]
    with pytest.raises(BadDataError, match="more than data.max_bad_samples=0"):
        list(BadSampleCounter(limit=0).unwrap(source.loader(0, 0, 0)))


# ----------------------------------------------------------------------------- image folder
@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    images, labels = G.digits()
    return G.write_image_folder(tmp_path_factory.mktemp("img") / "digits", images[:200], labels[:200])


def test_an_image_folder_lists_classes_on_the_driver_and_decodes_on_the_worker(image_folder):
    module = ImageFolder(str(image_folder), image_size=16, val_fraction=0.25)
    splits = ready(module)
    assert module.classes == [str(c) for c in range(10)]
    assert (len(splits.train), len(splits.val)) == (150, 50)
    x, y = splits.train[0]
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32 and 0 <= int(y) < 10
    assert splits.info.input_shape == (1, 16, 16) and splits.info.num_classes == 10


def test_a_corrupt_image_file_is_named_or_skipped(image_folder, tmp_path):
    import shutil

    folder = Path(shutil.copytree(image_folder, tmp_path / "digits"))
    bad = sorted((folder / "3").glob("*.png"))[0]
    bad.write_bytes(b"not a png")
    index = ready(ImageFolder(str(folder), val_fraction=0.0)).train.files.index(str(bad))
    with pytest.raises(BadDataError, match=bad.name):
        ready(ImageFolder(str(folder), val_fraction=0.0)).train[index]
    skipping = ready(ImageFolder(str(folder), val_fraction=0.0, on_bad_sample="skip")).train
    assert skipping.may_skip_samples and "not a png" not in repr(skipping[index])
    assert skipping[index].source == str(bad)


def test_an_image_folder_without_class_folders_is_a_config_error(tmp_path):
    (tmp_path / "flat").mkdir()
    with pytest.raises(ConfigError, match="no class folders"):
        ImageFolder(str(tmp_path / "flat")).check()


def test_any_fsspec_url_works_like_a_folder(files):
    """An in-memory fsspec filesystem stands in for an object store (s3://, gs://: same code path)."""
    import fsspec

    memory = fsspec.filesystem("memory")
    for f in sorted((files / "pq").glob("*.parquet"))[:4]:
        memory.pipe(f"/bucket/table/{f.name}", f.read_bytes())
    split = ready(Parquet("memory://bucket/table", features=["id"], val_fraction=0.0)).train
    assert split.index.urls[0].startswith("memory://") and len(split) == 4 * PER_SHARD
    assert sorted(i for b in epoch_ids(split, 0, 1, 0) for i in b) == list(range(4 * PER_SHARD))
