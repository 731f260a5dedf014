"""The model component: built-in schemas, the orchestrator's own model settings, and building.

A model is any ``torch.nn.Module`` factory named by ``model._target_``. The built-in ones
(``models/``) take ``input_shape`` and ``num_outputs``; so may a user's model, whose signature
then names them and gets them from the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List

from orchestrator.config.errors import MISSING, require, require_choice

INIT_SCHEMES = {"default", "xavier", "kaiming", "orthogonal"}
# Settings of the model section the orchestrator applies itself (not arguments of the model).
OWN_KEYS = ("init", "sync_batchnorm")
CONTEXT = ("input_shape", "num_outputs")


@dataclass
class ModelConfig:
    _target_: str = MISSING
    name: str = "model"
    # Weight initialisation applied after the model is built ("default" keeps PyTorch's).
    init: str = "default"
    # Batch norm statistics over the global batch (torch.nn.SyncBatchNorm) instead of each rank's.
    sync_batchnorm: bool = False

    def __post_init__(self):
        check_own_keys(vars(self))


def check_own_keys(node: Any) -> None:
    require_choice("model.init", node.get("init", "default"), INIT_SCHEMES)
    require(isinstance(node.get("sync_batchnorm", False), bool), "model.sync_batchnorm", "must be true or false",
            node.get("sync_batchnorm"))


@dataclass
class MLPConfig(ModelConfig):
    _target_: str = "models.mlp.MLP"
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
    _target_: str = "models.cnn.CNN"
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
    _target_: str = "models.gpt.GPT"
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


SCHEMAS = [MLPConfig, CNNConfig, GPTConfig]


def build_model(spec, node: Any, input_shape, num_outputs):
    """On a worker: the bare model, initialised as configured (and with SyncBatchNorm if asked)."""
    import torch

    from orchestrator.worker.weight_init import initialise

    require_known(spec, "num_outputs", num_outputs, "how many classes (or targets) there are: give the training "
                  "dataset a `classes` list or a `num_classes` attribute, or set model.num_outputs")
    require_known(spec, "input_shape", input_shape, "the shape of a sample: set model.input_shape")
    model = spec.build(input_shape=tuple(input_shape) if input_shape else None, num_outputs=num_outputs)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: {spec.label} returned {type(model).__name__}, not a torch.nn.Module")
    initialise(model, setting(node, "init", "default"))
    if setting(node, "sync_batchnorm", False):
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def require_known(spec, name: str, value: Any, what: str) -> None:
    """A model that names a context argument must get a value for it, not None."""
    import inspect

    from orchestrator.components.spec import accepts
    from orchestrator.config.errors import ConfigError

    try:
        wanted = accepts(inspect.signature(spec.resolve()), name) and name not in spec.kwargs
    except (TypeError, ValueError):
        return
    if wanted and value is None:
        raise ConfigError(f"model: {spec.label} takes {name}, but the data does not tell {what}")


def setting(node: Any, key: str, default: Any) -> Any:
    """One of the orchestrator's own keys of a section, from a schema object or a plain dict."""
    if isinstance(node, dict):
        return node.get(key, default)
    return getattr(node, key, default)
