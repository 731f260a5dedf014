"""The CUDA/NCCL path. Skipped without CUDA (there is no GPU on the CI machine); run on a GPU machine."""

from __future__ import annotations

import pytest
import torch

import orchestrator

pytestmark = [pytest.mark.gpu, pytest.mark.ray,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def gpu_run(*overrides):
    workers = min(2, torch.cuda.device_count())
    return ["model=cnn", "scaling.gpus_per_worker=1", f"scaling.num_workers={workers}", "trainer.max_epochs=3",
            *overrides]


def test_nccl_gang_trains_and_reaches_accuracy(ray_session, tmp_path):
    result = orchestrator.run(gpu_run(), run_dir=tmp_path, show_progress=False)
    assert result.status == "completed" and result.metrics["val/accuracy"] > 0.9
    assert all(w["gpus"] for w in result.summary["workers"])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_the_gpu(ray_session, tmp_path, precision):
    result = orchestrator.run(gpu_run(f"trainer.precision={precision}"), run_dir=tmp_path, show_progress=False)
    assert result.status == "completed" and result.metrics["val/accuracy"] > 0.8


def test_a_gpu_run_resumes_from_its_checkpoint(ray_session, tmp_path):
    orchestrator.run(gpu_run("trainer.max_epochs=2"), run_dir=tmp_path, show_progress=False)
    resumed = orchestrator.run(gpu_run("trainer.max_epochs=3", "trainer.resume=auto"), run_dir=tmp_path,
                               show_progress=False)
    assert resumed.status == "completed" and resumed.summary["epochs"] == 3
    assert any(e["event"] == "resume" for e in resumed.summary["events"])
