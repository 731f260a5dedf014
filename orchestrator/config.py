"""Typed configuration: one dataclass per component, checked where it is defined.

These are plain dataclasses (no Hydra or OmegaConf import) so that they can be
pickled into Ray workers, which never import Hydra. Hydra validates the types
and key names at composition time (see ``config_store.py``); the value checks
live in each ``__post_init__`` and run when the composed config is frozen into
these classes, before any actor starts. Every message names the dotted key.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

# OmegaConf's marker for "must be set"; a plain string keeps this module free of OmegaConf.
MISSING = "???"


class ConfigError(ValueError):
    """A configuration value that cannot work. The message starts with the dotted key."""


def require(ok: bool, key: str, rule: str, value) -> None:
    if not ok:
        raise ConfigError(f"{key} {rule} (got {value!r})")


def require_choice(key: str, value, choices) -> None:
    require(value in choices, key, f"must be one of {sorted(choices)}", value)


# ----------------------------------------------------------------------------- model
INIT_SCHEMES = {"default", "xavier", "kaiming", "orthogonal"}


@dataclass
class ModelConfig:
    name: str = MISSING
    # Weight initialisation applied after the model is built ("default" keeps PyTorch's).
    init: str = "default"

    def __post_init__(self):
        require_choice("model.init", self.init, INIT_SCHEMES)


@dataclass
class MLPConfig(ModelConfig):
    name: str = "mlp"
    hidden_sizes: List[int] = field(default_factory=lambda: [128, 64])
    activation: str = "relu"
    dropout: float = 0.0
    batch_norm: bool = False

    def __post_init__(self):
        super().__post_init__()
        require(len(self.hidden_sizes) > 0 and all(h > 0 for h in self.hidden_sizes),
                "model.hidden_sizes", "must be a non-empty list of positive sizes", self.hidden_sizes)
        require_choice("model.activation", self.activation, {"relu", "tanh", "gelu", "sigmoid"})
        require(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)", self.dropout)


@dataclass
class CNNConfig(ModelConfig):
    name: str = "cnn"
    channels: List[int] = field(default_factory=lambda: [32, 64])
    dropout: float = 0.25
    batch_norm: bool = True

    def __post_init__(self):
        super().__post_init__()
        require(len(self.channels) > 0 and all(c > 0 for c in self.channels),
                "model.channels", "must be a non-empty list of positive channel counts", self.channels)
        require(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)", self.dropout)


@dataclass
class GPTConfig(ModelConfig):
    name: str = "gpt"
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        require(self.n_layer > 0, "model.n_layer", "must be > 0", self.n_layer)
        require(self.n_head > 0, "model.n_head", "must be > 0", self.n_head)
        require(self.n_embd > 0 and self.n_embd % self.n_head == 0, "model.n_embd",
                f"must be a positive multiple of model.n_head={self.n_head}", self.n_embd)
        require(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)", self.dropout)


# ----------------------------------------------------------------------------- data
@dataclass
class DataConfig:
    name: str = MISSING
    # Per-worker batch size; the global batch is batch_size * num_workers * accumulate_grad_batches.
    batch_size: int = 64
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    # Replace training labels by a random permutation of them (a memorisation probe).
    random_labels: bool = False
    # k-fold cross-validation: with cv_folds=k > 1, validation is fold cv_fold of the non-test data
    # (data.val_fraction is then unused). Sweep cv_fold over 0..k-1 (search=kfold does).
    cv_folds: int = 0
    cv_fold: int = 0

    def __post_init__(self):
        require(self.batch_size > 0, "data.batch_size", "must be > 0", self.batch_size)
        require(self.cv_folds == 0 or self.cv_folds >= 2, "data.cv_folds", "must be 0 (off) or >= 2",
                self.cv_folds)
        require(0 <= self.cv_fold < max(self.cv_folds, 1), "data.cv_fold",
                f"must be in [0, data.cv_folds={self.cv_folds})", self.cv_fold)
        require(0.0 <= self.val_fraction < 1.0, "data.val_fraction", "must be in [0, 1)", self.val_fraction)
        require(0.0 <= self.test_fraction < 1.0, "data.test_fraction", "must be in [0, 1)", self.test_fraction)
        require(self.val_fraction + self.test_fraction < 1.0, "data.test_fraction",
                f"plus data.val_fraction={self.val_fraction} must leave training data", self.test_fraction)


@dataclass
class DigitsConfig(DataConfig):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, offline)."""
    name: str = "digits"
    # Resize the 8x8 images (bilinear), e.g. 28 to feed a 784-input MLP.
    image_size: int = 8

    def __post_init__(self):
        super().__post_init__()
        require(self.image_size >= 8, "data.image_size", "must be >= 8", self.image_size)


@dataclass
class MNISTConfig(DataConfig):
    """MNIST-format IDX files (optionally gzipped) in a local folder."""
    name: str = "mnist"
    path: str = MISSING
    train_images: str = "train-images-idx3-ubyte"
    train_labels: str = "train-labels-idx1-ubyte"


@dataclass
class SyntheticClassificationConfig(DataConfig):
    name: str = "synthetic_classification"
    num_samples: int = 4096
    num_features: int = 32
    num_classes: int = 4
    # Distance between class centres in units of the noise's standard deviation.
    class_sep: float = 2.0
    # Shape each sample is reshaped to, e.g. [3, 32, 32] for a CNN; empty keeps [num_features].
    sample_shape: List[int] = field(default_factory=list)

    def __post_init__(self):
        super().__post_init__()
        require(self.num_samples > 1, "data.num_samples", "must be > 1", self.num_samples)
        require(self.num_features > 0, "data.num_features", "must be > 0", self.num_features)
        require(self.num_classes >= 2, "data.num_classes", "must be >= 2", self.num_classes)
        if self.sample_shape:
            size = 1
            for d in self.sample_shape:
                size *= d
            require(size == self.num_features, "data.sample_shape",
                    f"must hold data.num_features={self.num_features} values", self.sample_shape)


@dataclass
class SyntheticRegressionConfig(DataConfig):
    name: str = "synthetic_regression"
    num_samples: int = 4096
    num_features: int = 16
    num_targets: int = 1
    noise: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        require(self.num_samples > 1, "data.num_samples", "must be > 1", self.num_samples)
        require(self.num_features > 0, "data.num_features", "must be > 0", self.num_features)
        require(self.num_targets > 0, "data.num_targets", "must be > 0", self.num_targets)
        require(self.noise >= 0, "data.noise", "must be >= 0", self.noise)


@dataclass
class TextConfig(DataConfig):
    """Characters of a text file; by default Python's own standard-library sources (always offline)."""
    name: str = "text"
    path: Optional[str] = None
    max_chars: int = 1_000_000
    block_size: int = 64
    # Distance between the starts of consecutive training windows (block_size: no overlap).
    stride: Optional[int] = None

    def __post_init__(self):
        super().__post_init__()
        require(self.max_chars > 0, "data.max_chars", "must be > 0", self.max_chars)
        require(self.block_size > 1, "data.block_size", "must be > 1", self.block_size)
        require(self.stride is None or self.stride > 0, "data.stride", "must be > 0", self.stride)


# ----------------------------------------------------------------------------- optimisation
@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = 1e-3
    weight_decay: float = 0.0
    # Gradient clipping; None disables.
    clip_grad_norm: Optional[float] = None
    clip_grad_value: Optional[float] = None

    def __post_init__(self):
        require(self.lr > 0, "optimizer.lr", "must be > 0", self.lr)
        require(self.weight_decay >= 0, "optimizer.weight_decay", "must be >= 0", self.weight_decay)
        require(self.clip_grad_norm is None or self.clip_grad_norm > 0,
                "optimizer.clip_grad_norm", "must be > 0 or null", self.clip_grad_norm)
        require(self.clip_grad_value is None or self.clip_grad_value > 0,
                "optimizer.clip_grad_value", "must be > 0 or null", self.clip_grad_value)


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False

    def __post_init__(self):
        super().__post_init__()
        require(0.0 <= self.momentum < 1.0, "optimizer.momentum", "must be in [0, 1)", self.momentum)
        require(not self.nesterov or self.momentum > 0, "optimizer.nesterov",
                "needs optimizer.momentum > 0", self.nesterov)


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8

    def __post_init__(self):
        super().__post_init__()
        require(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
                "optimizer.betas", "must be two numbers in [0, 1)", self.betas)
        require(self.eps > 0, "optimizer.eps", "must be > 0", self.eps)


@dataclass
class AdamWConfig(AdamConfig):
    name: str = "adamw"
    weight_decay: float = 0.01


@dataclass
class RMSPropConfig(OptimizerConfig):
    name: str = "rmsprop"
    alpha: float = 0.99
    momentum: float = 0.0
    eps: float = 1e-8

    def __post_init__(self):
        super().__post_init__()
        require(0.0 < self.alpha < 1.0, "optimizer.alpha", "must be in (0, 1)", self.alpha)
        require(0.0 <= self.momentum < 1.0, "optimizer.momentum", "must be in [0, 1)", self.momentum)


@dataclass
class SchedulerConfig:
    name: str = MISSING
    # Linear warm-up from 0 over this many optimizer steps.
    warmup_steps: int = 0

    def __post_init__(self):
        require(self.warmup_steps >= 0, "scheduler.warmup_steps", "must be >= 0", self.warmup_steps)


@dataclass
class ConstantSchedulerConfig(SchedulerConfig):
    name: str = "constant"


@dataclass
class StepSchedulerConfig(SchedulerConfig):
    name: str = "step"
    # Multiply the learning rate by gamma every step_epochs epochs.
    step_epochs: int = 10
    gamma: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        require(self.step_epochs > 0, "scheduler.step_epochs", "must be > 0", self.step_epochs)
        require(0.0 < self.gamma <= 1.0, "scheduler.gamma", "must be in (0, 1]", self.gamma)


@dataclass
class CosineSchedulerConfig(SchedulerConfig):
    name: str = "cosine"
    warmup_steps: int = 50
    # Final learning rate as a fraction of optimizer.lr.
    min_lr_ratio: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        require(0.0 <= self.min_lr_ratio <= 1.0, "scheduler.min_lr_ratio", "must be in [0, 1]",
                self.min_lr_ratio)


# ----------------------------------------------------------------------------- trainer
LOSSES = {"auto", "cross_entropy", "bce", "mse"}
PRECISIONS = {"fp32", "bf16", "fp16"}


@dataclass
class TrainerConfig:
    num_workers: int = 2
    max_epochs: int = 10
    # Stop after this many optimizer steps even if epochs remain (null: epochs decide).
    max_steps: Optional[int] = None
    seed: int = 0
    # "auto": cross-entropy for classification and text, MSE for regression.
    loss: str = "auto"
    # Reduce metrics across ranks and report them every N optimizer steps (a sync point).
    log_every_n_steps: int = 10
    # Validate every N optimizer steps; null validates at the end of every epoch.
    val_every_n_steps: Optional[int] = None
    # Micro-batches per optimizer step; all-reduce only on the last one (DDP no_sync).
    accumulate_grad_batches: int = 1
    # "auto": CUDA when the worker has a GPU, else CPU.
    device: str = "auto"
    precision: str = "fp32"
    # null: start fresh; "auto": continue from this run dir's newest good checkpoint (fresh if none);
    # or a run dir / checkpoint file to continue from.
    resume: Optional[str] = None
    # Restarts allowed (worker death, lost node, hang) before the run fails.
    max_failures: int = 3
    # Elastic training: continue with as few as min_workers when the cluster shrank
    # (null: always wait for num_workers).
    min_workers: Optional[int] = None

    def __post_init__(self):
        require(self.num_workers >= 1, "trainer.num_workers", "must be >= 1", self.num_workers)
        require(self.max_epochs >= 1, "trainer.max_epochs", "must be >= 1", self.max_epochs)
        require(self.max_steps is None or self.max_steps >= 1, "trainer.max_steps",
                "must be >= 1 or null", self.max_steps)
        require(self.seed >= 0, "trainer.seed", "must be >= 0", self.seed)
        require_choice("trainer.loss", self.loss, LOSSES)
        require(self.log_every_n_steps >= 1, "trainer.log_every_n_steps", "must be >= 1",
                self.log_every_n_steps)
        require(self.val_every_n_steps is None or self.val_every_n_steps >= 1,
                "trainer.val_every_n_steps", "must be >= 1 or null", self.val_every_n_steps)
        require(self.accumulate_grad_batches >= 1, "trainer.accumulate_grad_batches", "must be >= 1",
                self.accumulate_grad_batches)
        require_choice("trainer.device", self.device, {"auto", "cpu", "cuda"})
        require_choice("trainer.precision", self.precision, PRECISIONS)
        require(self.resume is None or self.resume.strip() != "", "trainer.resume",
                "must be null, 'auto' or a path", self.resume)
        require(self.max_failures >= 0, "trainer.max_failures", "must be >= 0", self.max_failures)
        require(self.min_workers is None or 1 <= self.min_workers <= self.num_workers, "trainer.min_workers",
                f"must be null or in [1, trainer.num_workers={self.num_workers}]", self.min_workers)


# ----------------------------------------------------------------------------- stopping
@dataclass
class EarlyStoppingConfig:
    # Any validation metric, e.g. val/loss or val/accuracy; null turns early stopping off.
    monitor: Optional[str] = None
    mode: str = "min"
    # Validations without an improvement of at least min_delta before stopping.
    patience: int = 5
    min_delta: float = 0.0

    def __post_init__(self):
        require(self.monitor is None or self.monitor.startswith("val/"), "stopping.early.monitor",
                "must be a validation metric (val/...) or null", self.monitor)
        require_choice("stopping.early.mode", self.mode, {"min", "max"})
        require(self.patience >= 1, "stopping.early.patience", "must be >= 1", self.patience)
        require(self.min_delta >= 0, "stopping.early.min_delta", "must be >= 0", self.min_delta)


@dataclass
class OverfittingConfig:
    # Signal when validation loss rises while training loss falls, `patience` validations in a row.
    enabled: bool = True
    patience: int = 3
    stop: bool = False

    def __post_init__(self):
        require(self.patience >= 1, "stopping.overfitting.patience", "must be >= 1", self.patience)


@dataclass
class StoppingConfig:
    early: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    overfitting: OverfittingConfig = field(default_factory=OverfittingConfig)
    # At the end, evaluate the best model (by checkpoint.monitor) on the test split (data.test_fraction).
    test_best: bool = True


# ----------------------------------------------------------------------------- gradient health
@dataclass
class HealthConfig:
    # Per-layer gradient/weight norms and update-to-weight ratios every N steps (0: off).
    layer_stats_every_n_steps: int = 50
    # Weight and gradient histograms every N steps (0: off).
    histogram_every_n_steps: int = 0
    vanishing_below: float = 1e-7
    exploding_above: float = 1e3
    # Non-finite loss or gradients: "stop" the run, or "skip" the update and go on.
    # Either way the bad update is never applied, so no checkpoint is poisoned.
    nan_policy: str = "stop"
    # With nan_policy=skip: stop after this many non-finite steps in a row.
    max_consecutive_skips: int = 10

    def __post_init__(self):
        require(self.layer_stats_every_n_steps >= 0, "health.layer_stats_every_n_steps", "must be >= 0",
                self.layer_stats_every_n_steps)
        require(self.histogram_every_n_steps >= 0, "health.histogram_every_n_steps", "must be >= 0",
                self.histogram_every_n_steps)
        require(self.vanishing_below >= 0, "health.vanishing_below", "must be >= 0", self.vanishing_below)
        require(self.exploding_above > self.vanishing_below, "health.exploding_above",
                "must be > health.vanishing_below", self.exploding_above)
        require_choice("health.nan_policy", self.nan_policy, {"stop", "skip"})
        require(self.max_consecutive_skips >= 1, "health.max_consecutive_skips", "must be >= 1",
                self.max_consecutive_skips)


# ----------------------------------------------------------------------------- checkpoints
@dataclass
class CheckpointConfig:
    # Save every N optimizer steps (null: never by step) and/or at every epoch end.
    every_n_steps: Optional[int] = None
    every_epoch: bool = True
    # Retention: the newest keep_last, plus the best keep_best by `monitor`.
    keep_last: int = 2
    keep_best: int = 1
    monitor: str = "val/loss"
    mode: str = "min"

    def __post_init__(self):
        require(self.every_n_steps is None or self.every_n_steps >= 1, "checkpoint.every_n_steps",
                "must be >= 1 or null", self.every_n_steps)
        require(self.keep_last >= 1, "checkpoint.keep_last", "must be >= 1", self.keep_last)
        require(self.keep_best >= 0, "checkpoint.keep_best", "must be >= 0", self.keep_best)
        require_choice("checkpoint.mode", self.mode, {"min", "max"})


# ----------------------------------------------------------------------------- fault tolerance
@dataclass
class FaultToleranceConfig:
    # No step progress on any rank for this long counts as a hang (much shorter than
    # collective_timeout_s, which is torch.distributed's own last resort).
    hang_timeout_s: float = 120.0
    collective_timeout_s: float = 600.0
    # With fewer workers (trainer.min_workers), keep the global batch by accumulating more
    # micro-batches, or keep the per-step batch and scale the LR linearly.
    elastic_batch: str = "keep_global_batch"
    # After a failure, wait this long for the full gang's capacity before shrinking or failing.
    restart_wait_s: float = 30.0
    # On Ctrl-C/SIGTERM, how long the workers get to stop at a step boundary and checkpoint.
    graceful_stop_s: float = 60.0

    def __post_init__(self):
        require(self.hang_timeout_s > 0, "fault_tolerance.hang_timeout_s", "must be > 0", self.hang_timeout_s)
        require(self.collective_timeout_s > 0, "fault_tolerance.collective_timeout_s", "must be > 0",
                self.collective_timeout_s)
        require_choice("fault_tolerance.elastic_batch", self.elastic_batch, {"keep_global_batch", "scale_lr"})
        require(self.restart_wait_s >= 0, "fault_tolerance.restart_wait_s", "must be >= 0", self.restart_wait_s)
        require(self.graceful_stop_s > 0, "fault_tolerance.graceful_stop_s", "must be > 0", self.graceful_stop_s)


# ----------------------------------------------------------------------------- cluster
STRATEGIES = {"PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"}


@dataclass
class ClusterConfig:
    # null: start an embedded local Ray for this run; "auto" or "host:port": join that cluster.
    address: Optional[str] = None
    # Local Ray only: logical CPUs to offer (null: the machine's count).
    num_cpus: Optional[int] = None
    cpus_per_worker: int = 1
    gpus_per_worker: int = 0
    placement_strategy: str = "PACK"
    # Fail if the cluster cannot hold the gang within this many seconds.
    placement_timeout_s: float = 30.0
    include_dashboard: bool = False
    # Ship this project's code to the cluster's nodes (runtime_env py_modules) when joining a cluster.
    ship_code: bool = True
    # The network interface gloo binds to (null: the one that carries the node IP Ray reports;
    # GLOO_SOCKET_IFNAME set on a node wins over both).
    gloo_socket_ifname: Optional[str] = None
    # Your code on the cluster's nodes (Ray runtime_env, only when joining a cluster): a folder to
    # ship and run the workers in, your packages (folders), and pip requirements to install.
    working_dir: Optional[str] = None
    py_modules: List[str] = field(default_factory=list)
    pip: List[str] = field(default_factory=list)

    def __post_init__(self):
        require(self.address is None or self.address.strip() != "", "cluster.address",
                "must be null, 'auto' or host:port", self.address)
        require(self.num_cpus is None or self.num_cpus >= 1, "cluster.num_cpus", "must be >= 1 or null",
                self.num_cpus)
        require(self.cpus_per_worker >= 1, "cluster.cpus_per_worker", "must be >= 1", self.cpus_per_worker)
        # DDP runs one process per device: a worker has no GPU or exactly one (NCCL refuses two ranks on
        # one GPU, and a second GPU in a worker would sit idle).
        require(self.gpus_per_worker in (0, 1), "cluster.gpus_per_worker", "must be 0 or 1", self.gpus_per_worker)
        require_choice("cluster.placement_strategy", self.placement_strategy, STRATEGIES)
        require(self.placement_timeout_s > 0, "cluster.placement_timeout_s", "must be > 0",
                self.placement_timeout_s)
        require(self.gloo_socket_ifname is None or self.gloo_socket_ifname.strip() != "",
                "cluster.gloo_socket_ifname", "must be null or an interface name", self.gloo_socket_ifname)
        require(self.working_dir is None or os.path.isdir(self.working_dir), "cluster.working_dir",
                "must be null or an existing folder", self.working_dir)
        for module in self.py_modules:
            # Ray also takes remote URIs (s3://, https://...); only local paths can be checked here.
            require("://" in module or os.path.exists(module), "cluster.py_modules",
                    "entries must be existing folders (or remote URIs)", module)
        for requirement in self.pip:
            require(isinstance(requirement, str) and requirement.strip() != "", "cluster.pip",
                    "entries must be pip requirement strings", requirement)


# ----------------------------------------------------------------------------- search
@dataclass
class ParamConfig:
    """One searched key: a float or int range (log-uniform with log=true), or a choice of values.
    The key may be a value (optimizer.lr) or a config group (optimizer: choice [sgd, adam])."""
    type: str = "float"
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    values: List[Any] = field(default_factory=list)


SEARCH_KINDS = {"none", "grid", "random", "bayes", "kfold"}


@dataclass
class SearchConfig:
    # none: a single run. grid | random | bayes (Optuna TPE) | kfold (cross-validation over data.cv_fold).
    kind: str = "none"
    space: Dict[str, ParamConfig] = field(default_factory=dict)
    # Trials to finish (random, bayes); grid and kfold run every combination / fold.
    num_trials: int = 8
    metric: str = "val/accuracy"
    direction: str = "max"
    # A trial's value: the best its metric reached ("best"), or its last value ("last").
    scope: str = "best"
    # Gangs at once; null: as many as the cluster holds, the rest queue.
    max_concurrent: Optional[int] = None
    # none | median | halving (successive halving). Pruned trials stop at once and free their workers.
    pruner: str = "median"
    pruner_startup_trials: int = 2
    pruner_warmup_steps: int = 0
    seed: int = 0
    # Points to try first, e.g. [{optimizer.lr: 0.001}] (known good settings, a baseline).
    enqueue: List[Dict[str, Any]] = field(default_factory=list)
    folds: int = 5

    def __post_init__(self):
        require_choice("search.kind", self.kind, SEARCH_KINDS)
        require_choice("search.direction", self.direction, {"min", "max"})
        require_choice("search.scope", self.scope, {"best", "last"})
        require_choice("search.pruner", self.pruner, {"none", "median", "halving"})
        require(self.num_trials >= 1, "search.num_trials", "must be >= 1", self.num_trials)
        require(self.max_concurrent is None or self.max_concurrent >= 1, "search.max_concurrent",
                "must be >= 1 or null", self.max_concurrent)
        require(self.pruner_startup_trials >= 0, "search.pruner_startup_trials", "must be >= 0",
                self.pruner_startup_trials)
        require(self.folds >= 2, "search.folds", "must be >= 2", self.folds)
        if self.kind in ("grid", "random", "bayes"):
            require(bool(self.space), "search.space", f"must name at least one key for search.kind={self.kind}",
                    dict(self.space))
        for key, param in self.space.items():
            check_param(f"search.space.{key}", param, grid=self.kind == "grid")


def check_param(key: str, p: ParamConfig, grid: bool) -> None:
    require_choice(f"{key}.type", p.type, {"float", "int", "choice"})
    if p.type == "choice":
        require(len(p.values) > 0, f"{key}.values", "must list at least one value", p.values)
        return
    require(grid is False, f"{key}.type", "must be choice for search.kind=grid (a grid needs values)", p.type)
    require(p.low is not None and p.high is not None and p.low < p.high, f"{key}.low",
            "and .high must be numbers with low < high", [p.low, p.high])
    require(not p.log or p.low > 0, f"{key}.low", "must be > 0 with log=true", p.low)


# ----------------------------------------------------------------------------- chaos
@dataclass
class ChaosConfig:
    """Fault injection, for trying out fault tolerance (and for its tests).

    kind: none | raise (a Python exception) | exit (the process dies) | stall (stops
    making progress) | nan (the loss becomes NaN). At optimizer step `at_step` on rank `rank`.
    """
    kind: str = "none"
    rank: int = 0
    at_step: int = 1
    # Only in the first attempt (so a restart succeeds); false repeats it every attempt.
    once: bool = True

    def __post_init__(self):
        require_choice("chaos.kind", self.kind, {"none", "raise", "exit", "stall", "nan"})
        require(self.rank >= 0, "chaos.rank", "must be >= 0", self.rank)
        require(self.at_step >= 1, "chaos.at_step", "must be >= 1", self.at_step)


# ----------------------------------------------------------------------------- whole run
@dataclass
class Config:
    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    scheduler: SchedulerConfig = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    stopping: StoppingConfig = field(default_factory=StoppingConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    fault_tolerance: FaultToleranceConfig = field(default_factory=FaultToleranceConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    chaos: ChaosConfig = field(default_factory=ChaosConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    # A short name shown in TensorBoard and summaries.
    name: str = "run"

    def __post_init__(self):
        if isinstance(self.model, ModelConfig) and isinstance(self.data, DataConfig):
            check_combination(self)


def validate(obj) -> None:
    """Every check again, inner configs first: for a config object edited after composition."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        for inner in (value.values() if isinstance(value, dict) else [value]):
            if dataclasses.is_dataclass(inner):
                validate(inner)
    if hasattr(obj, "__post_init__"):
        obj.__post_init__()


def check_combination(cfg: Config) -> None:
    """Checks that span groups (each group checks its own values)."""
    task = task_of(cfg.data)
    loss = resolved_loss(cfg)
    if task == "language":
        require(cfg.model.name == "gpt", "model", f"must be gpt for data={cfg.data.name}", cfg.model.name)
        require(loss == "cross_entropy", "trainer.loss", "must be cross_entropy for text data", loss)
    else:
        require(cfg.model.name != "gpt", "model", f"gpt needs data=text, not data={cfg.data.name}",
                cfg.model.name)
    if task == "regression":
        require(loss == "mse", "trainer.loss", "must be mse (or auto) for regression data", loss)
    if task == "classification":
        require(loss in {"cross_entropy", "bce"}, "trainer.loss",
                "must be cross_entropy or bce for classification data", loss)
        if loss == "bce":
            classes = getattr(cfg.data, "num_classes", 10)
            require(classes == 2, "trainer.loss", f"bce needs two classes, data has {classes}", loss)
    if cfg.data.cv_folds and task == "language":
        raise ConfigError("data.cv_folds: k-fold cross-validation needs labelled samples, not text (got "
                          f"{cfg.data.cv_folds!r})")
    if cfg.search.kind == "kfold":
        require(task != "language", "search.kind", "kfold needs labelled samples, not text", cfg.search.kind)
    if cfg.chaos.kind != "none":
        require(cfg.chaos.rank < cfg.trainer.num_workers, "chaos.rank",
                f"must be < trainer.num_workers={cfg.trainer.num_workers}", cfg.chaos.rank)
    if cfg.trainer.precision == "fp16":
        require(cfg.cluster.gpus_per_worker > 0, "trainer.precision",
                "fp16 needs a GPU (cluster.gpus_per_worker > 0); use bf16 on CPU", cfg.trainer.precision)
    if cfg.trainer.device == "cuda":
        require(cfg.cluster.gpus_per_worker > 0, "cluster.gpus_per_worker",
                "must be > 0 when trainer.device=cuda", cfg.cluster.gpus_per_worker)


def task_of(data: DataConfig) -> str:
    if data.name == "text":
        return "language"
    if data.name == "synthetic_regression":
        return "regression"
    return "classification"


def resolved_loss(cfg: Config) -> str:
    if cfg.trainer.loss != "auto":
        return cfg.trainer.loss
    return "mse" if task_of(cfg.data) == "regression" else "cross_entropy"


def global_batch_size(cfg: Config, num_workers: Optional[int] = None) -> int:
    workers = cfg.trainer.num_workers if num_workers is None else num_workers
    return cfg.data.batch_size * workers * cfg.trainer.accumulate_grad_batches
