"""The whole run's config, and the checks that span sections."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from orchestrator.components import losses
from orchestrator.config.errors import MISSING, ConfigError, require
from orchestrator.config.run import (ChaosConfig, CheckpointConfig, ClusterConfig, HealthConfig, StoppingConfig,
                                     TrainerConfig)
from orchestrator.config.scaling import FailureConfig, FaultToleranceConfig, ScalingConfig, move_deprecated_keys
from orchestrator.config.search import SearchConfig
from orchestrator.data import builtin


DEFAULT_STEP = "orchestrator.components.steps.SupervisedStep"


@dataclass
class Config:
    # Component sections: a built-in's schema (e.g. model=cnn) or a user's {_target_: ..., ...} node.
    model: Any = MISSING
    data: Any = MISSING
    loss: Any = None  # null: auto (from the data's task)
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    # Extra metrics by name: {f1: {_target_: torchmetrics.classification.MulticlassF1Score, num_classes: 10}}.
    metrics: Dict[str, Any] = field(default_factory=dict)
    # What a batch contributes to a step (default: (x, y) -> loss(model(x), y)); see components/steps.py.
    step: Any = None  # null: the default step
    # Your own loop callbacks by name: {my_logger: {_target_: my_project.callbacks.Logger, every: 10}}
    # (see orchestrator/worker/callbacks/base.py for the hooks).
    callbacks: Dict[str, Any] = field(default_factory=dict)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    stopping: StoppingConfig = field(default_factory=StoppingConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    failure: FailureConfig = field(default_factory=FailureConfig)
    fault_tolerance: FaultToleranceConfig = field(default_factory=FaultToleranceConfig)  # deprecated: failure
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    chaos: ChaosConfig = field(default_factory=ChaosConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    # A short name shown in TensorBoard and summaries (null: from the model's and the data's names).
    name: Optional[str] = None

    def __post_init__(self):
        if self.loss is None:
            self.loss = losses.AutoLossConfig()
        if self.step is None:
            self.step = {"_target_": DEFAULT_STEP}
        move_deprecated_keys(self)
        if self.name is None:
            self.name = f"{component_name(self.model)}-{component_name(self.data)}"
        if self.model is not MISSING and self.data is not MISSING:
            check_combination(self)


def component_name(node: Any) -> str:
    name = getattr(node, "name", None) if not isinstance(node, dict) else node.get("name")
    if name:
        return name
    target = node.get("_target_") if isinstance(node, dict) else getattr(node, "__name__", None)
    return str(target).rsplit(".", 1)[-1] if target else "component"


def validate(obj) -> None:
    """Every check again, inner configs first: for a config object edited after composition."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        for inner in (value.values() if isinstance(value, dict) else [value]):
            if dataclasses.is_dataclass(inner) and not isinstance(inner, type):
                validate(inner)
    if hasattr(obj, "__post_init__"):
        obj.__post_init__()


def builtin_name(node: Any, schemas) -> Optional[str]:
    """The built-in's name when ``node`` is one of ``schemas`` with its own target, else None."""
    for schema in schemas:
        if type(node) is schema and node._target_ == schema._target_:
            return schema.name
    return None


def task_of(data: Any) -> Optional[str]:
    """A built-in dataset's task; None for a user's dataset (known only once it is built)."""
    name = builtin_name(data, builtin.SCHEMAS)
    if name is None:
        return None
    explicit = getattr(data, "task", None)  # data=parquet says it (auto: known once the workers read it)
    if explicit is not None:
        return None if explicit == "auto" else explicit
    return builtin.TASKS.get(name, "classification")


def loss_kind(cfg: Config) -> Optional[str]:
    target = getattr(cfg.loss, "_target_", None) if not isinstance(cfg.loss, dict) else cfg.loss.get("_target_")
    if target == losses.AUTO:
        target = losses.auto_target(task_of(cfg.data))
    return losses.KIND_OF_TARGET.get(target)


def check_combination(cfg: Config) -> None:
    """Checks that span sections (each section checks its own values). Only what is known on the
    driver: a user's dataset or model is checked by its signature (components/registry.py)."""
    from orchestrator.components.models import SCHEMAS as MODELS

    task, kind, model = task_of(cfg.data), loss_kind(cfg), builtin_name(cfg.model, MODELS)
    if task == "language":
        require(model in (None, "gpt"), "model", f"must be gpt (or your own) for data={cfg.data.name}", model)
        require(kind in (None, "cross_entropy"), "loss", "must be cross_entropy for text data", kind)
    elif task is not None:
        require(model != "gpt", "model", f"gpt needs data=text, not data={cfg.data.name}", model)
    if task == "regression":
        require(kind in (None, "mse"), "loss", "must be mse (or auto) for regression data", kind)
    if task == "classification":
        require(kind in (None, "cross_entropy", "bce"), "loss", "must be cross_entropy or bce for classification data",
                kind)
        if kind == "bce":
            classes = getattr(cfg.data, "num_classes", 10)
            require(classes == 2, "loss", f"bce needs two classes, data has {classes}", kind)
    if getattr(cfg.data, "cv_folds", 0) and task == "language":
        raise ConfigError("data.cv_folds: k-fold cross-validation needs labelled samples, not text (got "
                          f"{cfg.data.cv_folds!r})")
    if cfg.search.kind == "kfold":
        require(task not in ("language", None) or hasattr(cfg.data, "cv_folds"), "search.kind",
                "kfold needs a built-in labelled dataset (data.cv_folds)", cfg.search.kind)
        require(task != "language", "search.kind", "kfold needs labelled samples, not text", cfg.search.kind)
    check_devices(cfg)


def check_devices(cfg: Config) -> None:
    if cfg.chaos.kind != "none":
        require(cfg.chaos.rank < cfg.scaling.num_workers, "chaos.rank",
                f"must be < scaling.num_workers={cfg.scaling.num_workers}", cfg.chaos.rank)
    if cfg.trainer.precision == "fp16":
        require(cfg.scaling.gpus_per_worker > 0, "trainer.precision",
                "fp16 needs a GPU (scaling.gpus_per_worker > 0); use bf16 on CPU", cfg.trainer.precision)
    if cfg.trainer.device == "cuda":
        require(cfg.scaling.gpus_per_worker > 0, "scaling.gpus_per_worker",
                "must be > 0 when trainer.device=cuda", cfg.scaling.gpus_per_worker)
    from orchestrator.components.models import setting

    if setting(cfg.model, "sync_batchnorm", False):
        # torch.nn.SyncBatchNorm raises on CPU tensors once a process group exists (torch 2.13).
        require(cfg.scaling.gpus_per_worker > 0 and cfg.trainer.device != "cpu", "model.sync_batchnorm",
                "needs GPU workers (torch's SyncBatchNorm supports no CPU/gloo); on CPU leave it false", True)
    if cfg.trainer.ddp.comm_hook == "bf16":
        # DDP's register_comm_hook refuses bf16_compress_hook without CUDA and NCCL >= 2.10 (torch 2.13).
        require(cfg.scaling.gpus_per_worker > 0 and cfg.trainer.device != "cpu", "trainer.ddp.comm_hook",
                "bf16 needs GPU workers (torch's bf16 hook needs NCCL); on CPU use fp16 or powersgd", "bf16")


def global_batch_size(cfg: Config, num_workers: Optional[int] = None) -> int:
    workers = cfg.scaling.num_workers if num_workers is None else num_workers
    return batch_size(cfg) * workers * cfg.trainer.accumulate_grad_batches


def batch_size(cfg: Config) -> int:
    from orchestrator.components.models import setting

    return setting(cfg.data, "batch_size", 64)
