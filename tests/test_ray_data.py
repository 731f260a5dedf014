"""data=ray_data: a ray.data.Dataset fed to each rank through streaming_split.

Batch mapping and bad config first (no Ray), then on the suite's shared Ray: the per-rank iterators
themselves (equal, disjoint, reshuffled every epoch), a 2-worker run from a Dataset object, and its
resume mid-epoch, which starts the epoch again with a recorded event.
"""

from __future__ import annotations

import json

import pytest
import torch

import orchestrator
from orchestrator.config import ConfigError
from orchestrator.data.ray_data import RayDataset
from orchestrator.data.ray_data_split import Columns
from tests.helpers import compose, read_scalars
from tests.user_project import ray_datasets

COLUMNS = ["data=ray_data", "data.feature_columns=[x]", "data.label_column=label", "data.num_classes=2",
           "data.batch_size=32"]
STEPS = "tests.user_project.ray_datasets.StepsPerRank"


# ----------------------------------------------------------------------------- no Ray
@pytest.mark.parametrize("columns,batch,x_shape,x_dtype", [
    (Columns(("x",), "y"), {"x": torch.zeros(4, 3, 2, dtype=torch.float64), "y": torch.ones(4)}, (4, 3, 2),
     torch.float32),                                    # one column keeps its shape, as float32
    (Columns(("a",), "y"), {"a": torch.arange(4), "y": torch.ones(4)}, (4, 1), torch.int64),  # scalar: (N, 1)
    (Columns(("a", "b"), "y"), {"a": torch.arange(4), "b": torch.zeros(4, 2), "y": torch.ones(4)}, (4, 3),
     torch.float32),                                    # several: flattened, concatenated
])
def test_named_columns_make_x_y_batches(columns, batch, x_shape, x_dtype):
    x, y = columns.to_batch(batch)
    assert tuple(x.shape) == x_shape and x.dtype == x_dtype
    assert y.dtype == torch.int64  # class labels
    assert columns.with_task(regression=True).to_batch(batch)[1].dtype == torch.float32


def test_without_columns_batches_stay_dicts_of_tensors():
    batch = {"x": torch.zeros(2, 3), "label": torch.ones(2)}
    assert Columns().to_batch(batch) is batch


@pytest.mark.parametrize("overrides,message", [
    (["data=ray_data", "data.feature_columns=[x]"], r"^data\.label_column must be set with the other"),
    (["data=ray_data", "data.label_column=y"], r"^data\.feature_columns must be set with the other"),
    (["data=ray_data", "data.num_workers=2"], r"^data\.num_workers does not apply to Ray Data"),
    (["data=ray_data", "data.shuffle=global"], r"^data\.shuffle must be one of"),
])
def test_bad_settings_fail_at_composition_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose(*overrides)


@pytest.mark.parametrize("dataset,message", [
    (None, r"^data\.dataset: must name a function"),
    ("nowhere.make_ds", r"^data\.dataset: cannot import 'nowhere\.make_ds'"),
    ("tests.user_project.ray_datasets.FEATURES", r"^data\.dataset: .*FEATURES is not callable"),
])
def test_a_dataset_that_cannot_be_called_fails_before_ray_starts(dataset, message):
    with pytest.raises(ConfigError, match=message):
        RayDataset(dataset).check()


# ----------------------------------------------------------------------------- on Ray
@pytest.mark.ray
def test_streaming_split_gives_each_rank_equal_disjoint_rows_in_another_order_every_epoch(ray_session):
    data = RayDataset(ray_datasets.blobs(rows=513), "tests.user_project.ray_datasets.val_blobs",
                      feature_columns=["x", "id"], label_column="label", num_classes=2,
                      shuffle="blocks").to_workers()  # the run below shuffles locally (the default)
    assert data.info.input_shape == (9,) and data.info.num_classes == 2
    assert data.info.sizes == {"train": 513, "val": 128}

    @ray_session.remote
    def read(shared, rank):
        from orchestrator.data.loader import LoaderSettings
        from orchestrator.data.module import WorkerContext

        splits = shared.setup(WorkerContext(rank, 2, seed=0))
        settings = LoaderSettings({"batch_size": 32}, on_gpu=False)
        source = splits.train.train_source(rank, 2, settings, seed=0)
        epochs = [[x[:, -1].long().tolist() for x, _ in source.loader(epoch, 0, 0)] for epoch in (0, 1)]
        val = [len(y) for _, y in splits.val.eval_loader(rank, 2, settings)]
        return source.batches_per_epoch(), epochs, val

    shared = data.for_attempt(2)  # one split for the gang: its iterators start each epoch together
    ranks = ray_session.get([read.remote(shared, rank) for rank in (0, 1)], timeout=120)
    for per_epoch, epochs, _ in ranks:
        assert per_epoch == 8 and [len(batches) for batches in epochs] == [8, 8]  # 513 // 2 // 32
    ids = {epoch: [[i for batch in rank[1][epoch] for i in batch] for rank in ranks] for epoch in (0, 1)}
    for epoch in (0, 1):
        assert not set(ids[epoch][0]) & set(ids[epoch][1])  # disjoint
        assert all(len(set(rows)) == 256 for rows in ids[epoch])  # no repeats within a rank
    assert ids[0][0] != ids[1][0]  # another order in the second epoch
    assert sum(sum(rank[2]) for rank in ranks) == 128  # validation: every row once across ranks


@pytest.mark.ray
def test_a_dataset_object_trains_two_workers_and_a_mid_epoch_resume_restarts_the_epoch(ray_session, tmp_path):
    run_dir, quick = tmp_path / "run", ["model=mlp", "trainer.log_every_n_steps=2", "checkpoint.every_n_steps=4",
                                        "checkpoint.every_epoch=false", "stopping.test_best=false"]
    # 512 rows, 2 ranks, batches of 32: 8 steps an epoch; stopped at step 12, in the middle of the second.
    first = orchestrator.run([*COLUMNS, *quick, "trainer.max_steps=12", "+callbacks.steps._target_=" + STEPS,
                              f"+callbacks.steps.folder={tmp_path / 'first'}"],
                             data=ray_datasets.blobs(), run_dir=run_dir, show_progress=False)
    assert first.status == "completed" and first.summary["steps"] == 12
    assert steps_per_rank(tmp_path / "first") == [12, 12]

    resumed = orchestrator.run([*COLUMNS, *quick, "data.dataset=tests.user_project.ray_datasets.blobs",
                                "data.val_dataset=tests.user_project.ray_datasets.val_blobs", "trainer.max_epochs=2",
                                "trainer.resume=auto", "+callbacks.steps._target_=" + STEPS,
                                f"+callbacks.steps.folder={tmp_path / 'resumed'}"],
                               run_dir=run_dir, show_progress=False)
    assert resumed.status == "completed"
    events = [e for e in resumed.summary["events"] if e["event"] == "data_resume"]
    assert len(events) == 1 and "start of epoch 2" in events[0]["message"]
    assert "Ray Data stream has no position" in events[0]["message"]
    assert resumed.summary["steps"] == 12 + 8  # the whole second epoch again, not its last 4 steps
    assert steps_per_rank(tmp_path / "resumed") == [8, 8]
    assert resumed.metrics["val/accuracy"] > 0.9  # separable blobs
    assert "events/data_resume/text_summary" in text_tags(run_dir / "tb")
    assert read_scalars(run_dir / "tb")["train/loss"][-1][0] == 20


@pytest.mark.ray
@pytest.mark.parametrize("overrides,message", [
    (["data.dataset=tests.user_project.ray_datasets.not_a_dataset"],
     r"^data\.dataset: tests\.user_project\.ray_datasets\.not_a_dataset\(\) returned list, not a ray\.data\.Dataset"),
    (["data.dataset=tests.user_project.ray_datasets.blobs", "data.label_column=colour"],
     r"^data\.label_column: no column 'colour' in data\.dataset \(columns: x, label, id\)"),
])
def test_a_bad_dataset_fails_as_a_config_error_before_any_worker_starts(ray_session, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        orchestrator.run([*COLUMNS, *overrides], run_dir=tmp_path, show_progress=False)
    assert json.loads((tmp_path / "summary.json").read_text())["workers"] == []  # no gang was started


def steps_per_rank(folder):
    return [json.loads((folder / f"rank{rank}.json").read_text())["steps"] for rank in (0, 1)]


def text_tags(tb_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"tensors": 0})
    acc.Reload()
    return set(acc.Tags()["tensors"])
