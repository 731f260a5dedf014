"""The user's own model, data, loss, step and metrics, by import path and as Python objects.

Checks that need no Ray first (composition fails before anything starts, naming the key), then
runs on the suite's shared local Ray.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import orchestrator
from orchestrator.config import ConfigError
from tests.helpers import REPO, compose, read_scalars
from tests.user_project import components as user

TINY = ["model=custom", "model._target_=tests.user_project.components.TinyNet", "+model.depth=2"]
BLOBS = ["data=custom", "data._target_=tests.user_project.components.blobs"]
QUICK = ["trainer.max_epochs=2", "trainer.log_every_n_steps=2", "optimizer.lr=0.01"]


# ----------------------------------------------------------------------------- checked on the driver
def test_a_user_model_composes_with_its_arguments():
    cfg = compose(*TINY, "+model.width=8")
    assert cfg.model == {"_target_": "tests.user_project.components.TinyNet", "depth": 2, "width": 8}
    assert cfg.name == "TinyNet-digits"


@pytest.mark.parametrize("overrides,message", [
    (["model=custom", "model._target_=nowhere.nets.Net"], r"model\._target_: cannot import 'nowhere\.nets\.Net'"),
    (["model=custom", "model._target_=tests.user_project.components.Nope"],
     r"model\._target_: .*has no attribute 'Nope'"),
    (["model=custom", "model._target_=tests.user_project.components.TinyNet"],
     r"^model: .*TinyNet.*missing a required argument: 'depth'"),
    ([*TINY, "+model.colour=3"], r"^model: .*TinyNet.*unexpected keyword argument 'colour'"),
    ([*BLOBS, "+data.rows=3"], r"^data: .*blobs.*unexpected keyword argument 'rows'"),
    (["step._target_=tests.user_project.components.missing_step"], r"step\._target_: .*missing_step"),
    (["+step.colour=3"], r"^step: .*SupervisedStep.*unexpected keyword argument 'colour'"),  # default, with an arg
    (["optimizer=custom", "optimizer._target_=torch.optim.NoSuchOptimizer"], r"optimizer\._target_"),
    (["+metrics.f1._target_=torchmetrics.classification.NoSuchScore"], r"metrics\.f1\._target_"),
    (["model=custom"], r"model\._target_"),
])
def test_a_user_component_that_cannot_be_built_fails_at_composition_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose(*overrides)


def test_the_command_line_exits_2_without_a_traceback_before_ray_starts(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "orchestrator.train", f"hydra.run.dir={tmp_path}", "model=custom",
                           "model._target_=nowhere.nets.Net"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "model._target_: cannot import 'nowhere.nets.Net'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "tb").exists()  # nothing started


def test_composing_the_default_config_does_not_import_torch():
    """The driver imports torch while Ray starts (launcher.prepare), not before: ~1.2 s of start-up."""
    code = ("import sys; import orchestrator; orchestrator.compose(['scaling.num_workers=2']); "
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


# ----------------------------------------------------------------------------- trained on Ray
pytestmark_ray = pytest.mark.ray


@pytestmark_ray
def test_a_user_model_and_dataset_by_import_path_train_on_two_workers(ray_session, tmp_path):
    result = orchestrator.run([*TINY, *BLOBS, *QUICK, "trainer.max_epochs=5"], run_dir=tmp_path, show_progress=False)
    assert result.status == "completed"
    assert result.metrics["val/accuracy"] > 0.9  # separable blobs
    assert result.summary["world_size"] == 2
    scalars = read_scalars(tmp_path / "tb")
    assert scalars["train/loss"][-1][1] < scalars["train/loss"][0][1]


@pytestmark_ray
def test_python_objects_dict_batches_and_a_step_function_with_its_metric(ray_session, tmp_path):
    result = orchestrator.run([*QUICK, "data.batch_size=32", "stopping.early.monitor=val/hit_rate",
                               "stopping.early.mode=max", "checkpoint.monitor=val/hit_rate", "checkpoint.mode=max"],
                              model=lambda: user.TinyNet(num_outputs=2, depth=1), data=user.dict_blobs,
                              step=user.dict_step, run_dir=tmp_path, show_progress=False)
    assert result.status == "completed"
    assert 0.9 < result.metrics["val/hit_rate"] <= 1.0      # reduced over the whole validation split
    assert "train/hit_rate" in read_scalars(tmp_path / "tb")
    assert "val/accuracy" not in result.metrics             # a custom step reports its own metrics
    assert result.summary["checkpoints"]["best_step"] is not None  # ranked by val/hit_rate


@pytestmark_ray
def test_a_torchmetrics_metric_is_synchronised_across_ranks_and_can_be_monitored(ray_session, tmp_path):
    overrides = ["model=mlp", "model.hidden_sizes=[32]", "trainer.max_epochs=2", "data.batch_size=64",
                 "+metrics.f1._target_=torchmetrics.classification.MulticlassF1Score", "+metrics.f1.num_classes=10",
                 "+metrics.f1.average=macro", "checkpoint.monitor=val/f1", "checkpoint.mode=max"]
    result = orchestrator.run(overrides, run_dir=tmp_path, show_progress=False)
    scalars = read_scalars(tmp_path / "tb")
    assert 0 < result.metrics["val/f1"] <= 1 and "train/f1" in scalars
    assert result.metrics["val/f1"] == pytest.approx(scalars["val/f1"][-1][1])


@pytestmark_ray
def test_a_dataset_factory_that_raises_fails_the_run_with_its_message(ray_session, tmp_path):
    with pytest.raises(orchestrator.RunFailed, match="the bucket is not reachable"):
        orchestrator.run([*TINY, "data=custom", "data._target_=tests.user_project.components.broken_dataset",
                          "failure.max_failures=1"], run_dir=tmp_path, show_progress=False)


@pytestmark_ray
def test_a_step_function_that_returns_no_loss_fails_the_run_saying_so(ray_session, tmp_path):
    with pytest.raises(orchestrator.RunFailed, match="must return the loss"):
        orchestrator.run([*TINY, *BLOBS, "step._target_=tests.user_project.components.no_loss_step",
                          "failure.max_failures=1"], run_dir=tmp_path, show_progress=False)


@pytestmark_ray
def test_a_user_callback_by_import_path_sees_the_hooks_and_can_end_the_run(ray_session, tmp_path):
    result = orchestrator.run([*TINY, *BLOBS, "trainer.max_epochs=20", "trainer.val_every_n_steps=4",
                               "+callbacks.stop._target_=tests.user_project.components.StopAfter",
                               "+callbacks.stop.step=10"], run_dir=tmp_path, show_progress=False)
    assert result.status == "completed" and result.summary["steps"] == 10
    assert "StopAfter reached step 10" in result.summary["stop_reason"]
    assert result.metrics["user/steps"] == 10 and result.metrics["user/validations"] >= 2


def test_a_user_callback_with_a_wrong_argument_fails_at_composition():
    with pytest.raises(ConfigError, match=r"^callbacks\.stop: .*StopAfter.*(missing a required argument: 'step'|unexpected keyword argument 'stepp')"):
        compose("+callbacks.stop._target_=tests.user_project.components.StopAfter", "+callbacks.stop.stepp=3")


@pytestmark_ray
def test_a_model_that_needs_the_class_count_from_data_that_does_not_say_fails_naming_what_to_set(ray_session,
                                                                                                 tmp_path):
    with pytest.raises(Exception, match=r"takes num_outputs, but the data does not tell how many classes"):
        orchestrator.run([*TINY, "data=custom", "data._target_=tests.user_project.components.unlabelled_blobs",
                          "failure.max_failures=1"], run_dir=tmp_path, show_progress=False)


@pytestmark_ray
def test_a_user_failure_policy_by_import_path_decides_instead_of_the_table(ray_session, tmp_path):
    with pytest.raises(orchestrator.RunFailed, match="debugging: no restarts"):
        orchestrator.run([*TINY, *BLOBS, "chaos.kind=raise", "chaos.at_step=3", "failure.max_failures=5",
                          "+failure.policy._target_=tests.user_project.components.NeverRestart"],
                         run_dir=tmp_path, show_progress=False)
    summary = __import__("json").loads((tmp_path / "summary.json").read_text())
    assert len(summary["restarts"]) == 1 and summary["restarts"][0]["action"] == "raise"
