"""The data goes into Ray's object store once; workers map it without copying."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from orchestrator import config as C
from orchestrator.data import builtin as data
from orchestrator.data.memory import ChunkedRows, ChunkSource, split_dataset
from orchestrator.data.object_store import fetch, share

pytestmark = pytest.mark.ray


def large_config(samples: int) -> C.Config:
    # 3 x 32 x 32 float32 rows of 12 KiB: a few thousand rows span several 64 MiB chunks.
    return C.Config(model=C.CNNConfig(), optimizer=C.AdamConfig(), scheduler=C.ConstantSchedulerConfig(),
                    data=C.SyntheticClassificationConfig(num_samples=samples, num_features=3072,
                                                         sample_shape=[3, 32, 32], num_classes=10,
                                                         val_fraction=0.1))


def test_a_large_split_is_put_in_chunks_that_workers_map_read_only(ray_session):
    bundle = data.load(large_config(12_000))  # ~130 MiB of training rows
    source = bundle.arrays["x_train"]
    assert isinstance(source, ChunkSource)
    shared = share(bundle)
    assert len(shared.refs["x_train"]) == -(-len(source) // source.rows_per_chunk) > 1
    assert len(shared.refs["x_val"]) == 1  # 13 MiB: one piece
    mapped = fetch(shared)
    for chunk in mapped.arrays["x_train"]:
        assert not chunk.flags.writeable and not chunk.flags.owndata  # a view of shared memory
    view = split_dataset(mapped, "train")
    assert isinstance(view.x, ChunkedRows)
    first_chunk = mapped.arrays["x_train"][0]
    assert view.x.chunks[0].data_ptr() == first_chunk.ctypes.data  # the tensor is that same memory


def test_chunked_rows_gather_like_one_array(ray_session):
    bundle = data.load(large_config(12_000))
    whole = torch.from_numpy(bundle.materialized().arrays["x_train"])
    rows = split_dataset(fetch(share(bundle)), "train").x
    indices = torch.randint(0, len(whole), (256,), generator=torch.Generator().manual_seed(0))
    assert len(rows) == len(whole)
    assert torch.equal(rows[indices], whole[indices])


def test_small_arrays_stay_whole(ray_session):
    bundle = data.load(large_config(500))
    mapped = fetch(share(bundle))
    assert isinstance(mapped.arrays["x_train"], np.ndarray)
    assert isinstance(split_dataset(mapped, "train").x, torch.Tensor)
