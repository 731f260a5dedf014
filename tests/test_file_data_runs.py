"""The file formats end to end on two Ray workers: each trains from small generated files, each
sample of an epoch reaches exactly one rank once, skipped bad samples show in TensorBoard, and a
missing path stops the command before anything starts (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import orchestrator
from orchestrator.data import generate as G
from tests.helpers import REPO, corrupt_first_image, read_scalars

pytestmark = pytest.mark.ray
RUN = ["scaling.num_workers=2", "model=mlp", "model.hidden_sizes=[32]", "trainer.log_every_n_steps=2",
       "optimizer.lr=0.01"]


@pytest.fixture(scope="module")
def digits():
    images, labels = G.digits()
    return images[:480], labels[:480]


def test_parquet_shards_give_each_sample_to_one_rank_once(ray_session, tmp_path, digits):
    images, labels = digits
    G.write_parquet(tmp_path / "pq", images / 255.0, labels, per_file=60, row_group=20, vector_column=True)
    ids = tmp_path / "ids"
    ids.mkdir()
    result = orchestrator.run([*RUN, "data=parquet", f"data.path={tmp_path / 'pq'}", "data.features=[id,x]",
                               "data.val_fraction=0", "data.batch_size=20", "trainer.max_epochs=1",
                               "step._target_=tests.user_project.components.RecordIds", f"+step.ids_dir={ids}"],
                              run_dir=tmp_path / "run", show_progress=False)
    assert result.status == "completed" and result.summary["world_size"] == 2
    per_rank = [[int(i) for line in (ids / f"rank{r}.txt").read_text().split("\n") for i in line.split()]
                for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) == 240
    assert sorted(per_rank[0] + per_rank[1]) == list(range(480))


def test_webdataset_shards_train_with_loader_workers_and_count_skipped_samples(ray_session, tmp_path, digits):
    images, labels = digits
    shards = G.write_webdataset(tmp_path / "wds", images, labels, per_shard=40)
    corrupt_first_image(sorted(shards.glob("*.tar"))[1])
    result = orchestrator.run([*RUN, "data=webdataset", f"data.path={shards}", "data.num_workers=1",
                               "data.batch_size=16", "data.on_bad_sample=skip", "trainer.max_epochs=2"],
                              run_dir=tmp_path / "run", show_progress=False)
    assert result.status == "completed"
    scalars = read_scalars(tmp_path / "run" / "tb")
    assert scalars["data/bad_samples"][-1][1] == 2.0  # the bad sample, skipped in each of the 2 epochs
    assert "val/accuracy" in result.metrics
    assert any(e["event"] == "bad_samples" and "shard-000001.tar" in e["message"]
               for e in result.summary["events"])


def test_an_image_folder_trains_on_two_workers(ray_session, tmp_path, digits):
    images, labels = digits
    folder = G.write_image_folder(tmp_path / "img", images[:240], labels[:240])
    result = orchestrator.run([*RUN, "data=image_folder", f"data.path={folder}", "data.image_size=12",
                               "data.batch_size=16", "trainer.max_epochs=2"],
                              run_dir=tmp_path / "run", show_progress=False)
    # 240 images, 24 validate: 216 // 2 ranks // 16 = 6 steps an epoch
    assert result.status == "completed" and result.summary["steps"] == 12
    scalars = read_scalars(tmp_path / "run" / "tb")
    assert np.isfinite(scalars["train/loss"][-1][1]) and "val/loss" in scalars


def final_weights(run_dir: Path):
    import io

    import torch

    latest = sorted((run_dir / "checkpoints").glob("step-*.pt"))[-1]
    return latest.name, torch.load(io.BytesIO(latest.read_bytes()), weights_only=True)["model"]


def test_a_worker_killed_mid_epoch_resumes_its_stream_where_it_was(ray_session, tmp_path, digits):
    """The restarted gang resumes from the step-10 checkpoint in the middle of epoch 2, each reader at its
    recorded shard and offset: the run ends with the uninterrupted run's weights, bit for bit."""
    images, labels = digits
    G.write_parquet(tmp_path / "pq", images / 255.0, labels, per_file=60, row_group=20, vector_column=True)
    stream = [*RUN, "data=parquet", f"data.path={tmp_path / 'pq'}", "data.features=[x]", "data.val_fraction=0",
              "data.batch_size=32", "model.dropout=0", "trainer.max_steps=16", "trainer.max_epochs=10",
              "checkpoint.every_n_steps=5", "checkpoint.every_epoch=false"]
    orchestrator.run(stream, run_dir=tmp_path / "whole", show_progress=False)
    killed = orchestrator.run([*stream, "chaos.kind=exit", "chaos.rank=1", "chaos.at_step=13", "failure.recovery=disk"],
                              run_dir=tmp_path / "killed", show_progress=False)
    assert killed.summary["restarts"] and killed.summary["restarts"][0]["resume_step"] == 10
    (name, whole), (name_killed, resumed) = final_weights(tmp_path / "whole"), final_weights(tmp_path / "killed")
    assert name == name_killed
    assert all(bool((whole[k] == resumed[k]).all()) for k in whole)


def test_a_missing_path_exits_2_naming_the_key_before_anything_starts(tmp_path):
    done = subprocess.run([sys.executable, "-m", "orchestrator.train", "data=webdataset",
                           f"data.path={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "data.path" in done.stderr and "does not exist" in done.stderr and "Traceback" not in done.stderr
