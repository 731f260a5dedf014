"""Configuration: every group composes; bad input fails at composition, naming the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config import ConfigError
from tests.helpers import REPO, RAY_TMP, compose

CONF = REPO / "conf"
# Options that need a partner choice to make a valid run.
PARTNERS = {
    ("model", "gpt"): ["data=text"],
    ("data", "text"): ["model=gpt"],
    ("data", "mnist"): ["data.path=/nonexistent"],  # the path is checked when data loads, not here
    ("data", "image_folder"): ["data.path=/nonexistent"],
    ("data", "parquet"): ["data.path=/nonexistent"],
    ("data", "webdataset"): ["data.path=/nonexistent"],
    ("data", "synthetic_regression"): ["model=mlp"],
    ("loss", "mse"): ["data=synthetic_regression", "model=mlp"],
    ("loss", "bce"): ["data=synthetic_classification", "data.num_classes=2"],
    # A user's component in place of a built-in: an import path and its arguments.
    ("model", "custom"): ["model._target_=models.mlp.MLP", "+model.hidden_sizes=[8]"],
    ("data", "custom"): ["data._target_=orchestrator.data.builtin.Digits"],
    ("loss", "custom"): ["loss._target_=torch.nn.CrossEntropyLoss", "+loss.label_smoothing=0.1"],
    ("optimizer", "custom"): ["optimizer._target_=torch.optim.Adagrad", "+optimizer.lr=0.01"],
    ("scheduler", "custom"): ["scheduler._target_=torch.optim.lr_scheduler.ConstantLR"],
}


def group_options():
    for group_dir in sorted(p for p in CONF.iterdir() if p.is_dir()):
        for option in sorted(group_dir.glob("*.yaml")):
            yield group_dir.name, option.stem


@pytest.mark.parametrize("group,option", list(group_options()))
def test_every_config_group_option_composes(group, option):
    if group == "experiment":
        cfg = compose(f"+experiment={option}")
    else:
        cfg = compose(f"{group}={option}", *PARTNERS.get((group, option), []))
    if group not in ("experiment", "search"):
        assert getattr(cfg, group) is not None


def test_default_config_is_the_documented_default_job():
    cfg = compose()
    assert (cfg.model.name, cfg.data.name, cfg.optimizer.name) == ("cnn", "digits", "adam")
    assert cfg.scaling.num_workers == 2
    assert cfg.cluster.address is None


@pytest.mark.parametrize("override,key", [
    ("scaling.num_workers=0", "scaling.num_workers"),
    ("optimizer.lr=-0.1", "optimizer.lr"),
    ("data.val_fraction=1.5", "data.val_fraction"),
    ("model.dropout=1.0", "model.dropout"),
    ("trainer.max_epochs=0", "trainer.max_epochs"),
    ("scaling.placement_strategy=ANYWHERE", "scaling.placement_strategy"),
    ("trainer.precision=fp8", "trainer.precision"),
    ("scaling.min_workers=5", "scaling.min_workers"),
    ("failure.hang_timeout_s=0", "failure.hang_timeout_s"),
    ("scaling.gpus_per_worker=2", "scaling.gpus_per_worker"),  # one device per DDP process
])
def test_impossible_value_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        compose(override)


@pytest.mark.parametrize("override,key", [
    ("model.hiden_sizes=[64]", "model.hiden_sizes"),     # misspelt key
    ("trainer.max_epochs=ten", "trainer.max_epochs"),    # wrong type
    ("+trainer.num_worker=2", "trainer.num_worker"),     # appended unknown key
    ("model=mlp model.hidden_sizes=[a]", "model.hidden_sizes"),
    ("scaling.gpus_per_worker=0.5", "scaling.gpus_per_worker"),  # NCCL cannot share a GPU between ranks
])
def test_unknown_key_or_wrong_type_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[")):
        compose(*override.split())


def test_cross_group_mismatch_is_rejected():
    with pytest.raises(ConfigError, match="model"):
        compose("model=gpt")  # gpt needs text data
    with pytest.raises(ConfigError, match=r"^loss must be mse"):
        compose("data=synthetic_regression", "model=mlp", "loss=cross_entropy")
    with pytest.raises(ConfigError, match=r"^loss must be mse"), pytest.warns(FutureWarning, match="trainer.loss"):
        compose("data=synthetic_regression", "model=mlp", "trainer.loss=cross_entropy")  # the deprecated key
    with pytest.raises(ConfigError, match="trainer.precision"):
        compose("trainer.precision=fp16")  # fp16 needs a GPU


def test_missing_mandatory_value_names_the_key():
    with pytest.raises(ConfigError, match=r"data\.path"):
        compose("data=mnist")


def ray_sessions():
    return set(Path(RAY_TMP, "ray").glob("session_2*")) if Path(RAY_TMP, "ray").exists() else set()


@pytest.mark.parametrize("override,key", [
    ("scaling.num_workers=0", "scaling.num_workers"),
    ("optimizer.lrr=0.1", "optimizer.lrr"),
    # Hydra's own composition errors (issue 10, item 13): an unknown group option, a wrong type, bad syntax.
    ("model=resnet", "Could not find 'model/resnet'"),
    ("scaling.num_workers=abc", "scaling.num_workers"),
    ("scaling.num_workers=[", "scaling.num_workers=["),
    ("--config-dir=/nonexistent/conf", "/nonexistent/conf"),
])
def test_command_line_rejects_bad_config_before_starting_anything(tmp_path, override, key):
    before = ray_sessions()
    proc = subprocess.run([sys.executable, "-m", "orchestrator.train", override, f"hydra.run.dir={tmp_path}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert key in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert ray_sessions() == before, "no Ray instance may start for a bad config"
    assert not (tmp_path / "tb").exists()


def test_a_config_object_edited_by_hand_is_checked_again():
    from orchestrator.config import validate

    cfg = compose()
    cfg.scaling.num_workers = 0
    with pytest.raises(ConfigError, match=r"scaling\.num_workers"):
        validate(cfg)


def run_cli(*args: str, **env: str):
    return subprocess.run([sys.executable, "-m", "orchestrator.train", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, **env))


def test_hydra_errors_exit_2_in_multirun_mode_and_with_hydra_full_error(tmp_path):
    multirun = run_cli("-m", "model=resnet", f"hydra.sweep.dir={tmp_path}")
    assert multirun.returncode == 2 and "Could not find 'model/resnet'" in multirun.stderr
    full = run_cli("scaling.num_workers=abc", f"hydra.run.dir={tmp_path}", HYDRA_FULL_ERROR="1")
    assert full.returncode == 2 and "Traceback" in full.stderr  # the trace the user asked for


def test_the_exit_code_mapping_keeps_hydras_help_and_cfg():
    helped = run_cli("--help")
    assert helped.returncode == 0 and "== Configuration groups ==" in helped.stdout
    shown = run_cli("--cfg", "job", "scaling.num_workers=3")
    assert shown.returncode == 0 and "num_workers: 3" in shown.stdout


@pytest.mark.parametrize("old,new,value", [
    ("trainer.num_workers", "scaling.num_workers", 3),
    ("trainer.min_workers", "scaling.min_workers", 1),
    ("trainer.max_failures", "failure.max_failures", 5),
    ("cluster.cpus_per_worker", "scaling.cpus_per_worker", 2),
    ("cluster.placement_strategy", "scaling.placement_strategy", "SPREAD"),
    ("fault_tolerance.hang_timeout_s", "failure.hang_timeout_s", 7.0),
])
def test_the_old_scaling_and_failure_keys_still_work_for_one_release_with_a_warning(old, new, value):
    with pytest.warns(FutureWarning, match=rf"{old} is deprecated: use {new}"):
        cfg = compose(f"{old}={value}")
    section, key = new.split(".")
    assert getattr(getattr(cfg, section), key) == value
    old_section, old_key = old.split(".")
    assert getattr(getattr(cfg, old_section), old_key) is None  # one place holds the value


def test_an_old_key_with_an_impossible_value_is_still_rejected():
    with pytest.raises(ConfigError, match=r"scaling\.num_workers must be >= 1"), pytest.warns(FutureWarning):
        compose("trainer.num_workers=0")
